"""NIQE scores in float64 on the CPU without importing pyiqa, equal to pyiqa's within rounding.

The steps of pyiqa's ``calculate_niqe`` / ``niqe`` (pyiqa/archs/niqe_arch.py, version 'original'),
per image, one row of blocks at a time:

- luminance: Y of YIQ times 255, rounded (a grey image: times 255, rounded), cropped to whole
  96x96 blocks;
- at each of two scales, the Gaussian normalisation with replicate padding, then per block (96 px,
  48 px at the second scale) pyiqa's ``compute_feature``: an AGGD fit of the block and of its
  products with four neighbours (``torch.roll`` inside the block: it wraps around);
- between the scales, ``imresize(img / 255, 0.5) * 255`` (float32 inside, as pyiqa's resize
  always is: :func:`diqa_pyiqa.fast_brisque.imresize_half`);
- the mean of the block features without NaNs, their covariance without the rows holding one,
  and the distance to the pristine model through the pseudo-inverse of the mean covariance.

At the first scale the pixels are integers, so the Gaussian filter's sums are exact (see
:mod:`diqa_pyiqa.fast_brisque`); everything else differs from pyiqa's by float64 rounding only.
tests/test_fast_nss.py states and checks the tolerance. numpy only, and the same pixels as
:mod:`diqa_pyiqa.fast_brisque` takes (decoded uint8 arrays, or tensors).
"""

from __future__ import annotations

import numpy as np

from diqa_bench.threads import single_thread, small_pages

from .fast_brisque import like_input, shape_grid, gauss_normalise, grid_lgamma, images_of, imresize_half, luminance255, supported as _brisque_supported

BLOCK = 96
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # pyiqa's compute_feature shifts (torch.roll)


def supported(img) -> bool:
    """Whether :func:`niqe_scores` takes this batch: what BRISQUE's fast path takes, at least one
    96x96 block."""
    if not _brisque_supported(img):
        return False
    return min(img.shape[1:3] if isinstance(img, np.ndarray) else img.shape[-2:]) >= BLOCK


def niqe_scores(img, mu_pris: np.ndarray, cov_pris: np.ndarray):
    """NIQE scores (shape [B], float64) of a batch (what :func:`diqa_pyiqa.fast_brisque.supported`
    takes: a CPU tensor [B, 1 or 3, H, W] in [0, 1], or the decoder's arrays [B, H, W, C]), with
    the pristine model's mean (36) and covariance (36 x 36) from pyiqa's parameter file. A tensor
    in, a tensor out. None when the batch is not one this function handles (see :func:`supported`)."""
    if not supported(img):
        return None
    mu = np.asarray(mu_pris, dtype=np.float64).ravel()
    cov = np.asarray(cov_pris, dtype=np.float64)
    scores = []
    for image in images_of(img):
        with single_thread(), small_pages():
            features = niqe_block_features(image)
        score = _distance(features, mu, cov)
        if score is None:
            return None  # pyiqa's own function, and its error, for such an image
        scores.append(score)
    return like_input(np.array(scores, dtype=np.float64), img)


