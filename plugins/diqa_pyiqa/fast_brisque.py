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
rounding only. tests/test_fast_nss.py states and checks the tolerance. Memory: a few float64
planes of the image (luminance, padded luminance, normalised image), no per-tap copies.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .fast_piqe import _gauss_quarter

_STRIP_ELEMENTS = 64 * 1024  # pixels per strip of the neighbour products
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
_YIQ_Y = (0.299, 0.587, 0.114)
_grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def supported(img) -> bool:
    """Whether :func:`brisque_scores` takes this batch (else pyiqa's function does)."""
    return (
        isinstance(img, torch.Tensor) and img.dtype in (torch.float64, torch.float32) and img.device.type == "cpu" and img.dim() == 4
        and img.shape[1] in (1, 3) and img.shape[0] >= 1 and min(img.shape[-2:]) >= 7 and not img.requires_grad
        and _gauss_quarter() is not None
    )


def brisque_scores(img: torch.Tensor, sv_coef: torch.Tensor, sv: torch.Tensor) -> torch.Tensor | None:
    """BRISQUE scores (shape [B], float64) of a CPU batch [B, 1 or 3, H, W] in [0, 1], pyiqa's
    float64 ones; float32 pixels are widened one channel at a time (no float64 copy of the batch),
    with the SVR's coefficients (n,) and support vectors (n, 36) read from pyiqa's weights file.
    None when the batch is not one this function handles (see :func:`supported`)."""
    if not supported(img):
        return None
    coef = sv_coef.to(torch.float64).numpy()
    vectors = sv.to(torch.float64).numpy()
    lower, upper = _ranges()
    scores = []
    for b in range(img.shape[0]):
        with single_thread():
            features = brisque_features(img[b])
        if features is None:
            return None  # pyiqa's own function, and its error, for such an image
        scaled = -1 + 2 * (features - lower) / (upper - lower)
        dist = ((scaled[None, :] - vectors) ** 2).sum(axis=1)
        scores.append(float(np.exp(-dist * GAMMA) @ coef - RHO))
    return torch.tensor(scores, dtype=torch.float64)


