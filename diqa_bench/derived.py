"""A cache of what a run derives from its scores: statistics, paired tables and figures.

A warm re-run scores nothing (every score is cached), yet recomputing 1,000 content-group
bootstrap replicates per cell, every paired comparison and every figure costs far more than the
run itself. Those results depend only on the stored scores, the config and the code that computes
them, so they are kept under ``<cache>/derived/<key>/`` with the key made of exactly that: the
per-image scores file, the cells' statuses, the config, and a hash of diqa-bench's own source
(a changed statistic invalidates every entry). Entries are written to a temp folder and renamed
into place, so an interrupted run never leaves half an entry; a damaged entry is simply recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

DONE = "DONE"


@lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of every Python file of the diqa_bench package: what computes the derived results."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key(*parts: Any) -> str:
    """A cache key of ``parts`` (texts are hashed as they are, anything else as JSON) and the code."""
    digest = hashlib.sha256(code_hash().encode())
    for part in parts:
        text = part if isinstance(part, str) else json.dumps(part, sort_keys=True, default=str)
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:24]


def entry(cache_dir: str | Path | None, kind: str, key_: str) -> Path | None:
    """The folder of one cached result (None without a cache)."""
    return Path(cache_dir) / "derived" / kind / key_ if cache_dir else None


def hit(folder: Path | None) -> bool:
    return folder is not None and (folder / DONE).is_file()


def store(folder: Path | None, files: dict[str, Path | str]) -> None:
    """Save ``files`` (name in the entry -> a file to copy, or text to write) as one entry. A cache
    that cannot be written only costs the next run the same computation."""
    if folder is None:
        return
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
        try:
            for name, source in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(source, Path):
                    shutil.copyfile(source, target)
                else:
                    target.write_text(source, encoding="utf-8")
            (tmp / DONE).write_text("")
            os.replace(tmp, folder)
        except OSError:
            pass  # another run stored the same entry first, or the disk is full: no harm
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass


def read_text(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8")