def niqe_block_features(image) -> np.ndarray:
    """The 36 features of every block, [blocks, 36], row of blocks by row of blocks (pyiqa's
    blockproc orders them column first: only the rounding of their mean and covariance differs).
    ``image``: [H, W, C] array or [C, H, W] tensor (see :func:`diqa_pyiqa.fast_brisque.luminance255`)."""
    tensor = hasattr(image, "dim")
    height, width = image.shape[-2:] if tensor else image.shape[:2]
    rows, cols = height // BLOCK, width // BLOCK
    # cropped to whole blocks first (pyiqa crops the luminance: the same pixels), no copy of the crop
    crop = image[:, : rows * BLOCK, : cols * BLOCK] if tensor else image[: rows * BLOCK, : cols * BLOCK]
    luma = np.asarray(luminance255(crop))
    if (image.shape[0] if tensor else image.shape[2]) == 1:
        np.round(luma, out=luma)  # pyiqa rounds after scaling (diff_round), grey images too
    first = _scale_features(luma, BLOCK)
    luma /= 255.0
    half = imresize_half(luma)
    del luma
    half *= 255.0
    return np.concatenate([first, _scale_features(half, BLOCK // 2)], axis=1)


def _scale_features(plane: np.ndarray, block: int) -> np.ndarray:
    """pyiqa's compute_feature of every ``block`` x ``block`` block of the normalised plane: [blocks, 18]."""
    norm = gauss_normalise(plane, replicate=True)
    lg1, lg2, _ = grid_lgamma()
    n_rows, n_cols = norm.shape[0] // block, norm.shape[1] // block
    out = np.empty((n_rows * n_cols, 18))
    for i in range(n_rows):
        # [col, y, x], contiguous: each block's pixels in a row, as pyiqa's reductions read them
        blocks = np.ascontiguousarray(norm[i * block : (i + 1) * block].reshape(block, n_cols, block).transpose(1, 0, 2))
        _, alpha, beta_l, beta_r = _aggd(blocks.reshape(n_cols, -1))
        feats = [alpha, (beta_l + beta_r) / 2]
        for dy, dx in SHIFTS:
            prod = blocks * np.roll(blocks, (dy, dx), axis=(1, 2))
            index, a, bl, br = _aggd(prod.reshape(n_cols, -1))
            mean = (br - bl) * np.exp(lg2[index] - lg1[index])  # lgamma(2 / a) - lgamma(1 / a)
            feats.extend((a, mean, bl, br))
        out[i * n_cols : (i + 1) * n_cols] = np.stack(feats, axis=1)
    return out


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pyiqa's ``estimate_aggd_param`` of each row of ``x``: alpha (and its index in the grid),
    beta_l, beta_r."""
    gamma, _, r_gam = shape_grid()
    lg1, _, lg3 = grid_lgamma()
    n = x.shape[1]
    neg, pos = np.minimum(x, 0.0), np.maximum(x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # nonzero where x < 0 (x > 0): the same counts as pyiqa's comparisons, one pass fewer each
        left_std = np.sqrt(np.einsum("ij,ij->i", neg, neg) / np.count_nonzero(neg, axis=1))
        right_std = np.sqrt(np.einsum("ij,ij->i", pos, pos) / np.count_nonzero(pos, axis=1))
        gammahat = left_std / right_std
        rhat = (np.abs(x).sum(axis=1) / n) ** 2 / (np.einsum("ij,ij->i", x, x) / n)
        rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / (gammahat**2 + 1) ** 2
        index = nearest(r_gam, rhatnorm)
        factor = np.sqrt(np.exp(lg1[index] - lg3[index]))  # lgamma(1 / alpha) - lgamma(3 / alpha)
    return index, gamma[index], left_std * factor, right_std * factor


def nearest(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of ``values``, the index ``np.abs(table - v).argmin()`` gives (the first of two
    entries at the same distance; 0 for NaN or infinity, where every distance is NaN or infinite),
    by binary search in ``table`` when it increases strictly (pyiqa's AGGD ratio table does),
    instead of 9801 distances per block."""
    if not bool((np.diff(table) > 0).all()):
        return np.abs(table[None, :] - values[:, None]).argmin(axis=1)
    i = np.clip(np.searchsorted(table, values), 1, len(table) - 1)
    below, above = table[i - 1], table[i]
    with np.errstate(invalid="ignore"):
        index = np.where(np.abs(below - values) <= np.abs(above - values), i - 1, i)
        # beyond either end (NaN too) the distances may round alike: argmin's first, the slow way
        outside = ~((values >= table[0]) & (values <= table[-1]))
        if outside.any():
            index[outside] = np.abs(table[None, :] - values[outside, None]).argmin(axis=1)
    return index


def _distance(features: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float | None:
    """pyiqa's NIQE distance: NaN-free mean and covariance of the block features against the
    pristine model, through the pseudo-inverse of their mean covariance. None when no block row
    is free of NaNs (a flat image, say), where pyiqa's pseudo-inverse fails."""
    is_nan = np.isnan(features)
    with np.errstate(invalid="ignore"):  # a feature NaN in every block: NaN, as pyiqa's
        mu = np.where(is_nan, 0.0, features).sum(0) / (~is_nan).sum(0).astype(np.float64)
    clean = features[~is_nan.any(axis=1)]
    if clean.shape[0] == 0:
        return None
    cov = np.cov(clean.T, ddof=1 if clean.shape[0] > 1 else 0)
    if not bool(np.isfinite(cov).all()):
        return None
    inv = np.linalg.pinv((cov_pris + cov) / 2)
    diff = (mu_pris - mu)[None, :]
    with np.errstate(invalid="ignore"):
        return float(np.sqrt((diff @ inv @ diff.T)[0, 0]))  # nan for a negative form, as pyiqa's
