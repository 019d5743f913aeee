"""Decoding image files into tensors, and batching them through a torch DataLoader.

Decoding rules (the same for every method, so scores never depend on who decoded):
EXIF orientation is applied; greyscale, palette and CMYK images become RGB; an alpha channel is
dropped; 16-bit images keep their precision (scaled by 1/65535). Truncated, corrupt, empty or
non-image files raise :class:`~diqa_bench.errors.DataError` with the path and the decoder's reason.

Limits, checked on the header before any pixel is decoded: an image over :func:`max_pixels`
(default 40 megapixels, over three times a 12 MP phone photo; config ``max_image_pixels``, ``score
--max-pixels`` or ``$DIQA_BENCH_MAX_PIXELS``) is bad input, as is anything PIL calls a decompression
bomb. A 140 KB PNG can claim 12000x12000 pixels, and a JPEG header 65000x65000: decoding either
would take gigabytes. Batches are cut by pixels as well as by count (:func:`batch_pixels`, default
16 images of 1024x768), so a batch of 16 full-size phone photos (2.3 GB as float32, many times that
in a metric's float64 intermediates) becomes 16 batches of one.

PIL decodes by default, on every device. ``decoder="nvjpeg"`` (``--decode gpu``) decodes colour
JPEGs on the GPU instead: faster, but not bit-identical to libjpeg (see :func:`resolve_decoder`).
"""

from __future__ import annotations

import io
import os
import random
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diqa_bench.batch import Batch
from diqa_bench.errors import DataError, UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
_EXIF_ORIENTATION = 0x0112
_ROTATES = {5, 6, 7, 8}  # orientations that swap width and height

MAX_PIXELS_ENV = "DIQA_BENCH_MAX_PIXELS"
BATCH_PIXELS_ENV = "DIQA_BENCH_BATCH_PIXELS"
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_BATCH_PIXELS = 16 * 1024 * 768

# Our own limit (below) replaces PIL's warning; PIL's hard error stays as a second line of defence.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise UserError(f"${name}={raw!r}: expected a number of pixels") from None
    if value < 1:
        raise UserError(f"${name}={raw!r}: expected a positive number of pixels")
    return value


