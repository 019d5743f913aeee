"""Reading torch files without running code, for every method and plugin.

Unpickling a file can run any code it contains, so a torch file is read with
``torch.load(weights_only=True)`` (tensors, numbers, strings and containers of them). Anything else
is refused with one line (:class:`~diqa_bench.errors.WeightsRefused`), never with torch's paragraph
of advice, which suggests reloading with ``weights_only=False``.
"""

from __future__ import annotations

import os
from typing import Any

from diqa_bench.errors import WeightsRefused


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_tensors(path: str | os.PathLike) -> Any:
    """A torch file's content, loaded without running code. Anything else raises WeightsRefused."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - explained in one line
        raise refused(path, exc) from None


def refused(path: str | os.PathLike, exc: BaseException) -> WeightsRefused:
    """One line for a torch file that ``weights_only=True`` would not load."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        # torch's message: a paragraph of advice, then the reason on its own line
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "weights_only" not in ln]
        reason = next((ln for ln in lines if "GLOBAL" in ln or "global" in ln.split()[:3]), None)
        if reason is not None:
            return WeightsRefused(
                f"weights file {path} refused: it holds Python objects, not only tensors, and loading it could run code ({_one_line(reason, 120)})"
            )
        detail = next((ln for ln in lines if ln.startswith("Unsupported") or "error:" in ln and not ln.endswith(":")), lines[-1] if lines else "")
        return WeightsRefused(f"weights file {path} is not a readable torch file: {_one_line(detail or type(exc).__name__, 120)}")
    detail = "" if "weights_only" in str(exc) else _one_line(exc)
    return WeightsRefused(f"weights file {path} is not a readable torch file: {detail or type(exc).__name__}")
