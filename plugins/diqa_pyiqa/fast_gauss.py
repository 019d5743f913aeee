"""pyiqa's 7x7 Gaussian of ``normalize_img_with_gauss`` and the arrays of its NSS fits, in numpy:
what the fast classical paths (:mod:`diqa_pyiqa.fast_brisque`, ``fast_niqe``, ``fast_piqe``) share
without importing torch, the kernel and the grid bit equal to pyiqa's (tests/test_fast_nss.py compares)."""

from __future__ import annotations

import ctypes
import math

import numpy as np

_quarter: np.ndarray | bool | None = None
_lgamma_c = None


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)`` as pyiqa computes it (numpy float64, then
    float32, shape [size, size]): the same operations, so the same bits."""
    half = (size - 1.0) / 2.0
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    total = h.sum()
    if total != 0:
        h /= total
    return h.astype(np.float32)


def gauss_quarter() -> np.ndarray | None:
    """pyiqa's 7x7 Gaussian (fspecial(7, 7/6), float32 weights, widened) by distance from the
    centre: ``q[e, d]`` weighs the pixels e rows and d columns away, each way. None when the kernel
    is not what the exact filter relies on (mirror-symmetric, float32 weights of at least 2**-13,
    summing to about 1)."""
    global _quarter
    if _quarter is None:
        kernel = gaussian_kernel(7, 7.0 / 6).astype(np.float64)
        fits = (
            np.array_equal(kernel, kernel[::-1]) and np.array_equal(kernel, kernel[:, ::-1])
            and bool((kernel >= 2.0**-13).all()) and float(kernel.sum()) < 1.001
        )
        _quarter = np.ascontiguousarray(kernel[3:, 3:]) if fits else False
    return _quarter if isinstance(_quarter, np.ndarray) else None


def arange_float32(start: float, end: float, step: float) -> np.ndarray:
    """``torch.arange(start, end, step)`` (float32) as torch's CPU kernel computes it: in blocks of
    8 lanes, each block's first value ``start + step * i`` in double, rounded to float32, then the
    lanes ``first + k * step`` in float32; the elements past the last multiple of 16 one by one, in
    double. (Plain ``start + step * i`` differs in the last bit for a fifth of pyiqa's grid.) Found by
comparing with this project's torch on its CPU machine; a test compares again wherever it runs, since
another torch build or CPU may vectorise otherwise."""
    n = math.ceil((end - start) / step)
    i = np.arange(n)
    lane = i % 8
    first = (start + step * (i - lane)).astype(np.float32)
    out = first + lane.astype(np.float32) * np.float32(step)
    tail = n - n % 16
    out[tail:] = (start + step * i[tail:]).astype(np.float32)
    return out


def lgamma(x) -> np.ndarray:
    """``lgamma`` of float64 values, elementwise, by the C library. torch's own differs from it in
    the last bit for about a quarter of pyiqa's grid (Python's ``math.lgamma`` for most of it): the
    ratio tables are only searched for their nearest entry, and the features move by ~1e-16
    relative, within the stated tolerance (tests/test_fast_nss.py)."""
    global _lgamma_c
    if _lgamma_c is None:
        try:
            f = ctypes.CDLL(None).lgamma
            f.restype, f.argtypes = ctypes.c_double, [ctypes.c_double]
            _lgamma_c = f
        except (OSError, AttributeError):  # no C library symbol here: Python's, last bits aside
            _lgamma_c = math.lgamma
    arr = np.asarray(x, dtype=np.float64)
    return np.frompyfunc(_lgamma_c, 1, 1)(arr).astype(np.float64)
