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
tests/test_fast_nss.py states and checks the tolerance.
"""

from __future__ import annotations

import numpy as np
import torch

from .fast_brisque import _shape_grid, imresize_half, luminance255, single_thread, supported as _brisque_supported
from .fast_piqe import _gauss_quarter

BLOCK = 96
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # pyiqa's compute_feature shifts (torch.roll)
_TILE_ELEMENTS = 16 * 1024
_TILE_COLS = 1024


def supported(img) -> bool:
    """Whether :func:`niqe_scores` takes this batch: what BRISQUE's fast path takes, at least one
    96x96 block."""
    return _brisque_supported(img) and min(img.shape[-2:]) >= BLOCK


def niqe_scores(img: torch.Tensor, mu_pris: np.ndarray, cov_pris: np.ndarray) -> torch.Tensor | None:
    """NIQE scores (shape [B], float64) of a CPU batch [B, 1 or 3, H, W] in [0, 1] (float32 or
    float64), with the pristine model's mean (36) and covariance (36 x 36) from pyiqa's parameter
    file. None when the batch is not one this function handles (see :func:`supported`)."""
    if not supported(img):
        return None
    mu = np.asarray(mu_pris, dtype=np.float64).ravel()
    cov = np.asarray(cov_pris, dtype=np.float64)
    scores = []
    for b in range(img.shape[0]):
        with single_thread():
            features = niqe_block_features(img[b])
        score = _distance(features, mu, cov)
        if score is None:
            return None  # pyiqa's own function, and its error, for such an image
        scores.append(score)
    return torch.tensor(scores, dtype=torch.float64)


def niqe_block_features(image: torch.Tensor) -> np.ndarray:
    """The 36 features of every block, [blocks, 36], row of blocks by row of blocks (pyiqa's
    blockproc orders them column first: only the rounding of their mean and covariance differs)."""
    luma = luminance255(image)
    if image.shape[0] == 1:
        luma.round_()  # pyiqa rounds after scaling (diff_round), grey images too
    rows, cols = luma.shape[0] // BLOCK, luma.shape[1] // BLOCK
    luma = luma[: rows * BLOCK, : cols * BLOCK].contiguous()
    first = _scale_features(luma, BLOCK)
    half = imresize_half(luma / 255.0).mul_(255.0)
    del luma
    return np.concatenate([first, _scale_features(half, BLOCK // 2)], axis=1)


def gauss_normalise_replicate(plane: torch.Tensor) -> torch.Tensor:
    """``normalize_img_with_gauss(plane, 7, 7/6, C=1, padding='replicate')`` of a float64 plane."""
    height, width = plane.shape
    padded = torch.nn.functional.pad(plane[None, None], (3, 3, 3, 3), mode="replicate")[0, 0]
    out = torch.empty_like(plane)
    quarter_t = _gauss_quarter().t().contiguous()
    eps = torch.finfo(torch.float64).eps
    cols = min(width, _TILE_COLS)
    rows = min(height, max(1, _TILE_ELEMENTS // cols))
    for r0 in range(0, height, rows):
        r = min(height, r0 + rows) - r0
        for c0 in range(0, width, cols):
            c = min(width, c0 + cols) - c0
            win = torch.empty(2, r + 6, c + 6, dtype=torch.float64)
            win[0].copy_(padded[r0 : r0 + r + 6, c0 : c0 + c + 6])
            torch.mul(win[0], win[0], out=win[1])
            pair = torch.empty(4, 2, r, c + 6, dtype=torch.float64)
            pair[0].copy_(win[:, 3 : 3 + r])
            for e in (1, 2, 3):
                torch.add(win[:, 3 - e : 3 - e + r], win[:, 3 + e : 3 + e + r], out=pair[e])
            cs = torch.matmul(quarter_t, pair.view(4, -1)).view(4, 2, r, c + 6)
            acc = torch.add(cs[1, ..., 2 : 2 + c], cs[1, ..., 4 : 4 + c])
            acc.add_(cs[0, ..., 3 : 3 + c])
            for d in (2, 3):
                acc.add_(cs[d, ..., 3 - d : 3 - d + c]).add_(cs[d, ..., 3 + d : 3 + d + c])
            mu, s2 = acc[0], acc[1]
            sigma = s2.sub_(mu * mu).abs_().add_(eps).sqrt_().add_(1)
            torch.sub(win[0, 3 : 3 + r, 3 : 3 + c], mu, out=out[r0 : r0 + r, c0 : c0 + c]).div_(sigma)
    return out


def _scale_features(plane: torch.Tensor, block: int) -> np.ndarray:
    """pyiqa's compute_feature of every ``block`` x ``block`` block of the normalised plane: [blocks, 18]."""
    norm = gauss_normalise_replicate(plane).numpy()
    n_rows, n_cols = norm.shape[0] // block, norm.shape[1] // block
    out = np.empty((n_rows * n_cols, 18))
    for i in range(n_rows):
        blocks = norm[i * block : (i + 1) * block].reshape(block, n_cols, block).transpose(1, 0, 2)  # [col, y, x]
        flat = blocks.reshape(n_cols, -1)
        alpha, beta_l, beta_r = _aggd(flat)
        feats = [alpha, (beta_l + beta_r) / 2]
        for dy, dx in SHIFTS:
            prod = blocks * np.roll(blocks, (dy, dx), axis=(1, 2))
            a, bl, br = _aggd(prod.reshape(n_cols, -1))
            ta = torch.from_numpy(a)
            mean = (br - bl) * (torch.lgamma(2 / ta) - torch.lgamma(1 / ta)).exp().numpy()
            feats.extend((a, mean, bl, br))
        out[i * n_cols : (i + 1) * n_cols] = np.stack(feats, axis=1)
    return out


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pyiqa's ``estimate_aggd_param`` of each row of ``x``: alpha, beta_l, beta_r."""
    gamma, _, r_gam = _shape_grid()
    n = x.shape[1]
    neg, pos = np.minimum(x, 0.0), np.maximum(x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(np.einsum("ij,ij->i", neg, neg) / np.count_nonzero(x < 0, axis=1))
        right_std = np.sqrt(np.einsum("ij,ij->i", pos, pos) / np.count_nonzero(x > 0, axis=1))
        gammahat = left_std / right_std
        rhat = (np.abs(x).sum(axis=1) / n) ** 2 / (np.einsum("ij,ij->i", x, x) / n)
        rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / (gammahat**2 + 1) ** 2
        alpha = gamma[np.abs(r_gam[None, :] - rhatnorm[:, None]).argmin(axis=1)]
        ta = torch.from_numpy(alpha)
        factor = (torch.lgamma(1 / ta) - torch.lgamma(3 / ta)).exp().sqrt().numpy()
    return alpha, left_std * factor, right_std * factor


def _distance(features: np.ndarray, mu_pris: np.ndarray, cov_pris: np.ndarray) -> float | None:
    """pyiqa's NIQE distance: NaN-free mean and covariance of the block features against the
    pristine model, through the pseudo-inverse of their mean covariance. None when no block row
    is free of NaNs (a flat image, say), where pyiqa's pseudo-inverse fails."""
    feats = torch.from_numpy(features)
    is_nan = torch.isnan(feats)
    mu = torch.where(is_nan, 0.0, feats).sum(0) / (~is_nan).sum(0).to(torch.float64)
    clean = feats[~is_nan.any(dim=1)]
    cov = torch.cov(clean.t(), correction=1 if clean.shape[0] > 1 else 0)
    if not bool(torch.isfinite(cov).all()):
        return None
    inv = torch.linalg.pinv((torch.from_numpy(cov_pris) + cov) / 2)
    diff = (torch.from_numpy(mu_pris) - mu)[None, :]
    return float(torch.sqrt((diff @ inv @ diff.t())[0, 0]))  # nan for a negative form, as pyiqa's
