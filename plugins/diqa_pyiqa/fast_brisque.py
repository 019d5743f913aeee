"""BRISQUE scores in float64 on the CPU without importing pyiqa, equal to pyiqa's within rounding.

The steps of pyiqa's ``brisque`` (pyiqa/archs/brisque_arch.py, version 'original'), per image and
per plane instead of on the whole batch at once:

- luminance: Y of YIQ (pyiqa's float32 weights, widened), times 255, rounded;
- at each of two scales, the Gaussian normalisation (``normalize_img_with_gauss``, 7x7 fspecial
  kernel, zero ('same') padding), then the GGD fit of the normalised image and the AGGD fits of
  its products with four neighbours (``torch.roll``: the image wraps around), on pyiqa's grid of
  shape parameters (``torch.arange(0.2, 10.001, 0.001)`` in float32, widened);
- between the scales, pyiqa's MATLAB-style bicubic ``imresize(scale=0.5, antialiasing=True)``,
  which casts to float32 and back (its ``cast_input`` always does): done here in float32 too,
  with the same weights and the same tap order, one strip of output rows at a time;
- the feature scaling (MATLAB's ranges, float32 constants widened) and the RBF SVR.

The Gaussian filter sums the 49 taps with the kernel's mirror symmetry (``fast_piqe``'s 4x4
quarter), one strip of rows at a time: at the first scale the pixels are integers, so every sum is
exact and equals pyiqa's; at the second the order differs from pyiqa's convolution by float64
rounding only. tests/test_fast_nss.py states and checks the tolerance.

numpy only: a scoring process that takes this path never imports torch (seconds of start-up).
The pixels come as the decoder gives them (uint8 [H, W, 3], see :func:`luminance255`) or as a
float array or CPU tensor [1 or 3, H, W] in [0, 1]; only the one float64 luminance plane is made.
Memory at the peak: two float64 planes of the image (the luminance and the normalised image; the
filter pads tile by tile), the decoded pixels and a strip or tile of temporaries.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from diqa_bench.threads import single_thread, small_pages

from .fast_gauss import arange_float32, gauss_quarter, lgamma

_STRIP_ELEMENTS = 64 * 1024  # pixels per strip of the neighbour products and of the luminance
_TILE_ELEMENTS = 16 * 1024  # pixels per tile of the Gaussian filter: its buffers stay in L2
_TILE_COLS = 1024
_RESIZE_ELEMENTS = 32 * 1024  # output pixels per strip of the half-scale resize
SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # pyiqa's neighbours, as torch.roll shifts
GAMMA = 0.05  # RBF kernel width of pyiqa's 'original' model
RHO = -153.591  # its bias
# MATLAB BRISQUE's feature ranges, as pyiqa lists them (a float32 tensor, widened to float64)
_RANGES = [
    (0.338, 10), (0.017204, 0.806612), (0.236, 1.642), (-0.123884, 0.20293), (0.000155, 0.712298),
    (0.001122, 0.470257), (0.244, 1.641), (-0.123586, 0.179083), (0.000152, 0.710456), (0.000975, 0.470984),
    (0.249, 1.555), (-0.135687, 0.100858), (0.000174, 0.684173), (0.000913, 0.534174), (0.258, 1.561),
    (-0.143408, 0.100486), (0.000179, 0.685696), (0.000888, 0.536508), (0.471, 3.264), (0.012809, 0.703171),
    (0.218, 1.046), (-0.094876, 0.187459), (1.5e-05, 0.442057), (0.001272, 0.40803), (0.222, 1.042),
    (-0.115772, 0.162604), (1.6e-05, 0.444362), (0.001374, 0.40243), (0.227, 0.996), (-0.117188, 0.098323),
    (3e-05, 0.531903), (0.001122, 0.369589), (0.228, 0.99), (-0.12243, 0.098658), (2.8e-05, 0.530092),
    (0.001118, 0.370399),
]
_YIQ_Y = np.array([0.299, 0.587, 0.114], dtype=np.float32).astype(np.float64)  # pyiqa's float32 constants, widened
_PIXEL_TYPES = (np.uint8, np.float32, np.float64)
_grid: tuple | None = None


def is_tensor(x) -> bool:
    """A torch tensor (without importing torch: a process that never did has none)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_numpy(x) -> np.ndarray:
    return x.numpy() if is_tensor(x) else x


