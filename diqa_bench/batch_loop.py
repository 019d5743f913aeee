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

import math
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator

from diqa_bench.errors import DataError, MethodUnavailable, UserError


class ImageSkip(str):
    """The reason one image got no score from one method (the image is fine for other methods):
    a non-finite score, or a :class:`DataError` the method raised for that image (e.g. smaller
    than its minimum). A ``str``, so it travels wherever a decode error's message does (the
    process pool pickles it with its class); the scorer records it per method, never as a bad
    file."""


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


def without_path(reason: str, path) -> str:
    """Decoders and methods often start their message with the path; a line that names its image
    already has it."""
    prefix = f"{path}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


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


def score_batches(method, batches: Iterable, on_image_error: Callable[[int, str], None] | None = None,
                  skip_failing: bool = False) -> Iterator[tuple[Any, list[float]]]:
    """Yield ``(batch, scores)`` for every batch, scores in the batch's order, every score finite.

    A non-finite score, and a :class:`DataError` the method raises (the image, not the method, is
    at fault: e.g. smaller than its minimum), never fail the batch: the image is reported as
    ``on_image_error(batch index, ImageSkip(reason))`` and left out ("score is NaN"), so one small
    photo does not cost the others their scores. Any other method error stops the loop (the caller
    fails the cell with it), unless ``skip_failing``: then a batch the method cannot score is
    retried one image at a time, and each image that still fails is reported and left out. A wrong
    number of scores and :class:`MethodUnavailable` always stop the loop: they are the method's
    fault, not the image's. Without ``on_image_error`` every image problem raises."""
    for batch in batches:
        try:
            values = checked_scores(method, batch)
        except (ScoreCountError, MethodUnavailable):
            raise
        except Exception as exc:
            if on_image_error is None or not (skip_failing or isinstance(exc, DataError)):
                raise
            yield from _one_by_one(method, batch, exc, on_image_error, skip_failing)
            continue
        yield from _finite(batch, values, on_image_error)


def _finite(batch, values: list[float], on_image_error: Callable[[int, str], None] | None) -> Iterator[tuple[Any, list[float]]]:
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if not bad:
        yield batch, values
        return
    if on_image_error is None:
        raise DataError(f"{batch.paths[bad[0]]}: {method_nan_reason(values[bad[0]])}")
    for i in bad:
        on_image_error(batch.indices[i], ImageSkip(method_nan_reason(values[i])))
    keep = [i for i in range(len(values)) if i not in set(bad)]
    if keep:
        yield _subset(batch, keep), [values[i] for i in keep]


def method_nan_reason(value: float) -> str:
    return "score is NaN" if math.isnan(value) else "score is infinite"


def _subset(batch, keep: list[int]):
    if type(batch.images).__module__ == "numpy":  # a method's numpy pixels (Method.numpy_pixels)
        return replace(batch, images=batch.images[keep], keys=[batch.keys[i] for i in keep], paths=[batch.paths[i] for i in keep],
                       indices=[batch.indices[i] for i in keep])
    import torch

    idx = torch.as_tensor(keep, device=batch.images.device)
    return replace(batch, images=batch.images.index_select(0, idx), keys=[batch.keys[i] for i in keep], paths=[batch.paths[i] for i in keep],
                   indices=[batch.indices[i] for i in keep])


def _reason(exc: Exception) -> str:
    return ImageSkip(failure_reason(exc)) if isinstance(exc, DataError) else failure_reason(exc)


def _one_by_one(method, batch, exc: Exception, on_image_error: Callable[[int, str], None], skip_failing: bool) -> Iterator[tuple[Any, list[float]]]:
    if len(batch.keys) == 1:
        on_image_error(batch.indices[0], _reason(exc))
        return
    for i in range(len(batch.keys)):
        one = _single(batch, i)
        try:
            values = checked_scores(method, one)
        except (ScoreCountError, MethodUnavailable):
            raise
        except Exception as exc_one:
            if not (skip_failing or isinstance(exc_one, DataError)):
                raise
            on_image_error(one.indices[0], _reason(exc_one))
            continue
        yield from _finite(one, values, on_image_error)
