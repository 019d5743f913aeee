"""One torch thread for code made of many small operations."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def single_thread(cuda: bool = False):
    """Many small tensor operations (tiles, tiny matrix products): on the CPU one thread is faster
    than several (no synchronisation per operation), and far faster when other processes share the
    cores. Nothing to do on a GPU, nor in a process that never imported torch (numpy code)."""
    torch = sys.modules.get("torch")
    if cuda or torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