@contextlib.contextmanager
def single_thread():
    """Thousands of small tile operations: one thread is faster than several (no synchronisation
    per operation), and far faster when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ranges() -> tuple[np.ndarray, np.ndarray]:
    r = np.array(_RANGES, dtype=np.float32).astype(np.float64)
    return r[:, 0], r[:, 1]


def brisque_features(image: torch.Tensor) -> np.ndarray | None:
    """The 36 features (18 per scale) of one image [1 or 3, H, W]; None when a scale's normalised
    image has no variance (a black image), which pyiqa refuses with an assertion."""
    luma = luminance255(image)
    first = nss_features(luma)
    if first is None:
        return None
    half = imresize_half(luma)
    del luma
    second = nss_features(half)
    return None if second is None else np.concatenate([first, second])


def luminance255(image: torch.Tensor) -> torch.Tensor:
    """pyiqa's ``to_y_channel(img, 255)`` of one RGB image (Y of YIQ, times 255, rounded), or a grey
    image times 255 ([H, W])."""
    def channel(c):
        return image[c].to(torch.float64)

    if image.shape[0] == 1:
        return channel(0) * 255  # pyiqa scales a grey image without rounding it
    w = torch.tensor(_YIQ_Y).to(torch.float64)  # float32 constants, widened, as pyiqa's matrix
    y = torch.mul(channel(0), w[0])
    y.addcmul_(channel(1), w[1]).addcmul_(channel(2), w[2])
    return y.mul_(255).round_()


def gauss_normalise(plane: torch.Tensor) -> torch.Tensor:
    """``normalize_img_with_gauss(plane, 7, 7/6, C=1, padding='same')`` of a float64 plane [H, W],
    tile by tile in buffers that stay in the CPU caches."""
    height, width = plane.shape
    padded = torch.zeros(height + 6, width + 6, dtype=torch.float64)
    padded[3:-3, 3:-3] = plane
    out = torch.empty_like(plane)
    quarter_t = _gauss_quarter().t().contiguous()
    eps = torch.finfo(torch.float64).eps
    cols = min(width, _TILE_COLS)
    rows = min(height, max(1, _TILE_ELEMENTS // cols))
    window = torch.empty(2, rows + 6, cols + 6, dtype=torch.float64)
    pair = torch.empty(4, 2, rows, cols + 6, dtype=torch.float64)
    colsum = torch.empty(4, 2, rows, cols + 6, dtype=torch.float64)
    acc_buf = torch.empty(2, rows, cols, dtype=torch.float64)
    tmp_buf = torch.empty(rows, cols, dtype=torch.float64)
    for r0 in range(0, height, rows):
        r = min(height, r0 + rows) - r0
        for c0 in range(0, width, cols):
            c = min(width, c0 + cols) - c0
            win = window[:, : r + 6, : c + 6]
            win[0].copy_(padded[r0 : r0 + r + 6, c0 : c0 + c + 6])
            torch.mul(win[0], win[0], out=win[1])  # as pyiqa's img**2
            pr, cs = pair[:, :, :r, : c + 6], colsum[:, :, :r, : c + 6]
            if r != rows or c != cols:
                pr, cs = pr.contiguous(), cs.contiguous()
            pr[0].copy_(win[:, 3 : 3 + r])
            for e in (1, 2, 3):
                torch.add(win[:, 3 - e : 3 - e + r], win[:, 3 + e : 3 + e + r], out=pr[e])
            torch.matmul(quarter_t, pr.view(4, -1), out=cs.view(4, -1))
            acc = acc_buf[:, :r, :c]
            torch.add(cs[1, ..., 2 : 2 + c], cs[1, ..., 4 : 4 + c], out=acc)
            acc.add_(cs[0, ..., 3 : 3 + c])
            for d in (2, 3):
                acc.add_(cs[d, ..., 3 - d : 3 - d + c]).add_(cs[d, ..., 3 + d : 3 + d + c])
            mu, s2 = acc[0], acc[1]
            sigma = s2.sub_(torch.mul(mu, mu, out=tmp_buf[:r, :c])).abs_().add_(eps).sqrt_().add_(1)
            torch.sub(win[0, 3 : 3 + r, 3 : 3 + c], mu, out=out[r0 : r0 + r, c0 : c0 + c]).div_(sigma)
    return out


def _shape_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pyiqa's grid of shape parameters and its GGD and AGGD ratio tables."""
    global _grid
    if _grid is None:
        gamma = torch.arange(0.2, 10 + 0.001, 0.001).to(torch.float64)
        lg1, lg2, lg3 = torch.lgamma(1.0 / gamma), torch.lgamma(2.0 / gamma), torch.lgamma(3.0 / gamma)
        ggd = (lg1 + lg3 - 2 * lg2).exp()
        aggd = (2 * lg2 - (lg1 + lg3)).exp()
        _grid = gamma.numpy(), ggd.numpy(), aggd.numpy()
    return _grid


def nss_features(plane: torch.Tensor) -> np.ndarray | None:
    """pyiqa's ``natural_scene_statistics`` of one plane [H, W]: 18 features (None: no variance)."""
    gamma, ggd, aggd = _shape_grid()
    norm = gauss_normalise(plane)
    x = norm.numpy()
    n = x.size
    sigma_sq = float(np.einsum("ij,ij->", x, x)) / n
    if math.isclose(math.sqrt(sigma_sq), 0.0, rel_tol=0, abs_tol=1e-8):  # pyiqa's torch.isclose(sigma, 0)
        return None
    mean_abs = float(np.abs(x).sum()) / n
    alpha = gamma[np.abs(sigma_sq / mean_abs**2 - ggd).argmin()]
    features = [alpha, sigma_sq]
    height, width = x.shape
    rows = max(1, _STRIP_ELEMENTS // width)
    for dy, dx in SHIFTS:
        # sums over the products with the rolled image: left (negative) and right (positive) parts
        count_l = count_r = 0
        sq_l = sq_r = total_abs = 0.0
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            src = np.arange(r0 - dy, r1 - dy) % height
            prod = x[r0:r1] * np.roll(x[src], dx, axis=1)
            neg = np.minimum(prod, 0.0)
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
        t = torch.tensor(float(a), dtype=torch.float64)
        eta = (right_std - left_std) * float(torch.exp(torch.lgamma(2.0 / t) - (torch.lgamma(1.0 / t) + torch.lgamma(3.0 / t)) / 2))
        features.extend((a, eta, left_std**2, right_std**2))
    return np.array(features, dtype=np.float64)


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic kernel as pyiqa's resize computes it (its operations, in x's dtype)."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax * ax2
    inner = ((a + 2) * ax3 - (a + 3) * ax2 + 1) * ax.le(1).to(x.dtype)
    outer = ((a * ax3) - (5 * a * ax2) + (8 * a * ax) - (4 * a)) * torch.logical_and(ax.gt(1), ax.le(2)).to(x.dtype)
    return inner + outer


