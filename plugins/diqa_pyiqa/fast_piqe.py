"""PIQE scores in float64 on the CPU, bit for bit pyiqa's, in a fraction of its time.

pyiqa's ``piqe`` (pyiqa/archs/piqe_arch.py) spends most of a float64 run on work the score does
not need or on torch's per-output reduction overhead: three full-resolution masks
(``F.interpolate``), block copies (``unfold().contiguous()``, two ``torch.cat`` for the
centre/surround split) and ten ``torch.std``/``torch.var`` calls, four of them over 6-pixel windows
(about 175 ns per window). :func:`piqe_scores` computes the score alone:

- the luminance, the rounding, the symmetric padding and the Gaussian normalisation in strips of
  rows that stay in the CPU caches, with the same elementwise operations as pyiqa (the filter is
  :func:`diqa_pyiqa.fast_filter.imfilter`'s sequence of 49 ``add_`` per output row);
- each strip is scattered straight into a pixel-major block layout, ``X[pixel, block]``;
- every variance and standard deviation as the sequential Welford recurrence torch's CPU
  ``var``/``std`` kernel runs (``delta = x - mean; mean += delta / k; m2 += delta * (x - mean)``,
  then ``m2 / (n - 1)``), vectorised across blocks instead of looping over them.

Every step is an IEEE operation in pyiqa's order, so scores and the activity, noise and
impairment block masks are identical (tests/test_fast_piqe.py compares them with pyiqa's on
photos, sample images, synthetic and odd-sized images, and batches). Measured on this project's
2-core machine, one thread: see benchmarks/PERF.md. Float32, other devices, images with a
non-positive or non-finite maximum, images under 16 pixels on a side and batches of a single
block go to pyiqa's function.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

BLOCK = 16  # pyiqa's block_size
WINDOW = 6  # pyiqa's window_size: edge segments for the noticeable-distortion criterion
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
_STRIP_ELEMENTS = 48 * 1024  # pixels per filter strip: its 4 float64 arrays (1.5 MiB) stay in L2
_CHUNK = 4096  # blocks per Welford chunk: its running arrays stay in L1

# Pixel orders (row-major index inside a 16x16 block) of the sequences pyiqa reduces:
_ALL = list(range(BLOCK * BLOCK))
# centre: columns 7 and 8 (torch.stack(..., dim=3) -> row-major over (16, 2))
_CENTRE = [r * BLOCK + c for r in range(BLOCK) for c in (7, 8)]
# surround: what remains after pyiqa's two torch.cat: column 7, then (of the rest) column 9, removed
_SURROUND = [r * BLOCK + c for r in range(BLOCK) for c in (0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15)]
# edges, each in pyiqa's order: top row, right column, bottom row, left column
_EDGES = [
    [c for c in range(BLOCK)],
    [r * BLOCK + BLOCK - 1 for r in range(BLOCK)],
    [(BLOCK - 1) * BLOCK + c for c in range(BLOCK)],
    [r * BLOCK for r in range(BLOCK)],
]

_taps: list[tuple[int, int, float]] | None = None


def _gauss_taps() -> list[tuple[int, int, float]]:
    """pyiqa's 7x7 Gaussian (``normalize_img_with_gauss``: fspecial(7, 7/6)), as fast_filter reads it."""
    global _taps
    if _taps is None:
        from pyiqa.matlab_utils import fspecial

        weight = fspecial(7, 7.0 / 6, 1).to(torch.float64)
        _taps = [(i, j, float(v)) for i, row in enumerate(weight[0, 0].tolist()) for j, v in enumerate(row)]
    return _taps


def supported(img) -> bool:
    """Whether :func:`piqe_scores` takes this batch (else pyiqa's function does)."""
    return (
        isinstance(img, torch.Tensor) and img.dtype == torch.float64 and img.device.type == "cpu" and img.dim() == 4
        and img.shape[1] in (1, 3) and img.shape[0] >= 1 and min(img.shape[-2:]) >= BLOCK and not img.requires_grad
    )