def like_input(result: np.ndarray, template):
    """``result`` as a tensor when the caller passed one (tests compare with pyiqa's tensors)."""
    if is_tensor(template):
        import torch

        return torch.from_numpy(result)
    return result


def supported(img) -> bool:
    """Whether :func:`brisque_scores` takes this batch (else pyiqa's function does): a CPU tensor
    [B, 1 or 3, H, W] of float32 or float64 pixels in [0, 1], or a numpy array [B, H, W, 1 or 3]
    of uint8 pixels (the decoder's) or float32/float64 ones in [0, 1]; at least 7x7 pixels."""
    if is_tensor(img):
        import torch

        ok = (img.dtype in (torch.float64, torch.float32) and img.device.type == "cpu" and img.dim() == 4 and img.shape[1] in (1, 3)
              and not img.requires_grad)
        height, width = img.shape[-2:]
    elif isinstance(img, np.ndarray):
        ok = img.ndim == 4 and img.shape[3] in (1, 3) and img.dtype in _PIXEL_TYPES
        height, width = img.shape[1:3] if img.ndim == 4 else (0, 0)
    else:
        return False
    return ok and img.shape[0] >= 1 and min(height, width) >= 7 and gauss_quarter() is not None


def images_of(img):
    """The images of a supported batch, each channels last [H, W, C] (numpy; a tensor's are views
    of its CPU memory, not copies)."""
    if is_tensor(img):
        return [img[b].numpy().transpose(1, 2, 0) for b in range(img.shape[0])]
    return [img[b] for b in range(img.shape[0])]


def brisque_scores(img, sv_coef, sv):
    """BRISQUE scores (shape [B], float64) of a batch (see :func:`supported`), pyiqa's float64
    ones, with the SVR's coefficients (n,) and support vectors (n, 36) read from pyiqa's weights
    file (tensors or arrays). A tensor in, a tensor out; an array in, an array out. None when the
    batch is not one this function handles."""
    if not supported(img):
        return None
    coef = np.asarray(sv_coef, dtype=np.float64)
    vectors = np.asarray(sv, dtype=np.float64)
    scores = []
    for image in images_of(img):
        with single_thread(), small_pages():
            score = brisque_score(image, coef, vectors)
        if score is None:
            return None  # pyiqa's own function, and its error, for such an image
        scores.append(score)
    return like_input(np.array(scores, dtype=np.float64), img)


def brisque_score(image: np.ndarray, coef: np.ndarray, vectors: np.ndarray) -> float | None:
    """One image [H, W, 1 or 3] (see :func:`luminance255`); None: no variance (see :func:`brisque_features`)."""
    features = brisque_features(image)
    if features is None:
        return None
    lower, upper = _ranges()
    scaled = -1 + 2 * (features - lower) / (upper - lower)
    dist = ((scaled[None, :] - vectors) ** 2).sum(axis=1)
    return float(np.exp(-dist * GAMMA) @ coef - RHO)


def _ranges() -> tuple[np.ndarray, np.ndarray]:
    r = np.array(_RANGES, dtype=np.float32).astype(np.float64)
    return r[:, 0], r[:, 1]


def brisque_features(image) -> np.ndarray | None:
    """The 36 features (18 per scale) of one image (see :func:`luminance255`); None when a scale's
    normalised image has no variance (a black image), which pyiqa refuses with an assertion."""
    luma = luminance255(image)
    first = nss_features(luma)
    if first is None:
        return None
    half = imresize_half(luma)
    del luma
    second = nss_features(half)
    return None if second is None else np.concatenate([first, second])


