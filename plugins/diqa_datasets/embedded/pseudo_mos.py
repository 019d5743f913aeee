"""Pseudo-MOS: full-reference metrics (distorted vs. pristine) that agree best with human judgement
among those cheap enough to run at generation time, on 1-5.

Which metrics, and why. Published SROCC with human ratings on KADID-10k (the full-reference IQA
results of Lin, Hosu and Saupe, "KADID-10k: A Large-scale Artificially Distorted IQA Database",
QoMEX 2019) and TID2013 (Ponomarenko et al. 2015; GMSD from the MS-GMSD paper, VSI from Ding et al.'s
2019 evaluation, MDSI from its own paper), as compiled in the benchmark table of PIQ's README
(photosynthesis-team/piq), which cites each source; read there, not re-measured here:

    metric     KADID-10k  TID2013
    PSNR         0.676*    0.687
    SSIM         0.718     0.637
    MS-SSIM      0.802     0.787
    FSIM         0.829     0.801
    GMSD         0.847     0.803
    FSIMc        0.854     0.851
    VSI          0.861     0.897
    MDSI         0.885     0.890
    (* PIQ's own run: the compiled column has no published PSNR value)

The labels used to average PSNR, SSIM and GMSD. PSNR and single-scale SSIM are the two that agree
least with people on both databases, so they are gone. What is left:

- **MS-SSIM** (Wang, Simoncelli, Bovik 2003): luma, 5 scales, the product form with the paper's
  exponents; as pyiqa's ``ms_ssim`` (Y of YIQ on 0-255, rounded; 11x11 Gaussian window, sigma 1.5,
  'valid'; 2x2 averaging between scales). An image too small for 5 scales of an 11 px window uses
  the scales that fit, with their exponents rescaled to sum to 1.
- **GMSD** (Xue, Zhang, Mou, Bovik 2014): deviation of the gradient-magnitude similarity map, as
  the paper's Matlab code and pyiqa's ``gmsd`` (2x2 averaging, Prewitt / 3 with zero padding,
  T = 170, sample standard deviation). Deviation pooling is what lets a local artefact (a ruler, a
  bubble, a cut-off edge) weigh more than its share of the pixels.
- **Chroma difference**: mean distance between the two images' chroma planes (I and Q of YIQ,
  0-255 units). It has no published agreement of its own; it is here because both luma metrics are
  blind to a colour cast, which a dermatologist is not, and because the colour-aware indices above
  (FSIMc, VSI, MDSI) score chroma with a ratio that collapses to 0 as soon as a near-neutral chroma
  channel changes sign (skin under a cool cast), which would turn a graded cast into a cliff.

VSI, FSIMc and MDSI agree better still. They are left for later: pyiqa has no MDSI to check an
implementation against, VSI needs a saliency model (SDSP) and FSIMc phase congruency (log-Gabor
filter banks), each much more code to verify, and their chroma terms have the flaw described above.

Each metric maps to a quality in [0, 1] through a FIXED transform (never a min-max over the
generated set, so a label does not change when more images are generated): MS-SSIM from
[MSSSIM_BAD, 1], GMSD from [GMSD_BAD, 0], chroma difference from [CHROMA_BAD, 0]. The two luma
qualities are averaged and multiplied by the chroma quality (as FSIMc multiplies its luma and chroma
terms), giving q, and pseudo-MOS = 1 + 4 q (the pristine image is 5). ``tests/test_artefacts.py``
checks MS-SSIM and GMSD against pyiqa's implementations (within 1e-4). No weights are downloaded and
no torch is needed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MSSSIM_BAD = 0.6  # MS-SSIM at or below this: quality 0
GMSD_BAD = 0.3
CHROMA_BAD = 60.0  # mean chroma distance (0-255 units) at or above this: quality 0

_MSSSIM_EXPONENTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
_WINDOW = 11
_GMSD_T = 170.0  # the paper's constant, for 0-255 images
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _yiq255(img: np.ndarray) -> np.ndarray:
    """[0, 1] RGB -> YIQ on 0-255, Y rounded (as pyiqa does for 0-255 metrics)."""
    yiq = (img @ _YIQ.T) * 255.0
    yiq[..., 0] = np.round(yiq[..., 0])
    return yiq


def _gauss_valid(a: np.ndarray) -> np.ndarray:
    x = np.arange(_WINDOW) - (_WINDOW - 1) / 2
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()
    r = _WINDOW // 2
    out = ndimage.correlate1d(ndimage.correlate1d(a, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return out[r:-r, r:-r]


def _ssim_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _gauss_valid(x), _gauss_valid(y)
    vx = _gauss_valid(x * x) - mx * mx
    vy = _gauss_valid(y * y) - my * my
    cxy = _gauss_valid(x * y) - mx * my
    cs = np.maximum((2 * cxy + c2) / (vx + vy + c2), 0)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return float((lum * cs).mean()), float(cs.mean())


def _halve(a: np.ndarray) -> np.ndarray:
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(ref: np.ndarray, img: np.ndarray) -> float:
    """MS-SSIM of two [0, 1] RGB images (luma)."""
    x, y = _yiq255(ref)[..., 0], _yiq255(img)[..., 0]
    scales = 1
    while scales < len(_MSSSIM_EXPONENTS) and min(x.shape) // 2**scales >= _WINDOW:
        scales += 1
    weights = _MSSSIM_EXPONENTS[:scales] / _MSSSIM_EXPONENTS[:scales].sum() if scales < 5 else _MSSSIM_EXPONENTS
    value = 1.0
    for k in range(scales):
        s, cs = _ssim_parts(x, y)
        value *= (s if k == scales - 1 else cs) ** weights[k]
        x, y = _halve(x), _halve(y)
    return float(value)


def gmsd(ref: np.ndarray, img: np.ndarray) -> float:
    """GMSD of two [0, 1] RGB images (luma; 0 = identical, larger = worse)."""
    dx = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0

    def magnitude(a):
        y = _halve(_yiq255(a)[..., 0])
        gx = ndimage.correlate(y, dx, mode="constant")
        gy = ndimage.correlate(y, dx.T, mode="constant")
        return np.sqrt(gx**2 + gy**2 + 1e-12)

    m1, m2 = magnitude(ref), magnitude(img)
    gms = (2 * m1 * m2 + _GMSD_T) / (m1**2 + m2**2 + _GMSD_T)
    return float(gms.std(ddof=1))


def chroma_difference(ref: np.ndarray, img: np.ndarray) -> float:
    """Mean distance of the two images' chroma (I, Q of YIQ, 0-255 units); 0 = identical."""
    a, b = (ref @ _YIQ[1:].T) * 255.0, (img @ _YIQ[1:].T) * 255.0
    return float(np.sqrt(((a - b) ** 2).sum(axis=-1)).mean())


def pseudo_mos(ref_u8: np.ndarray, img_u8: np.ndarray) -> tuple[float, dict[str, float]]:
    """(pseudo-MOS in [1, 5], the raw metric values)."""
    ref = ref_u8.astype(np.float64) / 255.0
    img = img_u8.astype(np.float64) / 255.0
    raw = {"ms_ssim": ms_ssim(ref, img), "gmsd": gmsd(ref, img), "chroma": chroma_difference(ref, img)}
    luma = 0.5 * np.clip((raw["ms_ssim"] - MSSSIM_BAD) / (1.0 - MSSSIM_BAD), 0, 1) + 0.5 * np.clip(1.0 - raw["gmsd"] / GMSD_BAD, 0, 1)
    chroma = np.clip(1.0 - raw["chroma"] / CHROMA_BAD, 0, 1)
    # a product: a strong colour cast alone takes the label down, however intact the structure is
    return float(1.0 + 4.0 * luma * chroma), raw