class PiqeBlocks(NamedTuple):
    """PIQE of a batch: scores [B] and pyiqa's masks at block resolution, [B, block rows, block
    columns] (pyiqa's ``get_masks`` gives them upsampled to pixels)."""

    scores: torch.Tensor
    activity: torch.Tensor
    noise: torch.Tensor
    noticeable_artifacts: torch.Tensor


def piqe_scores(img: torch.Tensor) -> torch.Tensor | None:
    """PIQE scores (shape [B], float64) of a float64 CPU batch [B, 1 or 3, H, W], equal to
    ``pyiqa.archs.piqe_arch.piqe(img)[0]`` with :mod:`diqa_pyiqa.fast_filter` installed.
    None when the batch is not one this function handles (see :func:`supported`)."""
    result = piqe_blocks(img)
    return None if result is None else result.scores


def piqe_blocks(img: torch.Tensor) -> PiqeBlocks | None:
    """:func:`piqe_scores` with the block masks."""
    if not supported(img):
        return None
    bsz, channels, height, width = img.shape
    luma = None
    if channels == 1:
        luma = img
    elif bsz > 1:
        # pyiqa's RGB->YIQ matmul of a batch rounds differently from a single image's (not
        # always fused multiply-adds): only the same call gives the same pixels
        from pyiqa.utils.color_util import to_y_channel

        luma = to_y_channel(img, out_data_range=1, color_space="yiq")
    row_pad, col_pad = height % BLOCK, width % BLOCK  # pyiqa pads by the remainder (sic), not up to a multiple
    n_rows, n_cols = (height + row_pad) // BLOCK, (width + col_pad) // BLOCK
    n = n_rows * n_cols
    if bsz * n < 2:
        return None  # torch reduces a lone block's pixels in another order than block by block
    blocks = torch.empty(BLOCK, BLOCK, bsz, n_rows, n_cols, dtype=torch.float64)
    for b in range(bsz):
        padded = torch.empty(height + row_pad + 6, width + col_pad + 6, dtype=torch.float64)
        y = padded[3 : 3 + height, 3 : 3 + width]
        if luma is None:
            _luminance_into(img[b], y)
        else:
            y.copy_(luma[b, 0])
        # the max over whole rows of the buffer (a contiguous reduction): pad columns below any pixel
        padded[3 : 3 + height, :3] = -math.inf
        padded[3 : 3 + height, 3 + width :] = -math.inf
        peak = padded[3 : 3 + height].max()
        if not (bool(torch.isfinite(peak)) and float(peak) > 0):
            return None  # pyiqa's nan scores, or its error
        y.div_(peak).mul_(255).round_()  # pyiqa: round(255 * (img / max))
        _pad(padded, height, width, row_pad, col_pad)
        _normalise_into(padded, blocks[:, :, b], n_rows, n_cols)
    x = blocks.view(BLOCK * BLOCK, bsz * n).numpy()
    var, *masks = (torch.from_numpy(a).view(bsz, n) for a in block_statistics(x))
    return PiqeBlocks(_pool(var, *masks), *(m.view(bsz, n_rows, n_cols) for m in masks))


_YIQ_Y = None


def _luminance_into(rgb: torch.Tensor, out: torch.Tensor) -> None:
    """pyiqa's ``to_y_channel(img, 1, 'yiq')`` of one image: its matmul computes the Y column as
    r*w0 and then two fused multiply-adds, which is what addcmul computes (the weights are pyiqa's
    float32 constants, widened)."""
    global _YIQ_Y
    if _YIQ_Y is None:
        _YIQ_Y = torch.tensor([0.299, 0.587, 0.114]).to(torch.float64)
    torch.mul(rgb[0], _YIQ_Y[0], out=out)
    torch.addcmul(out, rgb[1], _YIQ_Y[1], out=out)
    torch.addcmul(out, rgb[2], _YIQ_Y[2], out=out)


