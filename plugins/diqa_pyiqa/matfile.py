"""Numeric matrices of a MATLAB 5 MAT-file, read without scipy (whose import costs a scoring
process a second or more): enough for NIQE's parameter file. Anything else (MATLAB 7.3 / HDF5
files, cells, structs, sparse or complex arrays, big-endian files) gives None, and the caller
reads the file with ``scipy.io.loadmat``, which says what is wrong with it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_TYPES = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8", 13: "<u8"}
_MATRIX, _COMPRESSED = 14, 15
_NUMERIC_CLASSES = set(range(6, 16))  # double, single, int8 .. uint64


def _elements(data: bytes):
    """(type, payload) of each data element of ``data``."""
    pos = 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<II", data, pos)
        if kind >> 16:  # small element: type and size in the first 4 bytes, data in the next 4
            yield kind & 0xFFFF, data[pos + 4 : pos + 4 + (kind >> 16)]
            pos += 8
            continue
        yield kind, data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (-size % 8 if kind != _COMPRESSED else 0)


def _matrix(payload: bytes) -> tuple[str, np.ndarray] | None:
    parts = list(_elements(payload))
    if len(parts) != 4:  # flags, dimensions, name, real part: no imaginary part
        return None
    (t_flags, flags), (t_dims, dims), (_, name), (t_real, real) = parts
    if t_flags != 6 or t_dims != 5 or t_real not in _TYPES:
        return None
    flag_word = struct.unpack_from("<I", flags)[0]
    if (flag_word & 0xFF) not in _NUMERIC_CLASSES or flag_word & 0x0800:  # complex
        return None
    shape = tuple(np.frombuffer(dims, dtype="<i4"))
    values = np.frombuffer(real, dtype=_TYPES[t_real]).astype(np.float64)
    if values.size != int(np.prod(shape)):
        return None
    return name.decode("ascii", "replace"), values.reshape(shape, order="F")


def read_numeric(path: str | Path) -> dict[str, np.ndarray] | None:
    """Name -> float64 array of every matrix of a MATLAB 5 file, or None (see the module)."""
    try:
        data = Path(path).read_bytes()
        if len(data) < 128 or data[126:128] != b"IM" or struct.unpack_from("<H", data, 124)[0] != 0x0100:
            return None
        out = {}
        for kind, payload in _elements(data[128:]):
            if kind == _COMPRESSED:
                kind, payload = next(_elements(zlib.decompress(payload)))
            if kind != _MATRIX:
                return None
            found = _matrix(payload)
            if found is None:
                return None
            out[found[0]] = found[1]
        return out
    except (OSError, ValueError, struct.error, zlib.error, StopIteration):
        return None
