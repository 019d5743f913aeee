"""Input policy: how an image of any size becomes network input without destroying quality cues.

No blur, colour, contrast or JPEG augmentation ever (they change the very thing being scored);
training only adds horizontal flips and random crop positions. Images arrive float [0, 1] RGB at
native resolution; ImageNet normalisation is applied here.

Three policies (option ``input_policy``):

- ``resize`` (default): the short side is resized (antialiased) to ``image_size / 0.875`` (256 for
  224) and a ``image_size`` square is cropped: centre crop for scoring, random crop for training.
  One view per image, cheap, keeps global cues (exposure, framing, colour cast); an image already
  256 px on its short side is not resampled (the default benchmark's 192 px images are upscaled).
- ``crops``: native resolution is kept up to a short side of ``max_short_side`` (larger images are
  downscaled to it, which bounds cost for phone photos), and the score is the average over a
  ``crop_grid`` x ``crop_grid`` grid of ``image_size`` crops covering the image (features are
  averaged in head mode, scores in finetune mode). Keeps fine cues (noise, slight blur) that
  resizing hides; training uses one random crop.
- ``native``: the whole image at its own resolution, one view (the backbone is fully convolutional
  and pools globally): nothing is resampled unless the short side exceeds ``max_short_side``
  (downscaled to it) or is below ``MIN_SIDE`` (upscaled to it). Keeps every pixel's evidence at
  the cost of one view; finetune training uses one random ``image_size`` crop (smaller images whole).

With ``resize`` and ``crops``, images smaller than ``image_size`` are upscaled so their short side
reaches ``image_size``.

Small images: every image gets a score, down to 1x1. One whose short side is below ``MIN_SIDE``
(64) is upscaled (bilinear, antialiased, aspect kept, each side at least 64) before the network
and before the hand-crafted features (:func:`at_least`). Why 64: the backbone's total stride is
32, so at 64 px its last stage still has 2x2 positions and every stage's spread (``features:
stages``) is defined; at 32 px or less it has one position, whose standard deviation is NaN, and
the hand-crafted statistics need a few pixels at half scale. Images at or above 64 px are not
touched, so the default benchmark's 192 px images score exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from diqa_cross_domain.backbones import IMAGENET_MEAN, IMAGENET_STD

CROP_PCT = 0.875
MIN_SIDE = 64  # twice the backbone's total stride: the last stage keeps 2x2 positions (see above)


def at_least(images: torch.Tensor, side: int = MIN_SIDE) -> torch.Tensor:
    """``images`` ([B, 3, H, W] in [0, 1]) upscaled so that neither side is below ``side``;
    unchanged (the same tensor) when both already reach it."""
    h, w = images.shape[-2:]
    if min(h, w) >= side:
        return images
    scale = side / min(h, w)
    size = (max(side, round(h * scale)), max(side, round(w * scale)))
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


@dataclass(frozen=True)
class InputPolicy:
    kind: str = "resize"
    image_size: int = 224
    crop_grid: int = 3
    max_short_side: int = 768

    def token(self) -> str:
        if self.kind == "resize":
            return f"resize{self.image_size}"
        if self.kind == "native":
            return f"native{self.max_short_side}"
        return f"crops{self.image_size}g{self.crop_grid}m{self.max_short_side}"

    @property
    def views_per_image(self) -> int:
        return self.crop_grid**2 if self.kind == "crops" else 1

    def _rescale(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        short = min(h, w)
        if self.kind == "resize":
            target = round(self.image_size / CROP_PCT)
        elif self.kind == "native":
            if short < MIN_SIDE:
                return at_least(images)
            target = min(short, self.max_short_side)
            if short == target:
                return images
            scale = target / short
            floor = min(MIN_SIDE, self.max_short_side)  # an explicit cap below 64 px wins
            size = (max(floor, round(h * scale)), max(floor, round(w * scale)))
            return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        else:
            target = min(max(short, self.image_size), self.max_short_side)
        if short == target:
            return images
        scale = target / short
        size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)

    def eval_views(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B * V, 3, S, S] normalised views (V = views_per_image, image-major)."""
        images = self._rescale(images)
        if self.kind == "native":
            return normalise(images)
        h, w = images.shape[-2:]
        s = self.image_size
        if self.kind == "resize":
            top, left = (h - s) // 2, (w - s) // 2
            return normalise(images[..., top : top + s, left : left + s])
        g = self.crop_grid
        tops = _grid(h - s, g)
        lefts = _grid(w - s, g)
        views = torch.stack([images[..., t : t + s, l : l + s] for t in tops for l in lefts], dim=1)
        return normalise(views.flatten(0, 1))

    def train_views(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 3, S, S]: one random crop per image, flipped horizontally half the time."""
        images = self._rescale(images)
        b, _, h, w = images.shape
        s = min(self.image_size, h, w) if self.kind == "native" else self.image_size
        tops = torch.randint(0, h - s + 1, (b,), generator=generator).tolist()
        lefts = torch.randint(0, w - s + 1, (b,), generator=generator).tolist()
        flips = torch.rand(b, generator=generator).lt(0.5).tolist()
        out = []
        for img, t, l, flip in zip(images, tops, lefts, flips):
            crop = img[:, t : t + s, l : l + s]
            out.append(crop.flip(-1) if flip else crop)
        return normalise(torch.stack(out))


def _grid(span: int, n: int) -> list[int]:
    """n evenly spaced offsets in [0, span] (repeats allowed when the image is barely larger)."""
    if n == 1:
        return [span // 2]
    return [round(k * span / (n - 1)) for k in range(n)]


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std