def max_pixels() -> int:
    """Images with more pixels than this are bad input (skipped or an error, by ``bad_input``).
    Read from the environment, so DataLoader, process-pool and Ray workers inherit it."""
    return _env_int(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


def batch_pixels() -> int:
    """At most this many pixels per batch (at least one image): bounds the memory of a batch."""
    return _env_int(BATCH_PIXELS_ENV, DEFAULT_BATCH_PIXELS)


def set_image_limits(max_image_pixels: int | None = None, max_batch_pixels: int | None = None) -> None:
    """Set the limits for this process and every worker it starts from now on."""
    if max_image_pixels is not None:
        os.environ[MAX_PIXELS_ENV] = str(int(max_image_pixels))
    if max_batch_pixels is not None:
        os.environ[BATCH_PIXELS_ENV] = str(int(max_batch_pixels))


def _check_pixels(path, size: tuple[int, int]) -> None:
    w, h = size
    limit = max_pixels()
    if w * h > limit:
        raise DataError(f"{path}: {w}x{h} pixels ({w * h / 1e6:.0f} MP) exceed the limit of {limit / 1e6:g} MP (max_image_pixels)")


def _open(path):
    """``Image.open`` with the pixel limit checked on the header, before anything is decoded."""
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # PIL refuses 2x its own limit: never below ours
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused as a decompression bomb ({exc})") from None
    try:
        _check_pixels(path, img.size)
    except DataError:
        img.close()
        raise
    return img


def decode(path: str | Path) -> np.ndarray:
    """Read one image as float32 RGB, shape [H, W, 3], values in [0, 1]."""
    path = Path(path)
    try:
        with _open(path) as img:
            return pixels_of(img)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        raise DataError(f"{path}: not an image" + (" (0 bytes)" if size == 0 else "")) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode ({exc})") from None


def pixels_of(img: Image.Image) -> np.ndarray:
    """An opened PIL image as :func:`decode` returns it: EXIF orientation applied, float32 RGB in
    [0, 1] (the one conversion, for files and for images handed over in memory)."""
    img = ImageOps.exif_transpose(img)
    img.load()
    return _to_rgb_float(img)


def in_memory_pixels(obj: Any, what: str = "image") -> np.ndarray:
    """A PIL image or a numpy array (RGB, not OpenCV's BGR: [H, W], [H, W, 1|3|4]; uint8, uint16,
    or float in [0, 1]) as :func:`decode` gives a file of the same pixels, under the same pixel
    limit; anything else raises DataError naming ``what``."""
    if isinstance(obj, Image.Image):
        _check_pixels(what, obj.size)
        try:
            return pixels_of(obj)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{what}: cannot decode ({exc})") from None
    arr = np.asarray(obj)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[:, :, :3] if arr.shape[2] != 1 else arr[:, :, 0]  # an alpha channel is dropped, as decode() does
    elif arr.ndim != 2:
        arr = arr[:0]  # refused below
    if 0 in arr.shape:
        raise DataError(f"{what}: expected an image array [H, W] or [H, W, 1|3|4], got shape {list(np.shape(obj))}")
    _check_pixels(what, (arr.shape[1], arr.shape[0]))
    if arr.dtype == np.uint8:
        out = np.divide(arr, np.float32(255.0), dtype=np.float32)
    elif arr.dtype == np.uint16:
        out = np.divide(arr, np.float32(65535.0), dtype=np.float32)
    elif arr.dtype.kind == "f":
        out = arr.astype(np.float32)
        if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
            raise DataError(f"{what}: a float image must hold finite values in [0, 1]")
    else:
        raise DataError(f"{what}: unsupported pixel type {arr.dtype} (expected uint8, uint16 or float in [0, 1])")
    return np.ascontiguousarray(np.repeat(out[:, :, None], 3, axis=2) if out.ndim == 2 else out)


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
    return np.divide(np.asarray(img), np.float32(255.0), dtype=np.float32)  # one pass; the same float32 values as converting, then dividing


def probe_size(path: str | Path) -> tuple[int, int]:
    """(height, width) after EXIF rotation, read from the header only."""
    try:
        with _open(path) as img:
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
    """Expand files and folders (recursively, symlinked sub-folders included) into a sorted list of
    image files."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            # not only regular files: a FIFO or a link to a device named like an image is listed, to be skipped with its reason
            out.extend(sorted(q for q in _walk(p) if q.suffix.lower() in IMAGE_SUFFIXES and not q.is_dir()))
        elif p.exists():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


def _walk(root: Path) -> list[Path]:
    """Every file below ``root``, following symlinked folders (a photo library often links its
    albums in) but entering each real folder once, so a link back up cannot loop."""
    seen: set[str] = set()
    out: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in seen]
        out.extend(Path(folder) / f for f in files)
    return out


def check_pixel_limit(path: str | Path) -> None:
    """DataError when the image's header claims more pixels than :func:`max_pixels` (or PIL calls
    it a bomb). What else a header may say is left to decoding. For images whose score or features
    come from a cache: a limit lowered since they were scored applies to them too."""
    try:
        with _open(path):
            pass
    except DataError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: decoding reports it
        return


class _DecodeDataset:
    """torch Dataset: index -> (index, payload or None, error or None).

    The payload is a float tensor [3,H,W] in [0,1] (CPU device: decoded and resized here, in the
    worker), or, for a CUDA device, something cheaper to ship and finish on the GPU: a uint8 tensor
    [3,H,W] (a quarter of the bytes through the worker pipe) or, with ``raw_jpeg``, a :class:`_Jpeg`
    holding the file's bytes for nvJPEG."""

    def __init__(self, paths: Sequence[str], size: tuple[int, int] | None, finish_on_device: bool = False, raw_jpeg: bool = False) -> None:
        self.paths = list(paths)
        self.size = size
        self.finish_on_device = finish_on_device
        self.raw_jpeg = raw_jpeg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        if self.raw_jpeg:
            jpeg = _read_jpeg(self.paths[i])
            if jpeg is not None:
                return i, jpeg, None
        try:
            if self.finish_on_device:
                arr = decode_uint8(self.paths[i])
            else:
                arr = decode(self.paths[i])
        except DataError as exc:
            return i, None, str(exc)
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        if not self.finish_on_device:
            t = resize_pixels(t[None], self.size)[0]
        return i, t, None


