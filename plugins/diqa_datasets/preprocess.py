"""Per-dataset preprocessing that pyiqa's dataset configs apply before scoring (SPAQ: resize to a
448-pixel short side), done once per image into the cache so every method sees the same pixels.

The resize follows torchvision's ``Resize(n)`` on a PIL image, which pyiqa's ``augment: resize``
uses: short side ``n``, long side ``int(n * long / short)``, PIL bilinear (antialiased). Copies are
PNG (lossless), so they add no compression of their own. EXIF orientation is applied first, as
diqa-bench's decoder does for the originals.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from diqa_bench.datasets import Record

METHOD = "resize short side (torchvision Resize semantics), PIL bilinear, EXIF orientation applied, saved as PNG"


def target_size(width: int, height: int, short: int) -> tuple[int, int]:
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _resize_one(job: tuple[str, str, int]) -> str | None:
    src, dst, short = job
    from PIL import Image, ImageOps

    try:
        with Image.open(src) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            out = img.resize(target_size(img.width, img.height, short), Image.BILINEAR)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{dst}.{os.getpid()}.tmp"
        out.save(tmp, format="PNG")
        os.replace(tmp, dst)  # atomic: a killed run never leaves a half-written copy behind
        return None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types; the image is then left to the checks
        return f"{src}: {type(exc).__name__}: {exc}"


def resize_records(records: list[Record], image_root: Path, cache: Path, short: int, processes: int | None = None) -> tuple[list[Record], Path, dict[str, Any]]:
    """Resized copies of the records' images under ``cache/<short>/`` (made once, reused after).
    Returns (records pointing at the copies, the copies' root, a description for run.json). An
    original that is missing or unreadable gets no copy, so the usual checks report it."""
    out_root = Path(cache) / str(short)
    jobs = []
    moved = []
    for r in records:
        rel = Path(r.path)
        dst = out_root / rel.with_suffix(rel.suffix + ".png")
        moved.append(replace(r, path=str(dst.relative_to(out_root))))
        src = Path(image_root) / rel
        if not dst.is_file() and src.is_file():
            jobs.append((str(src), str(dst), short))
    failures: list[str] = []
    if jobs:
        workers = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
        if workers == 1 or len(jobs) < 8:
            failures = [f for f in map(_resize_one, jobs) if f]
        else:
            with ProcessPoolExecutor(workers) as pool:
                failures = [f for f in pool.map(_resize_one, jobs, chunksize=16) if f]
    info = {"resize_short_side": short, "method": METHOD, "cache": str(out_root), "made_now": len(jobs) - len(failures), "failed": len(failures)}
    return moved, out_root, info
