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


_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8", "IntStorage": "<i4",
             "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


def load_arrays(path: str | os.PathLike) -> Any:
    """A torch file of plain CPU tensors (and containers of them) as numpy arrays, read without
    torch (whose import costs a scoring process seconds) and without running code: only torch's
    tensor-rebuilding function and storage types are resolved, every other global refuses. None
    when the file is not of that simple form: :func:`load_tensors` then reads it (or says why not)."""
    import collections
    import pickle
    import zipfile

    import numpy as np

    class _Storage:
        def __init__(self, name: str) -> None:
            self.dtype = np.dtype(_STORAGES[name])

    def rebuild(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        flat = storage[offset:]
        return np.lib.stride_tricks.as_strided(flat, shape=tuple(size), strides=tuple(s * flat.itemsize for s in stride)).copy()

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = next(n for n in names if n.endswith("/data.pkl") and n.count("/") == 1)
            prefix = pkl.split("/")[0]
            order = f"{prefix}/byteorder"
            if order in names and zf.read(order).strip() != b"little":
                return None

            class Reader(pickle.Unpickler):
                def find_class(self, module, name):
                    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                        return rebuild
                    if module == "torch" and name in _STORAGES:
                        return _Storage(name)
                    if (module, name) == ("collections", "OrderedDict"):
                        return collections.OrderedDict
                    raise pickle.UnpicklingError(f"{module}.{name}")

                def persistent_load(self, pid):
                    kind, storage, key, _location, numel = pid
                    if kind != "storage" or not isinstance(storage, _Storage):
                        raise pickle.UnpicklingError(str(kind))
                    return np.frombuffer(zf.read(f"{prefix}/data/{key}"), dtype=storage.dtype)[:numel]

            with zf.open(pkl) as f:
                return Reader(f).load()
    except Exception:  # noqa: BLE001 - any other form (legacy files, other objects): torch's reader decides
        return None


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
