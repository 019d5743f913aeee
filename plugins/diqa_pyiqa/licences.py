"""Licence facts of the pyiqa baselines: pyiqa's own (its installed metadata: 0.1.16 declares
PolyForm Noncommercial 1.0.0) and those of the parameter files they load, from the notice beside
the file (the weights folder's README.md table row naming it, or a ``<stem>*NOTICE*`` file).
Nothing here imports pyiqa: ``diqa-bench list`` shows these facts."""

from __future__ import annotations

import os
import re
from pathlib import Path

from diqa_bench.licences import UNKNOWN, Licence, from_distribution


def pyiqa_code() -> Licence:
    return from_distribution("code", "pyiqa")


def _weights_folder(weights: str | None) -> Path | None:
    if weights:
        path = Path(weights).expanduser()
        return path if path.is_dir() else path.parent
    folder = os.environ.get("DIQA_BENCH_WEIGHTS")
    return Path(folder).expanduser() if folder else None


def parameter_file(checkpoint: str, weights: str | None = None) -> Licence:
    """What the notice beside ``checkpoint`` says: the row of the folder's README.md table that
    names the file (its last column: source / licence), else unknown."""
    folder = _weights_folder(weights)
    readme = folder / "README.md" if folder else None
    if readme is not None and readme.is_file():
        try:
            text = readme.read_text(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and re.fullmatch(rf"`?{re.escape(checkpoint)}`?", cells[0]):
                return Licence("weights", checkpoint, cells[-1][:200], f"file notice: {readme}")
    return Licence("weights", checkpoint, UNKNOWN, "no notice found" + (f" in {folder}" if folder else " ($DIQA_BENCH_WEIGHTS not set)"))


def method_licences(checkpoint: str | None, options: dict | None = None) -> list[Licence]:
    facts = [pyiqa_code()]
    if checkpoint:
        facts.append(parameter_file(checkpoint, (options or {}).get("weights")))
    return facts
