"""Scoring on several CPU cores with one process per core.

Classical metrics (BRISQUE, NIQE, PIQE) are many small tensor operations per image: torch's
intra-op threads barely speed them up (measured here: PIQE 35 img/s on one thread, 39 on two),
while one process per core, each with one thread, decoding and scoring its own images, scales
with the cores. The scorer uses this for zero-shot methods on the CPU when ``processes > 1``;
fitted models and GPUs keep the in-process path.

Worker processes are started with ``spawn`` (forking a process that already runs torch's thread
pools can deadlock), kept for the whole run, and rebuild each method from its registry name and
options once per process (:func:`worker_method`, through a scoring session).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Sequence
from diqa_bench.batch_loop import score_batches


CHUNK = 16  # at most this many images per task (fewer when there are few images)
CPU_BATCH = 4  # images per batch inside a worker


_METHODS: dict[str, tuple[Any, Any]] = {}  # in a worker: recipe key -> (method, context), built once
_POOLS: dict[int, ProcessPoolExecutor] = {}  # in the parent: one pool per size, reused by every method of a run


def _init_worker(parent: int | None = None, parent_thread_lives: bool = False) -> None:
    if parent is not None:
        exit_with_parent(parent, parent_thread_lives)


def _one_torch_thread() -> None:
    """One core per process: the processes are the parallelism. Called before the first tensor,
    not at start-up: a method on numpy pixels never imports torch in the worker."""
    import torch

    torch.set_num_threads(1)


def exit_with_parent(parent: int, use_pdeathsig: bool = True, interval_s: float = 1.0) -> None:
    """Make this worker exit when process ``parent`` dies (``kill -9`` of a run must not leave
    workers of hundreds of MB each behind). On Linux the kernel sends SIGKILL at once
    (PR_SET_PDEATHSIG; it fires when the *thread* that started the worker ends, so only when that
    thread lives as long as the process); everywhere a daemon thread checks the parent each second."""
    import signal
    import sys
    import threading
    import time

    if use_pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog below still works
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="diqa-parent-watchdog", daemon=True).start()


def worker_method(recipe):
    """``(method, context)`` of ``recipe`` (a :class:`diqa_bench.session.MethodRecipe`) in this
    worker: built through the recipe's scoring session and set up on the first call, then reused."""
    key = json.dumps(asdict(recipe), sort_keys=True, default=str)
    if key not in _METHODS:
        method, ctx = recipe.build()
        method.setup(ctx)
        _METHODS.clear()  # one method at a time per worker: free the previous model
        _METHODS[key] = (method, ctx)
    return _METHODS[key]


def _score_chunk(recipe, paths: list[str], keys: list[str], skip_failing: bool = False) -> tuple[dict[str, float], dict[int, str]]:
    """Scores of one chunk (by key) and the positions it could not score, with the reason: images
    that fail to decode, and with ``skip_failing`` images the method fails on (see
    :func:`diqa_bench.batch_loop.score_batches`)."""
    from diqa_bench.images import iter_batches, iter_numpy_batches  # lazy: loads numpy, PIL

    if "torch" in sys.modules:
        _one_torch_thread()
    method, ctx = worker_method(recipe)
    errors: dict[int, str] = {}
    scores: dict[str, float] = {}
    if method.numpy_pixels() and method.input_size is None:
        batches = iter_numpy_batches(paths, keys, range(len(paths)), on_error=errors.__setitem__)
    else:
        _one_torch_thread()
        batches = iter_batches(paths, keys, range(len(paths)), batch_size=ctx.batch_size, device="cpu", workers=0,
                               size=method.input_size, on_error=errors.__setitem__)
    for batch, values in score_batches(method, batches, errors.__setitem__, skip_failing=skip_failing):
        scores.update(zip(batch.keys, values))
    return scores, errors


def _build_and_wait(recipe, sample: str | None) -> int:
    import time

    worker_method(recipe)
    if sample is not None:  # the first call of a metric costs far more than later ones
        _score_chunk(recipe, [sample], ["warm-up"])
    time.sleep(0.3)  # hold this worker, so the other warm-up tasks land on the other workers
    return os.getpid()


