"""The one loop from decoded batches to scores, shared by every path that scores images: the
runner (``run``), the CPU process pool (:mod:`diqa_bench.parallel`), Ray shards (through the
runner) and ``diqa-bench score`` (:mod:`diqa_bench.scoring`).

It calls :meth:`Method.score_batch` and checks that the method returned exactly one score per
image: a method that returns too few or too many would otherwise shift every later score onto
the wrong image, and the tables would look fine.

Also here, because every scoring path needs them: :func:`to_floats` (tensor, array or list ->
floats), :func:`failure_reason` (an exception as the one line a table or a CSV shows) and
:func:`once` (a method's setup or a fitted model's load, run at most once and only when needed).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator

from diqa_bench.errors import DataError, MethodUnavailable, UserError


class ScoreCountError(RuntimeError):
    """A method returned a different number of scores than it was given images."""


def to_floats(out: Any) -> list[float]:
    """A method's output (torch tensor, numpy array or sequence) as a flat list of floats."""
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().reshape(-1).tolist()
    elif hasattr(out, "tolist"):
        out = out.reshape(-1).tolist()
    return [float(v) for v in out]


def failure_reason(exc: BaseException) -> str:
    """One line for a table cell or a skipped image: the message of a user or data error as it is,
    anything else prefixed with its exception type."""
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else ""
    if isinstance(exc, (DataError, UserError)):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` wrapped to run at most once (a method's setup, a fitted model's load)."""
    state = {"done": False}

    def call() -> None:
        if not state["done"]:
            fn()
            state["done"] = True

    return call


def checked_scores(method, batch) -> list[float]:
    """``method.score_batch(batch)`` as floats, exactly one per image of the batch."""
    values = to_floats(method.score_batch(batch))
    if len(values) != len(batch.keys):
        raise ScoreCountError(f"{method.name}.score_batch returned {len(values)} scores for {len(batch.keys)} images")
    return values


def _single(batch, i: int):
    return replace(batch, images=batch.images[i : i + 1], keys=batch.keys[i : i + 1], paths=batch.paths[i : i + 1],
                   indices=batch.indices[i : i + 1])


def score_batches(method, batches: Iterable, on_image_error: Callable[[int, str], None] | None = None) -> Iterator[tuple[Any, list[float]]]:
    """Yield ``(batch, scores)`` for every batch, scores in the batch's order.

    A method error stops the loop (the caller fails the cell with it), unless ``on_image_error``
    is given: then a batch the method cannot score is retried one image at a time, and each image
    that still fails is reported as ``on_image_error(batch index, reason)`` and left out, so one
    bad image (e.g. smaller than the method's minimum) does not cost the others their scores. A
    wrong number of scores and :class:`MethodUnavailable` always stop the loop: they are the
    method's fault, not the image's."""
    for batch in batches:
        try:
            values = checked_scores(method, batch)
        except (ScoreCountError, MethodUnavailable):
            raise
        except Exception as exc:
            if on_image_error is None:
                raise
            yield from _one_by_one(method, batch, exc, on_image_error)
            continue
        yield batch, values


def _one_by_one(method, batch, exc: Exception, on_image_error: Callable[[int, str], None]) -> Iterator[tuple[Any, list[float]]]:
    if len(batch.keys) == 1:
        on_image_error(batch.indices[0], failure_reason(exc))
        return
    for i in range(len(batch.keys)):
        one = _single(batch, i)
        try:
            values = checked_scores(method, one)
        except (ScoreCountError, MethodUnavailable):
            raise
        except Exception as exc_one:
            on_image_error(one.indices[0], failure_reason(exc_one))
            continue
        yield one, values