def _resize_taps(size_in: int) -> tuple[torch.Tensor, int, int, int]:
    """pyiqa's half-scale antialiased bicubic resize along one axis of ``size_in`` samples: its
    weights [K, out] (float32), the output size, and how many samples its MATLAB-style edge
    padding (the edge sample repeated: -1 reads 0, -2 reads 1) adds before and after. Output o
    reads padded samples 2o + k, k < K."""
    scale = 0.5
    size = math.ceil(size_in * scale)
    kernel_size = math.ceil(4 / scale) + 2
    pos = torch.linspace(0, size - 1, steps=size, dtype=torch.float32)
    pos = (pos + 0.5) / scale - 0.5
    base = pos.floor() - (kernel_size // 2) + 1
    dist = pos - base
    offsets = torch.arange(kernel_size, dtype=torch.float32).view(-1, 1)
    weight = _cubic((dist.view(1, -1) - offsets) * scale)
    weight /= weight.sum(dim=0, keepdim=True)
    first = base.long()
    if not torch.equal(first, first[0] + 2 * torch.arange(size)):
        raise AssertionError("half-scale resize: unexpected sampling positions")
    pre = max(0, -int(first[0]))
    post = max(0, int(first[-1]) + kernel_size - size_in)
    return weight, size, pre, post


def _edge_pad(src: torch.Tensor, pre: int, post: int, dim: int) -> torch.Tensor:
    """MATLAB's symmetric padding along ``dim`` (0 or 1) of a 2-D tensor."""
    n = src.shape[dim]
    index = torch.arange(-pre, n + post)
    index = torch.where(index < 0, -index - 1, index)
    index = torch.where(index >= n, 2 * n - 1 - index, index)
    return src.index_select(dim, index)


def imresize_half(plane: torch.Tensor) -> torch.Tensor:
    """pyiqa's ``imresize(x, scale=0.5, antialiasing=True)`` of a float64 plane [H, W]: computed
    in float32 as pyiqa does (rows first, then columns; per output pixel the K products rounded,
    then summed in tap order, as its sum over the unfolded taps does), returned widened to float64."""
    height, width = plane.shape
    w_rows, out_h, pre, post = _resize_taps(height)
    k = w_rows.shape[0]
    src = _edge_pad(plane.to(torch.float32), pre, post, 0)
    tall = _taps_sum(src, w_rows, out_h, k, rows=True)
    del src
    w_cols, out_w, pre, post = _resize_taps(width)
    wide = _edge_pad(tall, pre, post, 1)
    del tall
    return _taps_sum(wide, w_cols, out_w, k, rows=False).to(torch.float64)


def _taps_sum(src: torch.Tensor, weight: torch.Tensor, size: int, k: int, rows: bool) -> torch.Tensor:
    """Sum over taps j of ``src[2o + j] * weight[j, o]`` along rows (or columns), a strip of
    output rows at a time."""
    height = size if rows else src.shape[0]
    width = src.shape[1] if rows else size
    out = torch.empty(height, width, dtype=torch.float32)
    step = max(1, _RESIZE_ELEMENTS // width)
    tmp = torch.empty(step, width, dtype=torch.float32)
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
                torch.mul(sample, w, out=acc)
            else:
                acc.add_(torch.mul(sample, w, out=t))
    return out