def _pad(padded: torch.Tensor, h: int, w: int, row_pad: int, col_pad: int) -> None:
    """Around the image at ``padded[3:3+h, 3:3+w]``: pyiqa's symmetric padding by the remainder
    (``symm_pad``), then the Gaussian filter's 3-pixel replicate padding (``exact_padding_2d``)."""
    hp, wp = h + row_pad, w + col_pad
    if col_pad:
        padded[3 : 3 + h, 3 + w : 3 + wp] = padded[3 : 3 + h, 3 + w - col_pad : 3 + w].flip(-1)
    if row_pad:
        padded[3 + h : 3 + hp, 3 : 3 + wp] = padded[3 + h - row_pad : 3 + h, 3 : 3 + wp].flip(0)
    padded[3 : 3 + hp, :3] = padded[3 : 3 + hp, 3:4]
    padded[3 : 3 + hp, 3 + wp :] = padded[3 : 3 + hp, 2 + wp : 3 + wp]
    padded[:3] = padded[3:4]
    padded[3 + hp :] = padded[2 + hp : 3 + hp]


def _normalise_into(padded: torch.Tensor, dest: torch.Tensor, n_rows: int, n_cols: int) -> None:
    """``normalize_img_with_gauss(img, padding='replicate')`` of the padded image, on the rows of
    blocks only, written into ``dest[r, c, block_row, block_col]``."""
    alphas = [v for _, _, v in _gauss_taps()]  # row-major over the 7x7 kernel, fast_filter's order
    width = padded.shape[1] - 6
    eps = torch.finfo(torch.float64).eps
    height = n_rows * BLOCK
    step = min(height, max(BLOCK, _STRIP_ELEMENTS // width // BLOCK * BLOCK))
    mu_buf, s2_buf, tmp_buf = (torch.empty(step, width, dtype=torch.float64) for _ in range(3))
    win_buf, sq_buf = (torch.empty(step + 6, width + 6, dtype=torch.float64) for _ in range(2))
    used = n_cols * BLOCK
    taps: list = []
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        rows = r1 - r0
        window, squared = win_buf[: rows + 6], sq_buf[: rows + 6]
        if not taps or taps[0] != rows:  # the strip's 49 shifted views, made once per strip height
            taps = [rows, list(zip(alphas, _tap_views(window, rows, width), _tap_views(squared, rows, width)))]
        window.copy_(padded[r0 : r1 + 6])
        torch.mul(window, window, out=squared)  # integers < 2**16: exact, as pyiqa's img**2
        mu, s2, tmp = mu_buf[:rows].zero_(), s2_buf[:rows].zero_(), tmp_buf[:rows]
        # fast_filter's sum, tap after tap (add_ is a fused multiply-add at every position, so strips
        # of any height give its values)
        for v, a, b in taps[1]:
            mu.add_(a, alpha=v)
            s2.add_(b, alpha=v)
        sigma = s2.sub_(torch.mul(mu, mu, out=tmp)).abs_().add_(eps).sqrt_().add_(1)
        normalised = torch.sub(window[3 : 3 + rows, 3 : 3 + width], mu, out=mu).div_(sigma)
        strip = normalised[:, :used].view(rows // BLOCK, BLOCK, n_cols, BLOCK).permute(1, 3, 0, 2)
        dest[:, :, r0 // BLOCK : r1 // BLOCK].copy_(strip)


def _tap_views(window: torch.Tensor, rows: int, width: int) -> list[torch.Tensor]:
    """The 49 shifted [rows, width] views of ``window`` a 7x7 filter reads, row-major."""
    stride = window.stride(0)
    shifted = window.as_strided((7, 7, rows, width), (stride, 1, stride, 1))
    return [view for row in shifted.unbind(0) for view in row.unbind(0)]


def _welford(part: np.ndarray, order: list[int], out_m2: np.ndarray, work: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Sum of squared deviations by torch's CPU Welford recurrence over the pixels ``order`` of
    ``part[pixel, block]`` (in that order), for every block at once; into ``out_m2``."""
    mean, delta, tmp = work
    np.copyto(mean, part[order[0]])
    out_m2.fill(0.0)  # the first step adds delta * 0
    for k in range(1, len(order)):
        x = part[order[k]]
        np.subtract(x, mean, out=delta)
        np.divide(delta, float(k + 1), out=tmp)
        np.add(mean, tmp, out=mean)
        np.subtract(x, mean, out=tmp)
        np.multiply(delta, tmp, out=tmp)
        np.add(out_m2, tmp, out=out_m2)


def block_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """From normalised blocks ``x[pixel, block]`` (256 x N): the block variance and pyiqa's
    activity, noise and noticeable-distortion masks, each of length N."""
    n = x.shape[1]
    var = np.empty(n)
    noise = np.empty(n, dtype=bool)
    impaired = np.empty(n, dtype=bool)
    chunk = min(n, _CHUNK)
    work = tuple(np.empty(chunk) for _ in range(3))
    m2_centre, m2_surround = np.empty(chunk), np.empty(chunk)
    edge_shape = (len(_EDGES), BLOCK - WINDOW + 1, chunk)
    edge_work = tuple(np.empty(edge_shape) for _ in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        for c0 in range(0, n, chunk):
            c1 = min(n, c0 + chunk)
            k = c1 - c0
            part = x[:, c0:c1]
            w = tuple(a[:k] for a in work)
            m2 = var[c0:c1]
            _welford(part, _ALL, m2, w)
            np.divide(m2, float(BLOCK * BLOCK - 1), out=m2)  # torch.var(blocks, dim=[2, 3])
            _welford(part, _CENTRE, m2_centre[:k], w)
            _welford(part, _SURROUND, m2_surround[:k], w)
            # pyiqa's noise_criterion / cal_center_sur_dev
            sigma = np.sqrt(m2)
            centre = np.sqrt(m2_centre[:k] / float(len(_CENTRE) - 1))
            surround = np.sqrt(m2_surround[:k] / float(len(_SURROUND) - 1))
            ratio = np.nan_to_num(centre / surround)
            beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
            noise[c0:c1] = sigma > 2 * beta
            impaired[c0:c1] = _edges_impaired(part, tuple(a[..., :k] for a in edge_work))
    return var, var > ACTIVITY_THRESHOLD, noise, impaired


def _edges_impaired(part: np.ndarray, work) -> np.ndarray:
    """pyiqa's notice_dist_criterion: a block is impaired when the standard deviation of any
    6-pixel segment of its four edges is under the threshold. All 4 x 11 segments of a block at
    once: step k of the recurrence reads pixel k of every segment."""
    edges = part[np.concatenate(_EDGES)].reshape(len(_EDGES), BLOCK, -1)
    segments = BLOCK - WINDOW + 1
    m2, mean, delta, tmp = work
    np.copyto(mean, edges[:, 0:segments])
    m2.fill(0.0)
    for k in range(1, WINDOW):
        x = edges[:, k : k + segments]
        np.subtract(x, mean, out=delta)
        np.divide(delta, float(k + 1), out=tmp)
        np.add(mean, tmp, out=mean)
        np.subtract(x, mean, out=tmp)
        np.multiply(delta, tmp, out=tmp)
        np.add(m2, tmp, out=m2)
    std = np.sqrt(np.divide(m2, float(WINDOW - 1), out=m2), out=m2)
    return (std < IMPAIRED_THRESHOLD).any(axis=(0, 1))


def _pool(var, active, noise, impaired) -> torch.Tensor:
    """pyiqa's pooling, the same torch expressions on the same [B, N] layout (its float32 masks
    and its summation order included)."""
    whsa, wndc, wnc = active.float(), impaired.float(), noise.float()
    dist = (whsa * wndc * (1 - var) + whsa * wnc * var).sum(dim=1)
    return ((dist + 1) / (1 + active.sum(dim=1))) * 100


def install(net) -> None:
    """Route a pyiqa PIQE module's float64 CPU batches through :func:`piqe_scores` (same scores);
    any other batch still reaches pyiqa's ``forward``. Per instance, idempotent. On the fast path
    the module keeps no masks (``net.results`` is None): call pyiqa's ``piqe`` for those."""
    if getattr(net.forward, "fast_piqe", False):
        return
    pyiqa_forward = net.forward

    def forward(x):
        scores = piqe_scores(x)
        if scores is None:
            return pyiqa_forward(x)
        net.results = None
        return scores

    forward.fast_piqe = True
    net.forward = forward