def decode_uint8(path: str | Path) -> np.ndarray:
    """Like :func:`decode`, but 8-bit images stay uint8 [H, W, 3] (the caller divides by 255);
    16-bit and float images come back as :func:`decode` gives them."""
    path = Path(path)
    try:
        with _open(path) as img:
            if img.mode not in ("RGB", "L", "P", "PA", "RGBA", "LA", "CMYK", "YCbCr"):
                return decode(path)
            img = ImageOps.exif_transpose(img)
            img.load()
            if img.mode != "RGB":
                img = img.convert("RGBA").convert("RGB") if img.mode in ("P", "PA") else img.convert("RGB")
            return np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError, ValueError, DataError):
        return decode(path)  # the same one-line errors as decode()


def resize_pixels(t, size: tuple[int, int] | None):
    """[B,3,H,W] float in [0,1] -> resized to ``size`` (bilinear, antialiased), or unchanged."""
    import torch

    if size is None or tuple(t.shape[-2:]) == tuple(size):
        return t
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


# -- JPEG decoding on the GPU (nvJPEG, through torchvision) -----------------------------------------
@dataclass
class _Jpeg:
    """A JPEG's bytes (uint8 tensor) and its EXIF orientation, read in a worker for nvJPEG."""

    data: Any
    orientation: int


def _read_jpeg(path: str) -> _Jpeg | None:
    """The file's bytes when it is a colour (YCbCr) JPEG for nvJPEG; None for anything else (PNG,
    CMYK, greyscale, broken), which then takes the PIL path and, if broken, its one-line error."""
    import torch

    try:
        with Image.open(path) as img:  # header first: a bomb's bytes are never handed to nvJPEG
            if img.format != "JPEG" or img.mode != "RGB" or img.size[0] * img.size[1] > max_pixels():
                return None
        raw = Path(path).read_bytes()
        with Image.open(io.BytesIO(raw)) as img:
            try:
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            except Exception:  # a broken EXIF block is not a broken image
                orientation = 1
    except Exception:
        return None
    return _Jpeg(torch.frombuffer(bytearray(raw), dtype=torch.uint8), int(orientation) if orientation in range(1, 9) else 1)


def _orient(t, orientation: int):
    """Apply an EXIF orientation to a [C,H,W] tensor, as PIL's ``ImageOps.exif_transpose`` does."""
    import torch

    if orientation == 2:
        return t.flip(2)
    if orientation == 3:
        return t.flip(1, 2)
    if orientation == 4:
        return t.flip(1)
    if orientation == 5:
        return t.transpose(1, 2)
    if orientation == 6:
        return torch.rot90(t, -1, (1, 2))
    if orientation == 7:
        return t.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return torch.rot90(t, 1, (1, 2))
    return t


def _decode_jpegs(jpegs: list[_Jpeg], device: str) -> list:
    """Decode a batch with torchvision (nvJPEG on CUDA, libjpeg on CPU). Entries that fail come
    back as None (the caller decodes them with PIL, which gives the one-line reason)."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 marks its decoders deprecated
        try:
            out = decode_jpeg([j.data for j in jpegs], mode=ImageReadMode.RGB, device=device)
        except Exception:  # one bad file fails the whole batch: retry one by one
            out = []
            for j in jpegs:
                try:
                    out.append(decode_jpeg(j.data, mode=ImageReadMode.RGB, device=device))
                except Exception:
                    out.append(None)
    return [None if t is None else _orient(t, j.orientation) for t, j in zip(out, jpegs)]


_NVJPEG_OK: dict[str, bool] = {}


def nvjpeg_available(device: str) -> bool:
    """Whether torchvision can decode JPEGs on this CUDA device (checked once on a tiny image)."""
    if device not in _NVJPEG_OK:
        try:
            import torch

            buf = io.BytesIO()
            Image.new("RGB", (16, 8), (200, 30, 60)).save(buf, format="JPEG")
            img = _decode_jpegs([_Jpeg(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8), 1)], device)[0]
            _NVJPEG_OK[device] = img is not None and tuple(img.shape) == (3, 8, 16)
        except Exception:
            _NVJPEG_OK[device] = False
    return _NVJPEG_OK[device]


DECODE_CHOICES = ("auto", "cpu", "gpu")


def resolve_decoder(decode: str | None, device: str) -> str:
    """Which decoder a run uses: ``"pil"`` (the default everywhere) or ``"nvjpeg"`` (JPEGs decoded on
    the GPU; other files still by PIL). ``decode``: auto or cpu (PIL), gpu (nvJPEG; CUDA only).

    nvJPEG is faster but not bit-identical to libjpeg (it upsamples chroma differently): on an H200
    it moved PIQE scores by up to 4 points on a 0-100 scale, so it is opt-in, and scores, fits and
    features from it are cached apart from PIL's. Default runs score the same on every machine."""
    decode = decode or "auto"
    if decode not in DECODE_CHOICES:
        raise UserError(f"decode {decode!r}: choose one of {', '.join(DECODE_CHOICES)}")
    if decode != "gpu":
        return "pil"
    if not str(device).startswith("cuda"):
        raise UserError(f"--decode gpu needs a CUDA device; this run uses {device}")
    if not nvjpeg_available(str(device)):
        raise UserError("--decode gpu: this torchvision cannot decode JPEGs on the GPU (use --decode cpu)")
    return "nvjpeg"