def warm_up(recipe, processes: int, sample: str | None = None) -> int:
    """Start the pool and build the method in every worker, scoring ``sample`` once there when
    given (for timings that leave start-up out, as pyiqa's loop is timed after one warm-up call;
    measured: PIQE's first pass over 128 images ran at 50 img/s on 2 processes, later ones at 71).
    Returns how many distinct workers built it."""
    executor = pool(processes)
    return len({f.result() for f in [executor.submit(_build_and_wait, recipe, sample) for _ in range(2 * processes)]})


def _started() -> int:
    import time

    time.sleep(0.2)  # hold this worker until every worker has been started
    return os.getpid()


def pool(processes: int) -> ProcessPoolExecutor:
    """The shared pool of ``processes`` workers, started on first use and kept for the run."""
    if processes not in _POOLS:
        import threading

        executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"), initializer=_init_worker,
                                       initargs=(os.getpid(), threading.current_thread() is threading.main_thread()))
        started = [executor.submit(_started) for _ in range(processes)]  # workers start on submit: all of them now
        for f in started:
            f.result()
        _POOLS[processes] = executor
    return _POOLS[processes]


def pool_sizes() -> list[int]:
    """The sizes of the pools alive in this process (a test's evidence that the pool path ran)."""
    return sorted(_POOLS)


@atexit.register
def shutdown_pools(wait: bool = False) -> None:
    for p in _POOLS.values():
        p.shutdown(wait=wait, cancel_futures=True)
    _POOLS.clear()


def plan_chunks(n: int, processes: int, costs: Sequence[float] | None = None) -> list[list[int]]:
    """Positions ``0..n-1`` cut into chunks, about four per process, so no process idles while
    another finishes a long tail. Without ``costs``: consecutive runs of positions. With ``costs``
    (e.g. pixels per image, for images of very different sizes): the costliest images first, each
    chunk holding at most a quarter-process's share of the total cost, so one 12-megapixel photo
    is a chunk of its own instead of sharing a worker with others while the other worker idles."""
    size = max(CPU_BATCH, min(CHUNK, -(-n // (4 * processes))))
    if costs is None:
        return [list(range(s, min(s + size, n))) for s in range(0, n, size)]
    budget = sum(costs) / (4 * processes)
    chunks: list[list[int]] = []
    current: list[int] = []
    spent = 0.0
    for i in sorted(range(n), key=lambda i: -costs[i]):
        if current and (len(current) >= size or spent + costs[i] > budget):
            chunks.append(current)
            current, spent = [], 0.0
        current.append(i)
        spent += costs[i]
    if current:
        chunks.append(current)
    return chunks


def score_in_processes(recipe, paths: list[str], keys: list[str], processes: int,
                       on_error: Callable[[int, str], None], skip_failing: bool = False,
                       costs: Sequence[float] | None = None) -> Iterator[dict[str, float]]:
    """Yield dicts of key -> score as chunks finish (the caller commits them to the cache as they
    come, so an interrupted run keeps them). Decode errors go to ``on_error(position, message)``;
    a method that raises stops the scoring with that exception, unless ``skip_failing``: then
    the images it fails on go to ``on_error`` too. A wrong number of scores always stops it.
    ``costs``: see :func:`plan_chunks`."""
    executor = pool(processes)
    futures = {executor.submit(_score_chunk, recipe, [paths[i] for i in chunk], [keys[i] for i in chunk], skip_failing): chunk
               for chunk in plan_chunks(len(paths), processes, costs)}
    try:
        for fut in as_completed(futures):
            scores, errors = fut.result()
            for pos, msg in errors.items():
                on_error(futures[fut][pos], msg)
            yield scores
    except BrokenProcessPool:
        _POOLS.pop(processes, None)  # a worker died: the next call starts a fresh pool
        raise
    except BaseException:
        for f in futures:
            f.cancel()
        raise
