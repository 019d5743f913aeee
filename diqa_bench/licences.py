"""What is known of a component's licence, and how it is known.

Methods and datasets declare :class:`Licence` facts (:meth:`diqa_bench.methods.Method.licences`,
:meth:`diqa_bench.datasets.Dataset.licences`): one per component they depend on (the code that
computes a score, the weights or parameter files it loads, the images of a dataset), each with the
source of the knowledge: an installed distribution's metadata (read with ``importlib.metadata``,
never by importing the package), a file's notice, or nothing ("unknown", the default). diqa-bench
states these facts; it does not give legal advice: a fact marked ``commercial: unknown`` means
nobody has checked, not that it is allowed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"
# licence identifiers and notices that forbid commercial use
_NONCOMMERCIAL = ("noncommercial", "non-commercial", "by-nc", "cc-by-nc", "polyform-noncommercial")
# SPDX identifiers (or their common spellings) known to allow commercial use
_PERMISSIVE = ("mit", "apache", "bsd", "cc-by-4.0", "cc by 4.0", "cc0", "isc", "psf", "python software foundation", "zlib", "mpl")


@dataclass(frozen=True)
class Licence:
    """One component's licence facts. ``component``: "code", "weights" or "data"; ``what``: the
    component (a distribution and its version, a file, a data set); ``terms``: the licence as its
    source states it, or "unknown"; ``source``: where that was read ("distribution metadata: NAME",
    "file notice: PATH", or "unknown"); ``commercial``: "yes", "no" or "unknown"."""

    component: str
    what: str
    terms: str = UNKNOWN
    source: str = UNKNOWN
    commercial: str = ""

    def __post_init__(self) -> None:
        if not self.commercial:
            object.__setattr__(self, "commercial", commercial_use(self.terms))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        """``code: pyiqa 0.1.16 (PolyForm-Noncommercial-1.0.0; non-commercial)``."""
        note = {"no": "; non-commercial", "unknown": "; commercial use unknown"}.get(self.commercial, "")
        return f"{self.component}: {self.what} ({self.terms}{note})"


def commercial_use(terms: str) -> str:
    """"no" for a non-commercial licence, "yes" for a known permissive one, else "unknown"."""
    low = (terms or "").lower()
    if not low or low == UNKNOWN:
        return UNKNOWN
    if any(word in low for word in _NONCOMMERCIAL):
        return "no"
    if any(re.search(rf"\b{re.escape(word)}", low) for word in _PERMISSIVE):
        return "yes"
    return UNKNOWN


@functools.lru_cache(maxsize=None)
def from_distribution(component: str, distribution: str, what: str | None = None) -> Licence:
    """The licence an installed distribution declares in its metadata: ``License-Expression``,
    else a ``License ::`` classifier, else a ``License`` field that names one. Not installed, or
    nothing declared: "unknown", saying so."""
    from importlib import metadata

    try:
        md = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return Licence(component, what or distribution, UNKNOWN, f"{distribution} is not installed")
    label = what or f"{distribution} {md.get('Version', '')}".strip()
    source = f"distribution metadata: {distribution} {md.get('Version', '')}".strip()
    expression = (md.get("License-Expression") or "").strip()
    if expression:
        return Licence(component, label, expression, source)
    classifiers = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return Licence(component, label, "; ".join(classifiers), source)
    field = (md.get("License") or "").strip()
    if field and field.upper() != "UNKNOWN" and len(field) < 200:
        return Licence(component, label, field.splitlines()[0], source)
    return Licence(component, label, UNKNOWN, source + " (declares no licence)")


def from_notice(component: str, what: str, path: str | Path) -> Licence:
    """The licence a notice file states: its ``Licence:`` (or ``License:``) line, else its first
    line (a LICENSE file's title). A missing or unreadable file: "unknown"."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(errors="replace")[:8192].splitlines() if line.strip()]
    except OSError:
        return Licence(component, what, UNKNOWN, f"no notice found ({path} cannot be read)")
    terms = next((m.group(1).strip() for line in lines if (m := re.match(r"licen[cs]e\s*:\s*(.+)", line, re.I))), lines[0] if lines else UNKNOWN)
    return Licence(component, what, terms[:120], f"file notice: {path}")


def find_notice(folder: str | Path, levels: int = 3) -> Path | None:
    """A LICENSE* or NOTICE* file in ``folder`` or up to ``levels`` folders above it."""
    here = Path(folder).expanduser()
    for _ in range(levels + 1):
        if here.is_dir():
            found = sorted(p for p in here.iterdir() if p.is_file() and p.name.upper().startswith(("LICENSE", "LICENCE", "NOTICE")))
            if found:
                return found[0]
        if here.parent == here:
            break
        here = here.parent
    return None


def facts_of(cls, options: dict | None = None) -> list[dict[str, Any]]:
    """``cls.licences(options)`` as dicts (run.json); a failing declaration becomes one unknown fact."""
    try:
        return [f.as_dict() for f in cls.licences(options)]
    except Exception as exc:  # noqa: BLE001 - third-party code
        return [Licence("code", getattr(cls, "name", "?"), UNKNOWN, f"licences() failed: {type(exc).__name__}: {exc}").as_dict()]


def overall(facts: list[dict[str, Any]]) -> str:
    """Commercial use of something built from ``facts``: "no" if any says no, else "unknown" if
    any is unknown (or there are none), else "yes"."""
    uses = [f.get("commercial", UNKNOWN) for f in facts]
    return "no" if "no" in uses else UNKNOWN if not uses or UNKNOWN in uses else "yes"


def declared(cls, options: dict | None = None) -> str:
    """One line of a method's or dataset's licence facts; a plugin whose ``licences`` fails
    shows why instead (a listing never fails on it)."""
    try:
        facts = list(cls.licences(options))
    except Exception as exc:  # noqa: BLE001 - third-party code
        return f"cannot be read ({type(exc).__name__}: {exc})"
    return "; ".join(f.short() for f in facts) or UNKNOWN


def restricted(facts: list[Licence]) -> list[Licence]:
    """The facts a commercial service must look at: non-commercial or unknown."""
    return [f for f in facts if f.commercial != "yes"]
