"""Procedural synthetic skin images: Fitzpatrick I-VI tones, texture, skin lines, pores, hair and
pigmented lesions of varied shape. Pure numpy/scipy, deterministic for a numpy Generator.

These are synthetic stand-ins, not clinical photos: they give a skin-like domain (colour
statistics, fine texture, lesion edges) to a benchmark that must run with no data at all.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Approximate sRGB base colours of Fitzpatrick skin types I..VI.
FITZPATRICK = np.array(
    [[241, 214, 196], [228, 188, 160], [205, 160, 125], [170, 120, 85], [120, 80, 55], [75, 50, 35]], dtype=np.float64
) / 255.0
LESION_SHAPES = ("round", "oval", "irregular", "lobulated")


def _smooth_noise(rng, shape, sigma):
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def _lesion_mask(rng, h, w, shape_kind):
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    r0 = rng.uniform(0.06, 0.18) * min(h, w)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = np.arctan2(y - cy, x - cx)
    stretch = rng.uniform(1.3, 1.9) if shape_kind == "oval" else 1.0
    rot = rng.uniform(0, np.pi)
    dy, dx = y - cy, x - cx
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = -dx * np.sin(rot) + dy * np.cos(rot)
    dist = np.hypot(u / stretch, v)
    radius = np.full_like(theta, r0)
    if shape_kind == "irregular":
        for k in range(2, 7):
            radius *= 1 + rng.uniform(0.03, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    elif shape_kind == "lobulated":
        lobes = rng.integers(3, 6)
        radius *= 1 + 0.14 * np.cos(lobes * theta + rng.uniform(0, 2 * np.pi))
    edge = rng.uniform(0.8, 3.0)  # sharp vs. fuzzy border
    return np.clip((radius - dist) / edge + 0.5, 0, 1)


def hair_mask(rng, h, w, count):
    from skimage.draw import bezier_curve

    mask = np.zeros((h, w))
    for _ in range(count):
        start = rng.uniform(0, 1, 2)
        pts = np.stack([start, start + rng.uniform(-0.35, 0.35, 2), start + rng.uniform(-0.5, 0.5, 2)]) * [h, w]
        rr, cc = bezier_curve(*pts[0].astype(int), *pts[1].astype(int), *pts[2].astype(int), weight=1.0, shape=(h, w))
        mask[rr, cc] = 1.0
        if rng.random() < 0.5:  # some hairs are thicker
            mask[np.clip(rr + 1, 0, h - 1), cc] = 1.0
    return np.clip(ndimage.gaussian_filter(mask, 0.6) * 2.5, 0, 1)


def synthetic_skin(rng: np.random.Generator, size: int, skin_type: int) -> np.ndarray:
    """One synthetic skin image, float32 RGB [size, size, 3] in [0, 1]; skin_type in 1..6."""
    h = w = size
    tone = FITZPATRICK[skin_type - 1] * rng.uniform(0.95, 1.05, 3)
    img = np.ones((h, w, 3)) * tone

    # Uneven pigmentation and redness at low spatial frequency.
    img *= 1 + 0.04 * _smooth_noise(rng, (h, w), size / 10)[..., None]
    redness = np.clip(_smooth_noise(rng, (h, w), size / 14), 0, None)[..., None]
    img *= 1 + rng.uniform(0.0, 0.06) * redness * np.array([0.6, -0.6, -0.4])

    # Skin lines: two families of oriented, wobbling ridges; then fine grain.
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    lines = np.zeros((h, w))
    for _ in range(2):
        a = rng.uniform(0, np.pi)
        period = rng.uniform(7, 14)
        wobble = 4 * _smooth_noise(rng, (h, w), 8)
        phase = (x * np.cos(a) + y * np.sin(a) + wobble) * 2 * np.pi / period
        lines += np.clip(np.cos(phase), 0.85, 1) - 0.85
    img *= 1 - 0.35 * lines[..., None]
    img *= 1 + 0.025 * ndimage.gaussian_filter(rng.standard_normal((h, w)), 0.7)[..., None] * 2

    # Pores: small dark dots.
    pores = np.zeros((h, w))
    n_pores = int(rng.integers(150, 450) * (size / 256) ** 2)
    pores[rng.integers(0, h, n_pores), rng.integers(0, w, n_pores)] = 1
    pores = np.clip(ndimage.gaussian_filter(pores, 0.8) * 8, 0, 1)
    img *= 1 - 0.15 * pores[..., None]

    # Pigmented lesions: brown to near-black, with internal variegation.
    for _ in range(int(rng.integers(1, 4))):
        mask = _lesion_mask(rng, h, w, LESION_SHAPES[rng.integers(len(LESION_SHAPES))])
        darkness = rng.uniform(0.25, 0.65)
        colour = tone * np.array([darkness, darkness * 0.8, darkness * 0.7])
        if rng.random() < 0.25:  # blue-grey veil
            colour = colour * np.array([0.8, 0.9, 1.2])
        variegation = 1 + 0.25 * _smooth_noise(rng, (h, w), 3)[..., None]
        img = img * (1 - mask[..., None]) + np.clip(colour * variegation, 0, 1) * mask[..., None]

    # Hair: more on some sites than others; dark, slightly translucent.
    n_hair = int(rng.choice([0, 0, 2, 5, 10, 16]))
    if n_hair:
        hair = hair_mask(rng, h, w, n_hair)[..., None]
        img = img * (1 - 0.85 * hair) + np.array([0.08, 0.06, 0.05]) * 0.85 * hair

    # Uneven illumination and a gentle vignette, as in a handheld phone photo.
    gy, gx = rng.uniform(-1, 1, 2)
    shade = 1 + 0.06 * (gy * (y / h - 0.5) + gx * (x / w - 0.5))
    shade *= 1 - 0.12 * (((y / h - 0.5) ** 2 + (x / w - 0.5) ** 2) * 2)
    img *= shade[..., None]
    return np.clip(img, 0, 1).astype(np.float32)
