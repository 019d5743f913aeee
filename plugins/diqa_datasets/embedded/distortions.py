"""Teledermatology acquisition distortions at 5 levels (1 = mild, 5 = severe).

Each function takes a float32 RGB image in [0, 1] (H, W, 3), a level and a numpy Generator (for the
random parts: noise, blur direction, cast direction, glare position) and returns uint8 RGB: what is
written to disk and what the pseudo-MOS compares against the pristine image. Exposure, colour cast
and glare act in (approximately) linear light, as they do in a camera.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from .names import DISTORTION_NAMES, LEVELS
GAMMA = 2.2


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _linear(img: np.ndarray) -> np.ndarray:
    return np.power(np.clip(img, 0, 1), GAMMA)


def _display(lin: np.ndarray) -> np.ndarray:
    return np.power(np.clip(lin, 0, 1), 1.0 / GAMMA)


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    kernel = kernel / kernel.sum()
    return np.stack([ndimage.convolve(img[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)


def defocus_blur(img, level, rng):
    radius = [1.0, 2.0, 3.0, 4.5, 6.5][level - 1]
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    disk = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1)  # anti-aliased disk: the lens' circle of confusion
    return to_uint8(_convolve(img, disk))


def motion_blur(img, level, rng):
    length = [5, 9, 13, 19, 27][level - 1]
    angle = rng.uniform(0, np.pi)
    r = length // 2
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.float64)
    for t in np.linspace(-r, r, 4 * length):
        kernel[round(r + t * np.sin(angle)), round(r + t * np.cos(angle))] += 1
    return to_uint8(_convolve(img, kernel))


def sensor_noise(img, level, rng):
    # Shot noise grows with the signal, read noise does not; chroma noise is weaker than luma noise.
    sigma = [0.02, 0.04, 0.07, 0.11, 0.16][level - 1]
    std = sigma * np.sqrt(0.25 + 0.75 * img)
    luma = rng.standard_normal(img.shape[:2])[..., None]
    chroma = rng.standard_normal(img.shape)
    return to_uint8(img + std * (0.7 * luma + 0.5 * chroma))


def jpeg(img, level, rng):
    quality = [45, 28, 16, 9, 4][level - 1]
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


def under_exposure(img, level, rng):
    ev = [-0.7, -1.2, -1.8, -2.5, -3.3][level - 1]
    dark = _display(_linear(img) * 2.0**ev)
    # A dark capture also loses tonal resolution: quantise as an 8-bit sensor would before brightening.
    return to_uint8(np.round(dark * 255.0) / 255.0)


# Over-exposure never clips more than this share of the pixels: a camera's auto-exposure does not
# blow out the whole frame, and an all-white image has no texture left for NIQE-style metrics (their
# patch statistics are undefined there) nor for a grader to judge.
MAX_CLIPPED = 0.95


def over_exposure(img, level, rng):
    ev = [0.5, 0.9, 1.4, 2.0, 2.8][level - 1]
    lin = _linear(img)
    brightest = np.quantile(lin.max(axis=-1), 1.0 - MAX_CLIPPED)  # the darkest pixels that may clip
    gain = min(2.0**ev, 0.9 / brightest) if brightest > 0 else 2.0**ev
    return to_uint8(_display(lin * gain))


_CASTS = np.array([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [-0.5, 1.0, -0.5], [0.5, -1.0, 0.5]])  # warm, cool, green, magenta


def colour_cast(img, level, rng):
    strength = [0.1, 0.2, 0.32, 0.46, 0.62][level - 1]
    gains = 1.0 + strength * _CASTS[rng.integers(len(_CASTS))]
    return to_uint8(_display(_linear(img) * gains))


def low_resolution(img, level, rng):
    factor = [2, 3, 4, 6, 8][level - 1]
    h, w = img.shape[:2]
    small = Image.fromarray(to_uint8(img)).resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


def specular_glare(img, level, rng):
    # A broad sheen plus small sharp highlights (flash on moist or oily skin), added in linear light.
    amount = [0.25, 0.45, 0.7, 1.0, 1.4][level - 1]
    h, w = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    sy, sx = rng.uniform(0.12, 0.22) * h, rng.uniform(0.12, 0.22) * w
    glare = amount * np.exp(-(((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2) / 2)
    spots = np.zeros((h, w))
    n_spots = 6 * level
    spots[rng.integers(0, h, n_spots), rng.integers(0, w, n_spots)] = 1.0
    spots = ndimage.gaussian_filter(spots, 1.2 + 0.3 * level) * (2 * np.pi * (1.2 + 0.3 * level) ** 2)
    glare = glare + 1.5 * amount * np.clip(spots, 0, 1)
    return to_uint8(_display(_linear(img) + glare[..., None]))


DISTORTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "sensor_noise": sensor_noise,
    "jpeg": jpeg,
    "under_exposure": under_exposure,
    "over_exposure": over_exposure,
    "colour_cast": colour_cast,
    "low_resolution": low_resolution,
    "specular_glare": specular_glare,
}
assert tuple(DISTORTIONS) == DISTORTION_NAMES, "names.py must list the distortions in this order"