def _channel(image: np.ndarray, c: int) -> np.ndarray:
    """Channel ``c`` of rows of an image [h, W, C] as float64 values in [0, 1]: uint8 pixels are
    the decoder's ``pixel / 255`` in float32 (the runner's float32 images), widened."""
    plane = image[:, :, c]
    if plane.dtype == np.uint8:
        plane = np.divide(plane, np.float32(255.0), dtype=np.float32)
    return plane.astype(np.float64)


def luminance255(image):
    """pyiqa's ``to_y_channel(img, 255)`` of one image (Y of YIQ, times 255, rounded), or a grey
    image times 255: a float64 plane [H, W]. ``image``: a tensor [1 or 3, H, W] (float), or an
    array [H, W, 1 or 3] (uint8, the decoder's pixels, or float in [0, 1]), widened a strip of
    rows at a time (no float64 copy of the image)."""
    if is_tensor(image):
        # pyiqa's RGB->Y matmul rounds as r*w0 and then two fused multiply-adds, which addcmul
        # does: float64 pixels that are no float32 values round alike only this way
        import torch

        if image.shape[0] == 1:
            return image[0].to(torch.float64) * 255  # pyiqa scales a grey image without rounding it
        w = torch.from_numpy(_YIQ_Y)
        y = torch.mul(image[0].to(torch.float64), w[0])
        y.addcmul_(image[1].to(torch.float64), w[1]).addcmul_(image[2].to(torch.float64), w[2])
        return y.mul_(255).round_()
    height, width, channels = image.shape
    out = np.empty((height, width))
    step = max(1, _STRIP_ELEMENTS // width)
    for r0 in range(0, height, step):
        rows, y = image[r0 : r0 + step], out[r0 : r0 + step]
        if channels == 1:
            np.multiply(_channel(rows, 0), 255, out=y)
            continue
        # float32 pixels (uint8 / 255 are) times float32 weights: each product is exact in float64,
        # so fused multiply-adds (pyiqa's matmul) or not, the sums round alike
        np.multiply(_channel(rows, 0), _YIQ_Y[0], out=y)
        for c in (1, 2):
            y += _channel(rows, c) * _YIQ_Y[c]
        np.multiply(y, 255, out=y)
        np.round(y, out=y)
    return out


class _Tiles:
    """Buffers of one tile shape for :func:`gauss_normalise`, reused from tile to tile (they stay
    in the CPU caches)."""

    def __init__(self, rows: int, cols: int):
        self.window = np.empty((2, rows + 6, cols + 6))  # the tile with its border, and its square
        self.pair = np.empty((4, 2, rows, cols + 6))
        self.colsum = np.empty((4, 2, rows, cols + 6))
        self.acc = np.empty((2, rows, cols))
        self.tmp = np.empty((rows, cols))


def _fill_window(plane: np.ndarray, r0: int, r1: int, c0: int, c1: int, window: np.ndarray, replicate: bool) -> None:
    """``window`` = rows r0-3..r1+3, columns c0-3..c1+3 of ``plane``, padded beyond its edges
    with zeros or (``replicate``) the edge pixels: the padding of the whole plane, tile by tile."""
    height, width = plane.shape
    if r0 >= 3 and c0 >= 3 and r1 + 3 <= height and c1 + 3 <= width:
        np.copyto(window, plane[r0 - 3 : r1 + 3, c0 - 3 : c1 + 3])
    elif replicate:
        rows = np.clip(np.arange(r0 - 3, r1 + 3), 0, height - 1)
        cols = np.clip(np.arange(c0 - 3, c1 + 3), 0, width - 1)
        np.copyto(window, plane[rows[:, None], cols[None, :]])
    else:
        window.fill(0.0)
        top, left = max(0, r0 - 3), max(0, c0 - 3)
        bottom, right = min(height, r1 + 3), min(width, c1 + 3)
        window[top - (r0 - 3) : bottom - (r0 - 3), left - (c0 - 3) : right - (c0 - 3)] = plane[top:bottom, left:right]


def gauss_normalise(plane, replicate: bool = False):
    """``normalize_img_with_gauss(plane, 7, 7/6, C=1, padding='same')`` (``replicate``: padding
    'replicate', NIQE's) of a float64 plane [H, W], tile by tile in buffers that stay in the CPU
    caches; the padding too (no padded copy of the plane)."""
    src = _as_numpy(plane)
    height, width = src.shape
    out = np.empty_like(src)
    quarter_t = np.ascontiguousarray(gauss_quarter().T)
    eps = np.finfo(np.float64).eps
    cols = min(width, _TILE_COLS)
    rows = min(height, max(1, _TILE_ELEMENTS // cols))
    buffers: dict[tuple[int, int], _Tiles] = {}
    for r0 in range(0, height, rows):
        r = min(height, r0 + rows) - r0
        for c0 in range(0, width, cols):
            c = min(width, c0 + cols) - c0
            t = buffers.get((r, c)) or buffers.setdefault((r, c), _Tiles(r, c))
            win = t.window
            _fill_window(src, r0, r0 + r, c0, c0 + c, win[0], replicate)
            np.multiply(win[0], win[0], out=win[1])  # as pyiqa's img**2
            # The 7x7 Gaussian of both: rows mirrored about the centre row added, weighted by a
            # 4x4 matrix product (one row of it per column distance), then columns mirrored about
            # the centre column added. Integer pixels: every partial sum is exact (fast_piqe).
            pair, cs = t.pair, t.colsum
            pair[0] = win[:, 3 : 3 + r]
            for e in (1, 2, 3):
                np.add(win[:, 3 - e : 3 - e + r], win[:, 3 + e : 3 + e + r], out=pair[e])
            np.matmul(quarter_t, pair.reshape(4, -1), out=cs.reshape(4, -1))
            acc = t.acc
            np.add(cs[1, ..., 2 : 2 + c], cs[1, ..., 4 : 4 + c], out=acc)
            acc += cs[0, ..., 3 : 3 + c]
            for d in (2, 3):
                acc += cs[d, ..., 3 - d : 3 - d + c]
                acc += cs[d, ..., 3 + d : 3 + d + c]
            mu, sigma = acc[0], acc[1]
            sigma -= np.multiply(mu, mu, out=t.tmp)
            np.abs(sigma, out=sigma)
            sigma += eps
            np.sqrt(sigma, out=sigma)
            sigma += 1
            dest = out[r0 : r0 + r, c0 : c0 + c]
            np.subtract(win[0, 3 : 3 + r, 3 : 3 + c], mu, out=dest)
            dest /= sigma
    return like_input(out, plane)


def shape_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pyiqa's grid of shape parameters (``torch.arange(0.2, 10.001, 0.001)``, float32, widened)
    and its GGD and AGGD ratio tables."""
    global _grid
    if _grid is None:
        gamma = arange_float32(0.2, 10 + 0.001, 0.001).astype(np.float64)
        lg1, lg2, lg3 = lgamma(1.0 / gamma), lgamma(2.0 / gamma), lgamma(3.0 / gamma)
        ggd = np.exp(lg1 + lg3 - 2 * lg2)
        aggd = np.exp(2 * lg2 - (lg1 + lg3))
        _grid = gamma, ggd, aggd, (lg1, lg2, lg3)
    return _grid[:3]


def grid_lgamma() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lgamma(k / gamma)`` for k = 1, 2, 3 over the grid of :func:`shape_grid`: a fitted shape is
    a grid entry, so these are its values, looked up."""
    shape_grid()
    return _grid[3]


def nss_features(plane) -> np.ndarray | None:
    """pyiqa's ``natural_scene_statistics`` of one float64 plane [H, W]: 18 features (None: no variance)."""
    gamma, ggd, aggd = shape_grid()
    x = _as_numpy(gauss_normalise(_as_numpy(plane)))
    n = x.size
    sigma_sq = float(np.einsum("ij,ij->", x, x)) / n
    if math.isclose(math.sqrt(sigma_sq), 0.0, rel_tol=0, abs_tol=1e-8):  # pyiqa's torch.isclose(sigma, 0)
        return None
    height, width = x.shape
    rows = max(1, _STRIP_ELEMENTS // width)
    prod_buf, neg_buf = np.empty((rows, width)), np.empty((rows, width))
    mean_abs = sum(float(np.abs(x[r0 : r0 + rows], out=prod_buf[: min(rows, height - r0)]).sum()) for r0 in range(0, height, rows)) / n
    alpha = gamma[np.abs(sigma_sq / mean_abs**2 - ggd).argmin()]
    features = [alpha, sigma_sq]
    for dy, dx in SHIFTS:
        # sums over the products with the rolled image: left (negative) and right (positive) parts
        count_l = count_r = 0
        sq_l = sq_r = total_abs = 0.0
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            prod, neg = prod_buf[: r1 - r0], neg_buf[: r1 - r0]
            _rolled_product(x, r0, r1, dy, dx, prod)
            np.minimum(prod, 0.0, out=neg)
            count_l += int(np.count_nonzero(neg))
            count_r += int(np.count_nonzero(prod)) - int(np.count_nonzero(neg))
            left = float(np.einsum("ij,ij->", neg, neg))
            sq_l += left
            sq_r += float(np.einsum("ij,ij->", prod, prod)) - left
            total_abs += float(prod.sum()) - 2 * float(neg.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            left_std = math.sqrt(sq_l / count_l) if count_l else float("nan")
            right_std = math.sqrt(sq_r / count_r) if count_r else float("nan")
            gammahat = left_std / right_std if right_std != 0 else float("inf")
            rhat = (total_abs / n) ** 2 / ((sq_l + sq_r) / n)
            rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / (gammahat**2 + 1) ** 2
        a = gamma[np.abs(aggd - rhatnorm).argmin()] if np.isfinite(rhatnorm) else gamma[0]
        lg1, lg2, lg3 = lgamma(np.array([1.0 / a, 2.0 / a, 3.0 / a]))
        eta = (right_std - left_std) * math.exp(lg2 - (lg1 + lg3) / 2)
        features.extend((a, eta, left_std**2, right_std**2))
    return np.array(features, dtype=np.float64)


def _rolled_product(x: np.ndarray, r0: int, r1: int, dy: int, dx: int, out: np.ndarray) -> None:
    """Rows r0..r1 of ``x * torch.roll(x, (dy, dx), (0, 1))`` into ``out``, without a rolled copy
    (``dx``: 0 or 1, :data:`SHIFTS`)."""
    height = x.shape[0]
    rows = x[r0:r1]
    src0 = (r0 - dy) % height
    if src0 + (r1 - r0) <= height:
        shifted = x[src0 : src0 + (r1 - r0)]
    else:
        shifted = x[np.arange(r0 - dy, r1 - dy) % height]
    if dx == 0:
        np.multiply(rows, shifted, out=out)
    else:
        np.multiply(rows[:, dx:], shifted[:, :-dx], out=out[:, dx:])
        np.multiply(rows[:, :dx], shifted[:, -dx:], out=out[:, :dx])


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic kernel as pyiqa's resize computes it (its operations, in float32)."""
    f = np.float32
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax * ax2
    inner = (f(a + 2) * ax3 - f(a + 3) * ax2 + f(1)) * (ax <= 1).astype(np.float32)
    outer = ((f(a) * ax3) - (f(5 * a) * ax2) + (f(8 * a) * ax) - f(4 * a)) * ((ax > 1) & (ax <= 2)).astype(np.float32)
    return inner + outer


def _resize_taps(size_in: int) -> tuple[np.ndarray, int, int, int]:
    """pyiqa's half-scale antialiased bicubic resize along one axis of ``size_in`` samples: its
    weights [K, out] (float32), the output size, and how many samples its MATLAB-style edge
    padding (the edge sample repeated: -1 reads 0, -2 reads 1) adds before and after. Output o
    reads padded samples 2o + k, k < K."""
    scale = 0.5
    size = math.ceil(size_in * scale)
    kernel_size = math.ceil(4 / scale) + 2
    pos = np.arange(size, dtype=np.float32)  # torch.linspace(0, size - 1, size): whole numbers, exact
    pos = (pos + np.float32(0.5)) / np.float32(scale) - np.float32(0.5)
    base = np.floor(pos) - np.float32(kernel_size // 2) + np.float32(1)
    dist = pos - base
    offsets = np.arange(kernel_size, dtype=np.float32).reshape(-1, 1)
    weight = _cubic((dist.reshape(1, -1) - offsets) * np.float32(scale))
    weight /= weight.sum(axis=0, keepdims=True)
    first = base.astype(np.int64)
    if not np.array_equal(first, first[0] + 2 * np.arange(size)):
        raise AssertionError("half-scale resize: unexpected sampling positions")
    pre = max(0, -int(first[0]))
    post = max(0, int(first[-1]) + kernel_size - size_in)
    return weight, size, pre, post


def _edge_pad(src: np.ndarray, pre: int, post: int, axis: int) -> np.ndarray:
    """MATLAB's symmetric padding along ``axis`` (0 or 1) of a 2-D array."""
    n = src.shape[axis]
    index = np.arange(-pre, n + post)
    index = np.where(index < 0, -index - 1, index)
    index = np.where(index >= n, 2 * n - 1 - index, index)
    return src.take(index, axis=axis)


def imresize_half(plane):
    """pyiqa's ``imresize(x, scale=0.5, antialiasing=True)`` of a float64 plane [H, W]: computed
    in float32 as pyiqa does (rows first, then columns; per output pixel the K products rounded,
    then summed in tap order, as its sum over the unfolded taps does), returned widened to float64."""
    x = _as_numpy(plane)
    height, width = x.shape
    w_rows, out_h, pre, post = _resize_taps(height)
    k = w_rows.shape[0]
    src = _edge_pad(x.astype(np.float32), pre, post, 0)
    tall = _taps_sum(src, w_rows, out_h, k, rows=True)
    del src
    w_cols, out_w, pre, post = _resize_taps(width)
    wide = _edge_pad(tall, pre, post, 1)
    del tall
    return like_input(_taps_sum(wide, w_cols, out_w, k, rows=False).astype(np.float64), plane)


def _taps_sum(src: np.ndarray, weight: np.ndarray, size: int, k: int, rows: bool) -> np.ndarray:
    """Sum over taps j of ``src[2o + j] * weight[j, o]`` along rows (or columns), a strip of
    output rows at a time."""
    height = size if rows else src.shape[0]
    width = src.shape[1] if rows else size
    out = np.empty((height, width), dtype=np.float32)
    step = max(1, _RESIZE_ELEMENTS // width)
    tmp = np.empty((step, width), dtype=np.float32)
    for o0 in range(0, height, step):
        o1 = min(height, o0 + step)
        acc, t = out[o0:o1], tmp[: o1 - o0]
        for j in range(k):
            if rows:
                sample = src[2 * o0 + j : 2 * (o1 - 1) + j + 1 : 2]
                w = weight[j, o0:o1, None]
            else:
                sample = src[o0:o1, j : j + 2 * (width - 1) + 1 : 2]
                w = weight[j]
            if j == 0:
                np.multiply(sample, w, out=acc)
            else:
                acc += np.multiply(sample, w, out=t)
    return out
