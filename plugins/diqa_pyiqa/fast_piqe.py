"""PIQE scores in float64 on the CPU, bit for bit pyiqa's, in a fraction of its time.

pyiqa's ``piqe`` (pyiqa/archs/piqe_arch.py) spends a float64 run on work the score does not need
and on torch's per-output reduction overhead: three full-resolution masks (``F.interpolate``),
block copies (``unfold().contiguous()``, two ``torch.cat`` for the centre/surround split), ten
``torch.std``/``torch.var`` calls (four over 6-pixel windows, ~175 ns per window) and the 7x7
Gaussian normalisation (98 passes over the image with :mod:`diqa_pyiqa.fast_filter`).
:func:`piqe_scores` computes the score alone, tile by tile in the CPU caches:

- luminance, rounding and padding with pyiqa's elementwise operations;
- the Gaussian filter as an exact sum: the rounded pixels are integers and the weights float32,
  so every product and partial sum is exact in float64 and any summation order gives
  fast_filter's values; the kernel's mirror symmetry turns 49 taps into ~12 passes;
- the normalised blocks gathered pixel-major, ``x[pixel, block]``, and every variance and standard
  deviation computed as torch's CPU kernel does, the sequential Welford recurrence
  (``delta = x - mean; mean += delta / k; m2 += delta * (x - mean)``, then ``m2 / (n - 1)``),
  vectorised across blocks instead of looping over them.

Batches: pyiqa's RGB->Y matmul of a batch rounds unlike a single image's unless the pixels are
float32 values (the runner's are); the ``float32_pixels`` hint says so, else batches take
pyiqa's conversion. Every rounding is pyiqa's, so the scores and the activity, noise and
noticeable-artefact block masks are identical (tests/test_fast_piqe.py compares them with
pyiqa's on photos, sample images, synthetic and odd-sized images, and batches). Timings:
benchmarks/PERF.md. A batch of a single block (small crops) gets
torch's own reductions on pyiqa's shapes (:func:`_lone_block_statistics`). Float32, other
devices, images with a non-positive or non-finite maximum or a minimum below minus the maximum,
and images under 8 pixels on a side (no block after pyiqa's padding) go to pyiqa's function.
The method (``zero_shot.Piqe``) builds pyiqa's model only for those, so a process scoring PIQE on
the CPU never imports pyiqa otherwise.

numpy inside. Tensors in (float64 [B, 1 or 3, H, W]): pyiqa's scores bit for bit, as above (the
square roots through torch's, which on an MKL build is not always correctly rounded). The
decoder's numpy pixels in ([B, H, W, C], uint8, or float in [0, 1]; see
:meth:`diqa_bench.methods.Method.numpy_pixels`): no torch in the process; numpy's square roots and
sums differ from torch's in the last bits, so the scores agree with pyiqa's to ~1e-15 relative and
the block masks are the same (tests/test_fast_piqe.py states and checks the tolerance).
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np

from .fast_gauss import gauss_quarter
from .fast_gauss import gaussian_kernel as _kernel

BLOCK = 16  # pyiqa's block_size
WINDOW = 6  # pyiqa's window_size: edge segments for the noticeable-distortion criterion
ACTIVITY_THRESHOLD = 0.1
IMPAIRED_THRESHOLD = 0.1
_STRIP_ELEMENTS = 48 * 1024  # pixels per luminance strip
_TILE_ELEMENTS = 32 * 1024  # pixels per filter tile
_CHUNK = 4096  # blocks per statistics chunk: its running arrays stay in L2

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
_YIQ_Y = np.array([0.299, 0.587, 0.114], dtype=np.float32).astype(np.float64)  # pyiqa's float32 constants, widened


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _gauss_quarter() -> np.ndarray | None:
    """:func:`diqa_pyiqa.fast_gauss.gauss_quarter`: pyiqa's 7x7 Gaussian by distance from the centre."""
    return gauss_quarter()


def gaussian_kernel(size: int, sigma: float):
    """MATLAB's ``fspecial('gaussian', size, sigma)`` as pyiqa computes it, shape [1, 1, size,
    size], float32 (a tensor: pyiqa's form; a test compares the bits)."""
    import torch

    return torch.from_numpy(_kernel(size, sigma)).repeat(1, 1, 1, 1)


