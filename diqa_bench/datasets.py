"""The dataset contract and the checks every dataset's records go through.

A dataset plugin yields :class:`Record` objects: one image with its MOS and its content group (the
reference image, the patient: what must never straddle a train/test split). The host validates the
records (:func:`check_records`), splits them (:mod:`diqa_bench.splits`) and normalises MOS per
dataset for mixed-domain training (:func:`normalise_mos`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.errors import DataError
from diqa_bench.files import image_file_problem
from diqa_bench.licences import Licence, find_notice, from_notice


@dataclass(frozen=True)
class Record:
    """One image of a dataset."""

    id: str  # unique within the dataset
    path: str  # absolute path, or relative to the dataset's root
    mos: float
    group: str = ""  # content group: reference image / patient. Empty means the image is its own group.
    split: str | None = None  # "train" / "test" when the dataset fixes its split
    distortion: str | None = None  # e.g. "jpeg"
    level: int | None = None  # distortion level, 1 (mild) .. 5 (severe)
    std: float | None = None  # std of the raters' scores, when known
    attrs: dict[str, str] = field(default_factory=dict)  # metadata columns the user declared (body site, device...), as text

    @property
    def content_group(self) -> str:
        return self.group or self.id


@dataclass
class DatasetContext:
    """What the host gives a dataset when it loads: where generated data may be cached."""

    cache_dir: Path
    progress: bool = False


class Dataset:
    """Base class of every dataset type. Subclass it and register the subclass through the
    ``register_datasets`` hook.

    Class attributes: ``name`` (the ``dataset:`` key in configs), ``description``,
    ``options_schema`` (JSON-schema ``properties`` of accepted options; others are config errors),
    ``required_options``. Instance attributes, set in ``__init__`` or ``load``: ``mos_range``
    (low, high), ``lower_better`` (True for DMOS-style labels), ``pseudo_mos`` (True when labels
    come from an algorithm, not human raters: reports say so), ``synthetic`` (True for generated
    images), ``root`` (image paths are resolved
    against it and must not escape it). And :meth:`licences`: what is known of the data's licence
    (default: unknown).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_schema: ClassVar[dict[str, Any]] = {}
    required_options: ClassVar[list[str]] = []

    mos_range: tuple[float, float] = (0.0, 1.0)
    lower_better: bool = False
    pseudo_mos: bool = False
    synthetic: bool = False  # generated images (not photographs): reports say so
    root: Path | None = None

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    def check(self) -> list[str]:
        """Problems found without loading (missing root, missing metadata file): one line each,
        saying what is expected and where the data comes from. Used by ``diqa-bench validate``."""
        return []

    def load(self, ctx: DatasetContext) -> list[Record]:
        """Read (or generate) the records. Called lazily, once per run."""
        raise NotImplementedError

    @classmethod
    def licences(cls, options: dict[str, Any] | None = None) -> "list[Licence]":
        """What is known of the licence of this dataset's images and labels (``options``: a
        configuration's, e.g. its root folder), with the source: see :mod:`diqa_bench.licences`.
        Cheap, no loading. The default: the LICENSE or NOTICE file in the ``root`` option's folder
        (or up to three folders above it), else unknown."""
        root = (options or {}).get("root")
        notice = find_notice(root) if isinstance(root, str) and root else None
        if notice is not None:
            return [from_notice("data", f"dataset {cls.name} in {root}", notice)]
        return [Licence("data", f"dataset {cls.name}")]


REQUIRED_DATASET_ATTRS = ("name",)


@dataclass
class Skip:
    """A record left out of a run, and why. Skips are counted and listed in run.json and the
    leaderboard's protocol note: nothing is dropped silently."""

    dataset: str
    image: str
    reason: str


@dataclass
class CheckedRecords:
    records: list[Record]
    skips: list[Skip] = field(default_factory=list)


def check_records(records: list[Record], dataset: Dataset, label: str, policy: str = "error") -> CheckedRecords:
    """Validate records: path inside the root and present, MOS a number inside the declared range,
    unique ids. ``policy='error'`` raises :class:`DataError` on the first problem; ``'skip'`` leaves
    the record out and records why."""
    low, high = dataset.mos_range
    root = Path(dataset.root).resolve() if dataset.root is not None else None
    seen: set[str] = set()
    kept: list[Record] = []
    skips: list[Skip] = []

    for rec in records:
        problem = None
        path = Path(rec.path)
        if root is not None and not path.is_absolute():
            path = root / path
        mos = rec.mos
        if rec.id in seen:
            problem = "duplicate image id"
        elif mos is None or (isinstance(mos, float) and math.isnan(mos)):
            problem = "MOS is blank or NaN"
        elif not isinstance(mos, (int, float)):
            problem = f"MOS {mos!r} is not a number"
        elif not (low - 1e-9 <= mos <= high + 1e-9):
            problem = f"MOS {mos:g} is outside the declared range [{low:g}, {high:g}]"
        elif root is not None and not _inside(path.resolve(), root):
            problem = f"path escapes the dataset root {root}"
        else:
            problem = image_file_problem(path)
        seen.add(rec.id)
        if problem is None:
            kept.append(rec if str(path) == rec.path else _with_path(rec, str(path)))
            continue
        if policy == "error":
            raise DataError(f"dataset {label!r}, image {rec.id!r}: {problem}")
        skips.append(Skip(label, rec.id, problem))
    if not kept:
        raise DataError(f"dataset {label!r} has no usable images" + (f" ({len(skips)} skipped)" if skips else ""))
    return CheckedRecords(kept, skips)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _with_path(rec: Record, path: str) -> Record:
    from dataclasses import replace

    return replace(rec, path=path)


def normalise_mos(mos: list[float], dataset: Dataset, how: str = "range") -> list[float]:
    """Map one dataset's MOS to a common scale where higher is better.

    ``range``: min-max from the declared ``mos_range`` onto [0, 1]; ``zscore``: zero mean, unit
    variance within the dataset. DMOS-style (``lower_better``) labels are flipped. Raw MOS is never
    compared across datasets: use this for training targets only; evaluation uses the raw MOS.
    """
    return scale_mos(mos, dataset.mos_range, bool(dataset.lower_better), how).tolist()


def scale_mos(mos, mos_range: tuple[float, float] | None, lower_better: bool, how: str = "range"):
    """The arithmetic of :func:`normalise_mos` on bare values (numpy array out), for callers that
    hold a dataset's declared range and direction but not the :class:`Dataset` (stored runs)."""
    import numpy as np

    values = np.asarray(mos, dtype=float)
    if how == "range":
        if mos_range is None:
            raise ValueError("range MOS normalisation needs the dataset's mos_range")
        low, high = mos_range
        out = (values - low) / (high - low)
        return 1.0 - out if lower_better else out
    if how == "zscore":
        sd = values.std()
        out = (values - values.mean()) / (sd if sd > 0 else 1.0)
        return -out if lower_better else out
    raise ValueError(f"unknown MOS normalisation {how!r}: use 'range' or 'zscore'")
