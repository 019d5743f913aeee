"""One thread (torch's, and numpy's BLAS) for code made of many small operations."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def single_thread(cuda: bool = False):
    """Many small operations (tiles, tiny matrix products): on the CPU one thread is faster than
    several (no synchronisation per operation), and far faster when other processes share the
    cores. Torch's threads (when this process imported torch) and numpy's BLAS threads (OpenBLAS
    threads a 4 x 4 by 4 x 60000 product, and spins waiting for busy cores). Nothing on a GPU."""
    if cuda:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def small_pages():
    """numpy without transparent huge pages for its large arrays (its default on Linux). A
    12-megapixel float64 plane then costs its page faults (tens of milliseconds of system time)
    instead of a kernel compaction of memory for each huge page, which on a busy machine took up
    to ten times that (benchmarks/PERF.md, run 13). numpy's switch is private: without it, nothing
    changes."""
    switch = getattr(getattr(getattr(sys.modules.get("numpy"), "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    previous = switch(False)
    try:
        yield
    finally:
        switch(previous)