def supported(img) -> bool:
    """Whether :func:`piqe_scores` takes this batch (else pyiqa's function does): a float64 CPU
    tensor [B, 1 or 3, H, W], or numpy pixels [B, H, W, 1 or 3] (uint8, or float in [0, 1])."""
    if _is_tensor(img):
        import torch

        return (img.dtype == torch.float64 and img.device.type == "cpu" and img.dim() == 4 and img.shape[1] in (1, 3) and img.shape[0] >= 1
                and min(img.shape[-2:]) >= BLOCK // 2 and not img.requires_grad)
    return (isinstance(img, np.ndarray) and img.ndim == 4 and img.shape[3] in (1, 3) and img.dtype in (np.uint8, np.float32, np.float64)
            and img.shape[0] >= 1 and min(img.shape[1:3]) >= BLOCK // 2)


class PiqeBlocks(NamedTuple):
    """PIQE of a batch: scores [B] and pyiqa's masks at block resolution, [B, block rows, block
    columns] (pyiqa's ``get_masks`` gives them upsampled to pixels). Tensors for a tensor batch,
    numpy arrays for numpy pixels."""

    scores: Any
    activity: Any
    noise: Any
    noticeable_artifacts: Any


def piqe_scores(img, float32_pixels: bool = False):
    """PIQE scores (shape [B], float64) of a float64 CPU batch [B, 1 or 3, H, W], equal to
    ``pyiqa.archs.piqe_arch.piqe(img)[0]`` with :mod:`diqa_pyiqa.fast_filter` installed.
    None when the batch is not one this function handles (see :func:`supported`).
    ``float32_pixels``: the caller vouches that every value is a float32 widened to float64 (as
    the runner's images are), which makes batches as fast as single images (see :func:`_luminance_into`)."""
    result = piqe_blocks(img, float32_pixels)
    return None if result is None else result.scores


def piqe_blocks(img, float32_pixels: bool = False) -> PiqeBlocks | None:
    """:func:`piqe_scores` with the block masks."""
    from diqa_bench.threads import single_thread, small_pages

    with single_thread(), small_pages():
        return _piqe_blocks(img, float32_pixels)


def _piqe_blocks(img, float32_pixels: bool) -> PiqeBlocks | None:
    if not supported(img) or gauss_quarter() is None:
        return None
    tensors = _is_tensor(img)
    if tensors:
        bsz, channels, height, width = img.shape
    else:
        bsz, height, width, channels = img.shape
    luma = None
    if tensors and channels == 1:
        luma = img
    elif tensors and bsz > 1 and not float32_pixels:
        # pyiqa's RGB->YIQ matmul of a batch of float64 pixels rounds differently from a single
        # image's (not always fused multiply-adds): only the same call gives the same values
        from pyiqa.utils.color_util import to_y_channel

        luma = to_y_channel(img, out_data_range=1, color_space="yiq")
    row_pad, col_pad = height % BLOCK, width % BLOCK  # pyiqa pads by the remainder (sic), not up to a multiple
    n_rows, n_cols = (height + row_pad) // BLOCK, (width + col_pad) // BLOCK
    n = n_rows * n_cols
    var, noise, impaired = np.empty(bsz * n), np.empty(bsz * n, dtype=bool), np.empty(bsz * n, dtype=bool)
    blocks = _BlockStore(min(bsz * n, max(_CHUNK, n_cols)), var, noise, impaired)
    for b in range(bsz):
        padded = np.empty((height + row_pad + 6, width + col_pad + 6))
        if tensors:
            peak, low = _luminance_into(img[b] if luma is None else luma[b], padded, height, width)
        else:
            peak, low = _luminance_from_pixels(img[b], padded, height, width)
        if not (np.isfinite(peak) and peak > 0 and low >= -peak):
            return None  # pyiqa's nan scores or its error; pixels rounding beyond +-255 break the exact filter
        _pad(padded, height, width, row_pad, col_pad)
        _normalise_blocks(padded, peak, n_rows, n_cols, blocks, tensors)
    if bsz * n == 1 and tensors:  # torch reduces a lone block's pixels in another order than block by block
        var[0], noise[0], impaired[0] = _lone_block_statistics(blocks.x[:, :, 0])
    else:
        blocks.flush()
    if not tensors:
        active = var.reshape(bsz, n) > ACTIVITY_THRESHOLD
        scores = _pool_numpy(var.reshape(bsz, n), active, noise.reshape(bsz, n), impaired.reshape(bsz, n))
        return PiqeBlocks(scores, *(m.reshape(bsz, n_rows, n_cols) for m in (active, noise, impaired)))
    import torch

    var_t, noise_t, impaired_t = (torch.from_numpy(a).view(bsz, n) for a in (var, noise, impaired))
    active_t = var_t > ACTIVITY_THRESHOLD
    return PiqeBlocks(_pool(var_t, active_t, noise_t, impaired_t), *(m.view(bsz, n_rows, n_cols) for m in (active_t, noise_t, impaired_t)))


def _luminance_into(image, padded: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """The image's Y channel (a tensor: RGB [3, H, W], or Y already [1, H, W]) into
    ``padded[3:3+height, 3:3+width]``, in strips; returns its maximum and minimum.

    pyiqa's ``to_y_channel(img, 1, 'yiq')`` is a matmul whose Y column, for one image, is r*w0 and
    then two fused multiply-adds, which addcmul computes (the weights are pyiqa's float32
    constants, widened). For a batch the matmul does not always fuse, but when the pixels are
    float32 values every product with a float32 weight is exact in float64 (24 + 24 bits), so
    fused or not, the sums (in the same order) round alike."""
    import torch

    w = torch.from_numpy(_YIQ_Y)
    target = torch.from_numpy(padded)
    step = max(1, _STRIP_ELEMENTS // width)
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        out = target[3 + r0 : 3 + r1, 3 : 3 + width]
        if image.shape[0] == 1:
            out.copy_(image[0, r0:r1])
        else:
            torch.mul(image[0, r0:r1], w[0], out=out)
            torch.addcmul(out, image[1, r0:r1], w[1], out=out)
            torch.addcmul(out, image[2, r0:r1], w[2], out=out)
    return _extremes(padded, height, width)


def _luminance_from_pixels(image: np.ndarray, padded: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """:func:`_luminance_into` for numpy pixels [H, W, 1 or 3]: uint8 ones are the decoder's
    ``pixel / 255`` in float32, float32 values, so every product with a float32 weight is exact
    and the sums round as pyiqa's (fused or not)."""
    step = max(1, _STRIP_ELEMENTS // width)
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        out = padded[3 + r0 : 3 + r1, 3 : 3 + width]
        rows = image[r0:r1]
        planes = [np.divide(rows[:, :, c], np.float32(255.0), dtype=np.float32) if rows.dtype == np.uint8 else rows[:, :, c]
                  for c in range(image.shape[2])]
        if len(planes) == 1:
            out[...] = planes[0]
        else:
            np.multiply(planes[0], _YIQ_Y[0], out=out)
            out += planes[1] * _YIQ_Y[1]
            out += planes[2] * _YIQ_Y[2]
    return _extremes(padded, height, width)


def _extremes(padded: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """Maximum and minimum of the luminance in ``padded``, a strip at a time over whole rows of the
    buffer (a contiguous reduction): the side columns get copies of the edge pixels for now
    (:func:`_pad` fills them for real later)."""
    step = max(1, _STRIP_ELEMENTS // width)
    highs, lows = [], []
    for r0 in range(0, height, step):
        rows = padded[3 + r0 : 3 + min(height, r0 + step)]
        rows[:, :3] = rows[:, 3:4]
        rows[:, 3 + width :] = rows[:, 2 + width : 3 + width]
        highs.append(rows.max())
        lows.append(rows.min())
    return float(np.max(highs)), float(np.min(lows))  # NaN when a pixel is


def _pad(padded: np.ndarray, h: int, w: int, row_pad: int, col_pad: int) -> None:
    """Around the image at ``padded[3:3+h, 3:3+w]``: pyiqa's symmetric padding by the remainder
    (``symm_pad``), then the Gaussian filter's 3-pixel replicate padding (``exact_padding_2d``)."""
    hp, wp = h + row_pad, w + col_pad
    if col_pad:
        padded[3 : 3 + h, 3 + w : 3 + wp] = padded[3 : 3 + h, 3 + w - col_pad : 3 + w][:, ::-1]
    if row_pad:
        padded[3 + h : 3 + hp, 3 : 3 + wp] = padded[3 + h - row_pad : 3 + h, 3 : 3 + wp][::-1]
    padded[3 : 3 + hp, :3] = padded[3 : 3 + hp, 3:4]
    padded[3 : 3 + hp, 3 + wp :] = padded[3 : 3 + hp, 2 + wp : 3 + wp]
    padded[:3] = padded[3:4]
    padded[3 + hp :] = padded[2 + hp : 3 + hp]


class _BlockStore:
    """Normalised blocks gathered pixel-major, ``x[pixel, block]``, up to ``capacity`` blocks (of
    one image or several: a batch of small images shares the per-call costs of the statistics),
    whose statistics go, in block order, into ``var``, ``noise`` and ``impaired``."""

    def __init__(self, capacity: int, var: np.ndarray, noise: np.ndarray, impaired: np.ndarray):
        self.x = np.empty((BLOCK, BLOCK, capacity))
        self.capacity, self.used, self.done = capacity, 0, 0
        self.outputs = (var, noise, impaired)

    def reserve(self, block_rows: int, n_cols: int) -> np.ndarray:
        """Room for the next ``block_rows`` rows of blocks: a [16, 16, block_rows, n_cols] view."""
        count = block_rows * n_cols
        if self.used + count > self.capacity:
            self.flush()
        view = self.x[:, :, self.used : self.used + count].reshape(BLOCK, BLOCK, block_rows, n_cols)  # a view
        self.used += count
        return view

    def flush(self) -> None:
        if self.used:
            x = self.x.reshape(BLOCK * BLOCK, self.capacity)[:, : self.used]
            block_statistics(x, *(a[self.done : self.done + self.used] for a in self.outputs))
            self.done += self.used
            self.used = 0


def _normalise_blocks(padded: np.ndarray, peak: float, n_rows: int, n_cols: int, store: _BlockStore, torch_sqrt: bool = False) -> None:
    """One image: pyiqa's rounding (``round(255 * img / max)``) and ``normalize_img_with_gauss(img,
    padding='replicate')`` of the padded luminance, on the blocks only, tile by tile, into the
    store a chunk of block rows at a time."""
    chunk = min(n_rows, store.capacity // n_cols)  # block rows per reservation
    tile_cols = min(n_cols, max(1, _TILE_ELEMENTS // (BLOCK * BLOCK))) * BLOCK
    tile_rows = min(chunk, max(1, _TILE_ELEMENTS // (BLOCK * tile_cols))) * BLOCK
    work = TileWork(tile_rows, tile_cols)
    for c0 in range(0, n_rows, chunk):
        c1 = min(n_rows, c0 + chunk)
        dest = store.reserve(c1 - c0, n_cols)
        for r0 in range(c0 * BLOCK, c1 * BLOCK, tile_rows):
            for q0 in range(0, n_cols * BLOCK, tile_cols):
                cols = min(n_cols * BLOCK, q0 + tile_cols) - q0
                rows = min(c1 * BLOCK, r0 + tile_rows) - r0
                normalised = work.normalise(padded[r0 : r0 + rows + 6, q0 : q0 + cols + 6], peak, torch_sqrt)
                tile = normalised.reshape(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK).transpose(1, 3, 0, 2)
                dest[:, :, r0 // BLOCK - c0 : (r0 + rows) // BLOCK - c0, q0 // BLOCK : (q0 + cols) // BLOCK] = tile


class TileWork:
    """Buffers for normalising tiles of up to ``rows`` x ``cols`` pixels (with their 3-pixel
    borders), reused from tile to tile so that they stay in the CPU caches."""

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        self.window = np.empty((2, rows + 6, cols + 6))  # the tile, rounded, and its square
        self.by_col: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.acc = np.empty((2, rows, cols))
        self.tmp = np.empty((rows, cols))

    def normalise(self, source, peak, torch_sqrt: bool = False):
        """``source``: the tile of the padded luminance, with its border. Returns the normalised
        tile, a view into the buffers. A tensor ``source`` (tests) gives a tensor, with torch's
        square root (``torch_sqrt``: torch's for numpy input too), pyiqa's to the last bit."""
        if _is_tensor(source):
            import torch

            return torch.from_numpy(self.normalise(source.numpy(), float(peak), True).copy())
        rows, cols = source.shape[0] - 6, source.shape[1] - 6
        if (rows, cols) not in self.by_col:
            self.by_col[rows, cols] = (np.empty((4, 2, rows, cols + 6)), np.empty((4, 2, rows, cols + 6)))
        pair, colsum = self.by_col[rows, cols]
        window = self.window[:, : rows + 6, : cols + 6]
        w0 = window[0]
        np.divide(source, peak, out=w0)
        w0 *= 255
        np.round(w0, out=w0)
        np.multiply(w0, w0, out=window[1])  # as pyiqa's img**2
        # The 7x7 Gaussian of both, exactly. The pixels are integers of at most 255 in magnitude
        # (squares: below 2**16) and the weights float32 no smaller than 2**-13 summing to ~1, so
        # every product is exact and every partial sum a multiple of 2**-36 below 2**16 in
        # magnitude, exact in float64 (53 bits): any order of summation gives the exact sum, which
        # is fast_filter's result too. The order here:
        # rows mirrored about the centre row added, weighted by a 4x4 matrix product (one row of
        # it per column distance), then columns mirrored about the centre column added.
        pair[0] = window[:, 3 : 3 + rows]
        for e in (1, 2, 3):
            np.add(window[:, 3 - e : 3 - e + rows], window[:, 3 + e : 3 + e + rows], out=pair[e])
        np.matmul(gauss_quarter().T, pair.reshape(4, -1), out=colsum.reshape(4, -1))
        acc = np.add(colsum[1, ..., 2 : 2 + cols], colsum[1, ..., 4 : 4 + cols], out=self.acc[:, :rows, :cols])
        acc += colsum[0, ..., 3 : 3 + cols]
        for d in (2, 3):
            acc += colsum[d, ..., 3 - d : 3 - d + cols]
            acc += colsum[d, ..., 3 + d : 3 + d + cols]
        mu, sigma, tmp = acc[0], acc[1], self.tmp[:rows, :cols]
        sigma -= np.multiply(mu, mu, out=tmp)
        np.abs(sigma, out=sigma)
        sigma += np.finfo(np.float64).eps
        if torch_sqrt:
            import torch

            torch.from_numpy(sigma).sqrt_()  # in place, in numpy's memory
        else:
            np.sqrt(sigma, out=sigma)
        sigma += 1
        np.subtract(w0[3 : 3 + rows, 3 : 3 + cols], mu, out=mu)
        mu /= sigma
        return mu


def _welford(part: np.ndarray, order: list[int], out_m2: np.ndarray, work: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Sum of squared deviations by torch's CPU Welford recurrence over the pixels ``order`` of
    ``part[pixel, block]`` (in that order), for every block at once; into ``out_m2``."""
    mean, delta, tmp = work
    np.copyto(mean, part[order[0]])
    out_m2.fill(0.0)  # the first step adds delta * 0
    for k in range(1, len(order)):
        _welford_step(part[order[k]], k, mean, out_m2, delta, tmp)


def _welford_step(x: np.ndarray, k: int, mean: np.ndarray, m2: np.ndarray, delta: np.ndarray, tmp: np.ndarray) -> None:
    """Step ``k`` (0-based) of torch's recurrence: ``delta = x - mean; mean += delta / (k + 1);
    m2 += delta * (x - mean)``, in place, with its rounding."""
    np.subtract(x, mean, out=delta)
    np.divide(delta, float(k + 1), out=tmp)
    np.add(mean, tmp, out=mean)
    np.subtract(x, mean, out=tmp)
    np.multiply(delta, tmp, out=tmp)
    np.add(m2, tmp, out=m2)


def block_statistics(x: np.ndarray, var: np.ndarray, noise: np.ndarray, impaired: np.ndarray) -> None:
    """From normalised blocks ``x[pixel, block]`` (256 x N): each block's variance (torch.var of
    its pixels) and pyiqa's noise and noticeable-distortion criteria, into the arrays of length N."""
    n = x.shape[1]
    work = tuple(np.empty(n) for _ in range(3))
    m2_centre, m2_surround = np.empty(n), np.empty(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        _welford(x, _ALL, var, work)
        np.divide(var, float(BLOCK * BLOCK - 1), out=var)
        _welford(x, _CENTRE, m2_centre, work)
        _welford(x, _SURROUND, m2_surround, work)
        # pyiqa's noise_criterion / cal_center_sur_dev
        sigma = np.sqrt(var)
        centre = np.sqrt(m2_centre / float(len(_CENTRE) - 1))
        surround = np.sqrt(m2_surround / float(len(_SURROUND) - 1))
        ratio = np.nan_to_num(centre / surround)
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
        np.greater(sigma, 2 * beta, out=noise)
    impaired[:] = _edges_impaired(x)


def _lone_block_statistics(block: np.ndarray) -> tuple[float, bool, bool]:
    """Variance, noise and noticeable-distortion criteria of the only block of a batch of tensors.
    torch reduces a single output's pixels in another order than it reduces each of several
    blocks', so these are the reductions pyiqa's code makes, on tensors of the same shapes and
    layouts (numpy pixels take the block-by-block recurrence: within the stated tolerance)."""
    import torch

    b = torch.from_numpy(np.ascontiguousarray(block)).view(1, 1, BLOCK, BLOCK)
    var = torch.var(b, dim=[2, 3], unbiased=True)
    centre = torch.stack((b[..., 7], b[..., 8]), dim=3)
    surround = b[..., [c for c in range(BLOCK) if c not in (7, 9)]]  # contiguous, as pyiqa's torch.cat makes it
    ratio = torch.nan_to_num(torch.std(centre, dim=[2, 3], unbiased=True) / torch.std(surround, dim=[2, 3], unbiased=True))
    sigma = torch.sqrt(var)
    beta = torch.abs(sigma - ratio) / torch.max(sigma, ratio)
    edges = (b[:, :, 0, :], b[:, :, :, BLOCK - 1], b[:, :, BLOCK - 1, :], b[:, :, :, 0])
    impaired = sum((torch.std(e.unfold(-1, WINDOW, 1), dim=-1, unbiased=True) < IMPAIRED_THRESHOLD).sum(dim=2) for e in edges) > 0
    return float(var), bool(sigma > 2 * beta), bool(impaired)


def _edges_impaired(x: np.ndarray) -> np.ndarray:
    """pyiqa's notice_dist_criterion: a block is impaired when the standard deviation of any
    6-pixel segment of its four edges is under the threshold. All 4 x 11 segments of a block at
    once: step k of the recurrence reads pixel k of every segment."""
    edges = x[np.concatenate(_EDGES)].reshape(len(_EDGES), BLOCK, -1)
    segments = BLOCK - WINDOW + 1
    m2, delta, tmp = (np.empty((len(_EDGES), segments, x.shape[1])) for _ in range(3))
    mean = edges[:, 0:segments].copy()
    m2.fill(0.0)
    for k in range(1, WINDOW):
        _welford_step(edges[:, k : k + segments], k, mean, m2, delta, tmp)
    std = np.sqrt(np.divide(m2, float(WINDOW - 1), out=m2), out=m2)
    return (std < IMPAIRED_THRESHOLD).any(axis=(0, 1))


def _pool_numpy(var: np.ndarray, active: np.ndarray, noise: np.ndarray, impaired: np.ndarray) -> np.ndarray:
    """:func:`_pool` in numpy (float32 masks; numpy's pairwise sum rounds unlike torch's)."""
    whsa, wndc, wnc = (m.astype(np.float32) for m in (active, impaired, noise))
    dist = (whsa * wndc * (1 - var) + whsa * wnc * var).sum(axis=1)
    return ((dist + 1) / (1 + active.sum(axis=1))) * 100


def _pool(var, active, noise, impaired):
    """pyiqa's pooling, the same torch expressions on the same [B, N] layout (its float32 masks
    and its summation order included)."""
    whsa, wndc, wnc = active.float(), impaired.float(), noise.float()
    dist = (whsa * wndc * (1 - var) + whsa * wnc * var).sum(dim=1)
    return ((dist + 1) / (1 + active.sum(dim=1))) * 100


def install(net) -> None:
    """Route a pyiqa PIQE module's float64 CPU batches through :func:`piqe_scores` (same scores);
    any other batch still reaches pyiqa's ``forward``. Per instance, idempotent. On the fast path
    the module keeps no masks (``net.results`` is None): call pyiqa's ``piqe`` for those.
    ``float32_pixels`` (a keyword pyiqa's InferenceModel passes on): see :func:`piqe_scores`."""
    if getattr(net.forward, "fast_piqe", False):
        return
    pyiqa_forward = net.forward

    def forward(x, float32_pixels: bool = False):
        scores = piqe_scores(x, float32_pixels)
        if scores is None:
            return pyiqa_forward(x)
        net.results = None
        return scores

    forward.fast_piqe = True
    net.forward = forward
