"""Teledermatology acquisition distortions at 5 levels (1 = mild, 5 = severe).

Each function takes a float32 RGB image in [0, 1] (H, W, 3), a level and a numpy Generator (for the
random parts: noise, blur direction, cast direction, glare position, where a bubble or a ruler lies)
and returns uint8 RGB: what is
written to disk and what the pseudo-MOS compares against the pristine image. Exposure, colour cast
and glare act in (approximately) linear light, as they do in a camera.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from .names import DISTORTION_NAMES

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


# -- acquisition artefacts of dermatology and dermoscopy photos --------------------------------------
# Sizes are fractions of the shorter side, so an artefact covers the same share of a 32 px and of a
# 1024 px image; strokes are at least one pixel wide. Every random draw is made up front and does not
# depend on the level, so that a level changes the severity of one and the same artefact (bubble 3
# at level 5 is bubble 3 at level 4, grown).


def _side(img) -> int:
    return min(img.shape[:2])


def _blend(img, mask, colour, opacity=1.0):
    a = np.clip(mask, 0, 1)[..., None] * opacity
    return img * (1 - a) + np.asarray(colour, np.float64) * a


def air_bubbles(img, level, rng):
    """Immersion-gel bubbles of contact dermoscopy: a lens that magnifies and softens what lies under
    it, a thin dark refractive rim and a bright specular crescent on one side."""
    h, w = img.shape[:2]
    side = _side(img)
    n_max = 8
    centres = rng.uniform(0.08, 0.92, (n_max, 2)) * [h, w]
    radii = rng.uniform(0.05, 0.1, n_max)
    aspect = rng.uniform(1.0, 1.35, n_max)
    tilt = rng.uniform(0, np.pi, n_max)
    light = rng.uniform(0, 2 * np.pi, n_max)
    count = [1, 2, 3, 5, 8][level - 1]
    grow = [1.0, 1.25, 1.5, 1.8, 2.1][level - 1]
    soft = ndimage.gaussian_filter(img, (0.6 + 0.15 * level, 0.6 + 0.15 * level, 0))
    out = img.astype(np.float64).copy()
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    for k in range(count):
        r = max(3.0, radii[k] * grow * side)
        cy, cx = centres[k]
        dy, dx = y - cy, x - cx
        u = dx * np.cos(tilt[k]) + dy * np.sin(tilt[k])
        v = -dx * np.sin(tilt[k]) + dy * np.cos(tilt[k])
        d = np.hypot(u / aspect[k], v) / r  # 1 on the rim
        inside = np.clip((1.0 - d) * r + 0.5, 0, 1)
        mag = 1.15 + 0.03 * level  # the bubble acts as a weak lens
        sy, sx = cy + dy / mag, cx + dx / mag
        lensed = np.stack([ndimage.map_coordinates(soft[..., c], [sy, sx], order=1, mode="nearest") for c in range(3)], -1)
        out = out * (1 - inside[..., None]) + (0.04 + 0.96 * lensed) * inside[..., None]
        rim_w = max(0.7, 0.06 * r)
        rim = np.exp(-(((d - 1.0) * r / rim_w) ** 2))
        out *= 1 - 0.55 * rim[..., None]
        theta = np.arctan2(v, u)
        crescent = np.clip(np.cos(theta - light[k]), 0, 1) ** 3 * np.exp(-(((d - 0.8) * r / max(0.8, 0.08 * r)) ** 2))
        out = _blend(out, crescent, (1.0, 1.0, 1.0), 0.85)
    return to_uint8(out)


def immersion_fluid(img, level, rng):
    """A film of immersion fluid or gel: milky low-contrast haze, smeared streaks along the wipe
    direction and uneven local brightness."""
    h, w = img.shape[:2]
    side = _side(img)
    haze_field = ndimage.gaussian_filter(rng.standard_normal((h, w)), side / 8, mode="wrap")
    haze_field = 0.6 + 0.4 * np.tanh(haze_field / (haze_field.std() + 1e-12))
    angle = rng.uniform(0, 180)
    streak = ndimage.gaussian_filter(rng.standard_normal((h, w)), (max(0.7, side / 120), max(2.0, side / 10)), mode="wrap")
    streak = ndimage.rotate(streak, angle, reshape=False, mode="wrap", order=1)
    streak = np.clip(streak / (streak.std() + 1e-12), 0, None)
    shade = ndimage.gaussian_filter(rng.standard_normal((h, w)), side / 6, mode="wrap")
    shade /= shade.std() + 1e-12
    haze = [0.08, 0.14, 0.21, 0.29, 0.38][level - 1]
    smear = [0.3, 0.45, 0.6, 0.75, 0.9][level - 1]
    sigma = (0.5 + 0.35 * level) * side / 192
    blurred = ndimage.gaussian_filter(img, (sigma, sigma, 0))
    s = np.clip(smear * streak, 0, 1)[..., None]
    out = img * (1 - s) + blurred * s
    veil = np.clip(img.mean(axis=(0, 1)) * 0.5 + 0.45, 0, 1)
    out = _blend(out, haze * haze_field, veil)
    out *= 1 + (0.03 + 0.03 * level) * shade[..., None]
    return to_uint8(out)


def ruler(img, level, rng):
    """A ruler or scale bar with millimetre ticks (and digits when there is room), light or dark,
    along an edge at low levels and further into the picture, or two of them, at high levels."""
    from PIL import ImageDraw, ImageFont

    h, w = img.shape[:2]
    side = _side(img)
    dark = rng.random() < 0.35
    body = np.array([0.12, 0.12, 0.13]) if dark else np.array(rng.choice([[0.93, 0.93, 0.9], [0.95, 0.88, 0.55], [0.88, 0.92, 0.95]]))
    ink = (0.95, 0.95, 0.95) if dark else (0.05, 0.05, 0.05)
    edges = rng.permutation(4)
    tilt = rng.uniform(-6, 6)
    width = max(6, round([0.08, 0.11, 0.14, 0.18, 0.22][level - 1] * side))
    inset = [0.0, 0.0, 0.04, 0.12, 0.22][level - 1] * side
    rulers = 2 if level == 5 else 1
    font = ImageFont.load_default()
    out = img.astype(np.float64)
    for k in range(rulers):
        length = 2 * max(h, w)
        strip = Image.new("RGB", (length, width), tuple(int(c * 255) for c in body))
        draw = ImageDraw.Draw(strip)
        step = max(2, round(side / 40))  # a "millimetre"
        for i, xpos in enumerate(range(0, length, step)):
            tick = 0.8 if i % 10 == 0 else 0.55 if i % 5 == 0 else 0.3
            draw.line([(xpos, 0), (xpos, round(tick * (width - 1)))], fill=tuple(int(c * 255) for c in ink), width=1)
            if i % 10 == 0 and width >= 20:
                draw.text((xpos + 1, round(0.55 * width)), str(i // 10), fill=tuple(int(c * 255) for c in ink), font=font)
        ruler_px = np.asarray(strip, np.float64) / 255.0
        edge = int(edges[k])
        # place the strip horizontally on a canvas, then turn it to the chosen edge
        canvas_h, canvas_w = (h, w) if edge in (0, 2) else (w, h)
        c_mask = np.zeros((canvas_h, canvas_w))
        c_layer = np.zeros((canvas_h, canvas_w, 3))
        top = int(round(inset))
        rows = slice(top, min(canvas_h, top + width))
        n_rows = rows.stop - rows.start
        offset = int(rng.integers(0, step * 10))
        c_layer[rows] = ruler_px[:n_rows, offset : offset + canvas_w]
        c_mask[rows] = 1.0
        c_mask = ndimage.rotate(c_mask, tilt, reshape=False, order=1, mode="constant")
        c_layer = np.stack([ndimage.rotate(c_layer[..., c], tilt, reshape=False, order=1, mode="nearest") for c in range(3)], -1)
        mask, layer = np.rot90(c_mask, edge), np.rot90(c_layer, edge)
        a = mask[..., None] * 0.95  # plastic lets a little through
        out = out * (1 - a) + layer * a
    return to_uint8(out)


_INKS = np.array([[0.42, 0.18, 0.55], [0.16, 0.22, 0.62], [0.08, 0.08, 0.1]])  # purple, blue, black


def ink_marking(img, level, rng):
    """Surgical-marker ink near the centre: dots, circles around the lesion, lines or crosses,
    purple, blue or black, slightly bled into the skin."""
    from PIL import ImageDraw

    h, w = img.shape[:2]
    side = _side(img)
    colour = _INKS[rng.integers(len(_INKS))]
    n_max = 6
    kinds = rng.integers(0, 3, n_max)  # 0 dot, 1 circle, 2 line
    centres = (0.5 + rng.uniform(-0.22, 0.22, (n_max, 2))) * [w, h]
    sizes = rng.uniform(0.08, 0.2, n_max) * side
    angles = rng.uniform(0, np.pi, n_max)
    count = [1, 2, 3, 4, 6][level - 1]
    stroke = max(1, round(side * (0.008 + 0.004 * level)))
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for k in range(count):
        cx, cy = centres[k]
        s = sizes[k] * (0.8 + 0.1 * level)
        if kinds[k] == 0:
            r = max(1.0, 0.12 * s + stroke)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        elif kinds[k] == 1:
            draw.ellipse([cx - s, cy - s * 0.85, cx + s, cy + s * 0.85], outline=255, width=stroke)
        else:
            dx, dy = s * np.cos(angles[k]), s * np.sin(angles[k])
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=stroke)
    mask = ndimage.gaussian_filter(np.asarray(canvas, np.float64) / 255.0, 0.6)
    return to_uint8(_blend(img, mask, colour, 0.9))


def hair_occlusion(img, level, rng):
    """Hairs across the image (dark, or light and grey on some sites), denser at higher levels;
    drawn as the synthetic skin draws its own hair."""
    from .skin import hair_mask

    h, w = img.shape[:2]
    light = rng.random() < 0.2
    colour = np.array([0.8, 0.76, 0.68]) if light else np.array([0.08, 0.06, 0.05])
    count = round([4, 8, 14, 22, 32][level - 1] * max(1.0, _side(img) / 256))
    hair = hair_mask(np.random.default_rng(rng.integers(2**63)), h, w, count)  # the same first hairs at every level
    if _side(img) >= 384:  # keep hairs a few pixels wide on large images
        hair = ndimage.grey_dilation(hair, size=(2, 2))
    return to_uint8(_blend(img, hair, colour, 0.85))


def partial_framing(img, level, rng):
    """The subject cut off: a band at one edge shows what lies outside it (clothing, a dark
    border, a finger holding the skin, a table edge). What is left of the subject stays where it
    was, so the label measures what was lost, not a shift."""
    h, w = img.shape[:2]
    side = _side(img)
    kind = int(rng.integers(4))  # 0 clothing, 1 dark border, 2 finger, 3 table edge
    edge = int(rng.integers(4))
    tilt = np.tan(np.radians(rng.uniform(-12, 12)))
    cloth = rng.uniform(0.15, 0.75, 3)
    wood = np.array([0.55, 0.42, 0.3]) * rng.uniform(0.8, 1.2)
    along = rng.uniform(0.3, 0.7)
    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.0, mode="wrap")
    cut = [0.1, 0.18, 0.27, 0.37, 0.5][level - 1]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    # distance into the picture from the chosen edge, in pixels, and position along that edge
    depth, pos, span = [(y, x / w, h), (x, y / h, w), (h - 1 - y, x / w, h), (w - 1 - x, y / h, w)][edge]
    if kind == 2:  # a fingertip: a rounded skin-coloured bar reaching in from the edge
        width = (0.18 + 0.25 * cut) * side
        reach = 2.2 * cut * span
        across = (pos - along) * (w if edge in (0, 2) else h)
        tip = np.hypot(across, np.clip(depth - (reach - width / 2), 0, None))
        mask = np.clip(width / 2 - tip + 0.5, 0, 1) * (depth < reach + width)
        skin = np.clip(np.median(img.reshape(-1, 3), axis=0) * rng.uniform(0.75, 0.95), 0, 1)
        shade = np.clip(1 - (across / (width / 2)) ** 2, 0, 1) ** 0.3
        fill = skin * (0.65 + 0.35 * shade)[..., None]
    else:
        boundary = cut * span + tilt * (pos - 0.5) * span
        mask = np.clip(boundary - depth + 0.5, 0, 1)
        if kind == 0:
            fill = cloth * (1 + 0.06 * texture)[..., None]
        elif kind == 1:
            fill = np.full((h, w, 3), 0.03) * (1 + 0.3 * texture)[..., None]
        else:
            grain = ndimage.gaussian_filter(rng.standard_normal((h, w)), (0.5, 6.0), mode="wrap")
            fill = wood * (1 + 0.12 * grain / (grain.std() + 1e-12))[..., None]
    return to_uint8(_blend(img, mask, np.clip(fill, 0, 1)))


# Scene artefacts come before the camera's own faults, as light meets them in that order.
_COMBINE_ORDER = (
    "air_bubbles", "immersion_fluid", "ruler", "ink_marking", "hair_occlusion", "partial_framing", "specular_glare",
    "colour_cast", "under_exposure", "over_exposure", "defocus_blur", "motion_blur", "low_resolution", "sensor_noise", "jpeg",
)


def combined(img, level, rng):
    """Two or three problems at once (real uploads mix them), drawn from every other distortion;
    each at this level. The draw does not depend on the level."""
    k = 2 + int(rng.random() < 0.5)
    picked = set(rng.choice(len(_COMBINE_ORDER), size=k, replace=False).tolist())
    seeds = rng.integers(0, 2**63, size=k)
    out = img
    for name, seed in zip([n for i, n in enumerate(_COMBINE_ORDER) if i in picked], seeds):
        out = DISTORTIONS[name](out, level, np.random.default_rng(seed)).astype(np.float32) / 255.0
    return to_uint8(out)


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
    "air_bubbles": air_bubbles,
    "immersion_fluid": immersion_fluid,
    "ruler": ruler,
    "ink_marking": ink_marking,
    "hair_occlusion": hair_occlusion,
    "partial_framing": partial_framing,
    "combined": combined,
}
assert tuple(DISTORTIONS) == DISTORTION_NAMES, "names.py must list the distortions in this order"