def _collate(items):
    return items  # batches are stacked after errors are taken out


def per_batch(batch_size: int, size: tuple[int, int], pixel_budget: int | None = None) -> int:
    """Images of ``size`` per batch: ``batch_size``, fewer when they would exceed the pixel budget
    (never fewer than one)."""
    budget = batch_pixels() if pixel_budget is None else pixel_budget
    return max(1, min(batch_size, budget // max(1, size[0] * size[1])))


def prefetch_factor(workers: int, largest_batch_pixels: int) -> int:
    """Batches each DataLoader worker loads ahead: 4, fewer when that many batches of the largest
    size would hold more than four pixel budgets in memory (12 MP photos: one each)."""
    in_flight = max(1, workers) * max(1, largest_batch_pixels)
    return max(1, min(4, 4 * batch_pixels() // in_flight))


def size_buckets(order: Sequence[int], sizes: dict[int, tuple[int, int]], batch_size: int, pixel_budget: int | None = None) -> list[list[int]]:
    """Group positions by image size, keeping first-seen order, then cut into batches of at most
    ``batch_size`` images and (unless a single image is larger) ``pixel_budget`` pixels."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in order:
        groups[sizes[i]].append(i)
    out = []
    for size, g in groups.items():
        n = per_batch(batch_size, size, pixel_budget)
        out.extend(g[s : s + n] for s in range(0, len(g), n))
    return out


def iter_numpy_batches(paths: Sequence[str], keys: Sequence[str], positions: Sequence[int], *,
                       on_error: Callable[[int, str], None] | None = None):
    """:func:`iter_batches` for a method that takes numpy pixels (:meth:`Method.numpy_pixels`):
    one image per batch, decoded here by :func:`decode_uint8` ([1, H, W, 3], uint8, or float32 for
    16-bit files), at native size, without torch. Memory follows the one image being scored."""
    for pos in positions:
        try:
            arr = decode_uint8(paths[pos])
        except DataError as exc:
            if on_error is None:
                raise
            on_error(pos, str(exc))
            continue
        yield Batch(images=arr[None], keys=[keys[pos]], paths=[str(paths[pos])], indices=[pos])


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
    decoder: str = "pil",
    loader: str = "auto",
):
    """Yield :class:`~diqa_bench.methods.Batch` objects of same-size images on ``device``.

    ``positions`` index into ``paths``/``keys``; ``Batch.indices`` carries them back. Images that
    fail to decode are passed to ``on_error(position, message)`` (or raise when it is None).

    ``workers`` read and decode ahead of the method. ``loader``: "processes" (torch DataLoader
    worker processes; the default, except for nvJPEG) or "threads" (a persistent thread pool in
    this process: no start-up per cell and no pixels between processes, but Python work in the
    threads competes with the method's kernel launches for the GIL; the default for nvJPEG, whose
    threads only read bytes). On a CUDA device,
    uint8 pixels (or, with ``decoder="nvjpeg"``, the JPEG bytes, decoded in batches by nvJPEG on
    the GPU) go through pinned memory with non-blocking copies; conversion to float and resizing
    happen on the GPU. ``decoder="nvjpeg"`` on a CPU device uses torchvision's CPU JPEG decoder
    (tests use that).
    """
    import torch
    from torch.utils.data import DataLoader

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
        largest = max((len(b) * sizes[b[0]][0] * sizes[b[0]][1] for b in batches), default=0)
    else:
        n = per_batch(batch_size, size)
        batches = [positions[s : s + n] for s in range(0, len(positions), n)]
        largest = n * size[0] * size[1]
    if not batches:
        return

    on_cuda = str(device).startswith("cuda")
    raw_jpeg = decoder == "nvjpeg"
    finish_on_device = on_cuda or raw_jpeg
    dataset = _DecodeDataset(paths, size, finish_on_device=finish_on_device, raw_jpeg=raw_jpeg)
    if loader == "auto":  # measured on an H200 (benchmarks/PERF.md): processes win when PIL decodes,
        # threads when they only read bytes for nvJPEG
        loader = "threads" if raw_jpeg and on_cuda else "processes"
    if loader == "threads":
        loaded = _threaded(dataset, batches, max(1, workers))
    else:
        loaded = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=on_cuda,  # pinned in a background thread, so the copies below can be asynchronous
            persistent_workers=False,
            prefetch_factor=prefetch_factor(workers, largest) if workers > 0 else None,
        )
    for items in loaded:
        good_items = []
        jpegs = [(pos, payload) for pos, payload, err in items if isinstance(payload, _Jpeg)]
        if jpegs:
            decoded = _decode_jpegs([j for _, j in jpegs], str(device))
            for (pos, _), img in zip(jpegs, decoded):
                if img is None:  # nvJPEG refused it: PIL decodes it, or says why it cannot
                    try:
                        img = torch.from_numpy(np.ascontiguousarray(decode_uint8(paths[pos]))).permute(2, 0, 1)
                    except DataError as exc:
                        report(pos, str(exc))
                        continue
                good_items.append((pos, img))
        for pos, payload, err in items:
            if err is not None:
                report(pos, err)
            elif not isinstance(payload, _Jpeg):
                good_items.append((pos, payload))
        if not good_items:
            continue
        # Header and decoded sizes can disagree for odd files; split rather than fail the batch.
        by_shape: dict[tuple, list] = defaultdict(list)
        for pos, tensor in good_items:  # (16-bit files arrive as float, nvJPEG's on the GPU)
            by_shape[(tuple(tensor.shape), tensor.dtype, tensor.device.type)].append((pos, tensor))
        for group in by_shape.values():
            if finish_on_device:
                stacked = _to_device([t for _, t in group], device)
                stacked = stacked.float().div_(255) if stacked.dtype == torch.uint8 else stacked.float()
                stacked = resize_pixels(stacked, size)
            else:
                stacked = torch.stack([t for _, t in group])
                if str(device) != "cpu":
                    stacked = stacked.to(device)
            idx = [p for p, _ in group]
            yield Batch(images=stacked, keys=[keys[p] for p in idx], paths=[str(paths[p]) for p in idx], indices=idx)


_POOL: dict[int, Any] = {}


def _threaded(dataset: _DecodeDataset, batches: list[list[int]], threads: int, ahead: int = 4):
    """Yield each batch's decoded items, loading up to ``ahead`` batches in a thread pool that
    lives as long as the process (no start-up cost per cell)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOL.get(threads)
    if pool is None:
        pool = _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="diqa-decode")
    todo = iter(batches)
    pending: deque = deque()

    def submit() -> None:
        batch = next(todo, None)
        if batch is not None:
            pending.append([pool.submit(dataset.__getitem__, i) for i in batch])

    for _ in range(ahead):
        submit()
    try:
        while pending:
            futures = pending.popleft()
            submit()
            yield [f.result() for f in futures]
    finally:  # the caller stopped early: drop what is queued
        for futures in pending:
            for f in futures:
                f.cancel()


def _to_device(tensors: list, device: str):
    """Stack same-shape CPU tensors (or tensors already on ``device``) into one batch on ``device``:
    CPU ones through one pinned buffer and one asynchronous copy."""
    import torch

    first = tensors[0]  # a group shares one device, and pinning too
    if first.device.type != "cpu" or str(device) == "cpu" or first.is_pinned():
        return torch.stack([t.to(device, non_blocking=True) for t in tensors])
    pinned = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
    torch.stack(tensors, out=pinned)
    return pinned.to(device, non_blocking=True)


def training_loader(ctx, on_error=None):
    """The decoder of :class:`~diqa_bench.methods.TrainingData`: samples -> Batches on ctx.device.
    An undecodable training image raises DataError, or with ``on_error(sample, message)`` is
    reported there and left out (the scorer's skip policy)."""

    def load(samples, positions, batch_size, size, shuffle, seed, loader="auto"):
        report = None if on_error is None else (lambda pos, msg: on_error(samples[pos], msg))
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
            on_error=report,
            decoder=ctx.decoder,
            loader=loader,
        )

    return load
