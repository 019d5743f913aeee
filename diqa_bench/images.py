"""Decoding image files into tensors, and batching them through a torch DataLoader.

Decoding rules (the same for every method, so scores never depend on who decoded):
EXIF orientation is applied; greyscale, palette and CMYK images become RGB; an alpha channel is
dropped; 16-bit images keep their precision (scaled by 1/65535). Truncated, corrupt, empty or
non-image files raise :class:`~diqa_bench.errors.DataError` with the path and the decoder's reason.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diqa_bench.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
_EXIF_ORIENTATION = 0x0112
_ROTATES = {5, 6, 7, 8}  # orientations that swap width and height


def decode(path: str | Path) -> np.ndarray:
    """Read one image as float32 RGB, shape [H, W, 3], values in [0, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            return _to_rgb_float(img)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        raise DataError(f"{path}: not an image" + (" (0 bytes)" if size == 0 else "")) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode ({exc})") from None


def _to_rgb_float(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        return np.repeat((arr / top).astype(np.float32)[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, None)
        top = arr.max() if arr.max() > 1 else 1.0
        return np.repeat((arr / top)[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if mode in ("P", "PA") else img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0


def probe_size(path: str | Path) -> tuple[int, int]:
    """(height, width) after EXIF rotation, read from the header only."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            except Exception:  # a broken EXIF block is not a broken image
                orientation = 1
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read header ({exc})") from None
    return (w, h) if orientation in _ROTATES else (h, w)


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


class _DecodeDataset:
    """torch Dataset: index -> (index, float tensor [3,H,W] or None, error or None)."""

    def __init__(self, paths: Sequence[str], size: tuple[int, int] | None) -> None:
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        try:
            arr = decode(self.paths[i])
        except DataError as exc:
            return i, None, str(exc)
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        if self.size is not None and tuple(t.shape[1:]) != tuple(self.size):
            t = torch.nn.functional.interpolate(t[None], size=self.size, mode="bilinear", antialias=True, align_corners=False)[0]
            t = t.clamp_(0, 1)
        return i, t, None


def _collate(items):
    return items  # batches are stacked after errors are taken out


def size_buckets(order: Sequence[int], sizes: dict[int, tuple[int, int]], batch_size: int) -> list[list[int]]:
    """Group positions by image size, keeping first-seen order, then cut into batches."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in order:
        groups[sizes[i]].append(i)
    return [g[s : s + batch_size] for g in groups.values() for s in range(0, len(g), batch_size)]


def iter_batches(
    paths: Sequence[str],
    keys: Sequence[str],
    positions: Sequence[int],
    *,
    batch_size: int,
    device: str = "cpu",
    workers: int = 0,
    size: tuple[int, int] | None = None,
    shuffle: bool = False,
    seed: int = 0,
    on_error: Callable[[int, str], None] | None = None,
):
    """Yield :class:`~diqa_bench.methods.Batch` objects of same-size images on ``device``.

    ``positions`` index into ``paths``/``keys``; ``Batch.indices`` carries them back. Images that
    fail to decode are passed to ``on_error(position, message)`` (or raise when it is None).
    Worker processes decode; pinned memory and non-blocking copies feed a CUDA device.
    """
    import torch
    from torch.utils.data import DataLoader

    from diqa_bench.methods import Batch

    positions = list(positions)
    if shuffle:
        random.Random(seed).shuffle(positions)

    def report(pos: int, msg: str) -> None:
        if on_error is None:
            raise DataError(msg)
        on_error(pos, msg)

    if size is None:
        sizes: dict[int, tuple[int, int]] = {}
        for pos in positions:
            try:
                sizes[pos] = probe_size(paths[pos])
            except DataError as exc:
                report(pos, str(exc))
        good = [p for p in positions if p in sizes]
        batches = size_buckets(good, sizes, batch_size)
    else:
        batches = [positions[s : s + batch_size] for s in range(0, len(positions), batch_size)]
    if not batches:
        return

    on_cuda = str(device).startswith("cuda")
    loader = DataLoader(
        _DecodeDataset(paths, size),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=False,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    for items in loader:
        good_items = []
        for pos, tensor, err in items:
            if err is not None:
                report(pos, err)
            else:
                good_items.append((pos, tensor))
        if not good_items:
            continue
        # Header and decoded sizes can disagree for odd files; split rather than fail the batch.
        by_shape: dict[tuple, list] = defaultdict(list)
        for pos, tensor in good_items:
            by_shape[tuple(tensor.shape)].append((pos, tensor))
        for group in by_shape.values():
            stacked = torch.stack([t for _, t in group])
            if on_cuda:
                stacked = stacked.pin_memory().to(device, non_blocking=True)
            elif str(device) != "cpu":
                stacked = stacked.to(device)
            idx = [p for p, _ in group]
            yield Batch(images=stacked, keys=[keys[p] for p in idx], paths=[str(paths[p]) for p in idx], indices=idx)


def training_loader(ctx):
    """The decoder :class:`~diqa_bench.methods.TrainingData` uses: samples -> Batches on ctx.device.
    Undecodable training images raise DataError (they were checked before training started)."""

    def load(samples, positions, batch_size, size, shuffle, seed):
        return iter_batches(
            [s.path for s in samples],
            [s.key for s in samples],
            positions,
            batch_size=batch_size or ctx.batch_size,
            device=ctx.device,
            workers=ctx.workers,
            size=size,
            shuffle=shuffle,
            seed=seed,
        )

    return load
