"""Pseudo-MOS: an ensemble of cheap full-reference metrics (distorted vs. pristine), on 1-5.

PSNR, SSIM (Wang et al. 2004, Gaussian window) and GMSD (gradient magnitude similarity deviation, Xue et al. 2014) each
map to a quality in [0, 1] through a FIXED transform (not a min-max over the generated set, so a
label does not change when more images are generated); their mean q gives pseudo-MOS = 1 + 4 q.
No weights are downloaded and no torch is needed: a few ms per 256x256 image (SSIM is computed
here in float32 with one Gaussian filter pass per moment; scikit-image's is several times slower).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PSNR_BAD, PSNR_GOOD = 15.0, 40.0
GMSD_BAD = 0.3
_GMSD_C = 170.0 / 255.0**2  # the paper's constant for [0, 1] images


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    mse = float(np.mean((ref - img) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """Mean SSIM over pixels and RGB channels; 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03."""
    x, y = ref.astype(np.float32), img.astype(np.float32)
    sigma = (1.5, 1.5, 0)  # spatial only: channels are independent

    def blur(a):
        return ndimage.gaussian_filter(a, sigma, truncate=3.5, mode="reflect")

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def gmsd(ref: np.ndarray, img: np.ndarray) -> float:
    def luma(a):
        y = a @ np.array([0.299, 0.587, 0.114])
        h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
        return y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # the paper's 2x downsampling

    def magnitude(y):
        return np.hypot(ndimage.prewitt(y, axis=0) / 3.0, ndimage.prewitt(y, axis=1) / 3.0)

    m1, m2 = magnitude(luma(ref)), magnitude(luma(img))
    gms = (2 * m1 * m2 + _GMSD_C) / (m1**2 + m2**2 + _GMSD_C)
    return float(gms.std())


def pseudo_mos(ref_u8: np.ndarray, img_u8: np.ndarray) -> tuple[float, dict[str, float]]:
    """(pseudo-MOS in [1, 5], the raw metric values)."""
    ref = ref_u8.astype(np.float64) / 255.0
    img = img_u8.astype(np.float64) / 255.0
    raw = {"psnr": psnr(ref, img), "ssim": ssim(ref, img), "gmsd": gmsd(ref, img)}
    q = [
        np.clip((min(raw["psnr"], 100.0) - PSNR_BAD) / (PSNR_GOOD - PSNR_BAD), 0, 1),
        np.clip(raw["ssim"], 0, 1),
        np.clip(1.0 - raw["gmsd"] / GMSD_BAD, 0, 1),
    ]
    return float(1.0 + 4.0 * np.mean(q)), raw
