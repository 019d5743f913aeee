"""Leakage-free train/test splits.

Every image of one content group (reference image, patient) lands on the same side. Splits are
a pure function of the group names, the ratio and the seed: each group gets a deterministic
pseudo-random position from a hash of (seed, group), so the split is identical on every machine,
whatever the order the records came in, and adding a group never moves another one.

A dataset may fix its own split instead (``Record.split``). Labels are read the way the IQA
databases write them: ``train`` / ``training`` / ``0``, ``val`` / ``validation`` / ``1``,
``test`` / ``testing`` / ``2`` (KonIQ-10k's codes). Validation images are neither trained on nor
tested on; ``unused`` marks images a split file leaves out. Under ``protocol: full`` every image
is a test image and there is no training side (zero-shot methods on whole databases).

Cross-validation (``splits: {folds: K}`` or ``leave-one-group-out``): each dataset's content
groups are dealt into K folds per repetition seed; fold f tests its groups and trains on the
others, so every image is tested exactly once per repetition. Units are keyed by
:func:`fold_key` (seed, fold); the scores of a repetition's folds are pooled into one cell per
repetition before any statistic is computed (:func:`diqa_bench.results.pool_folds`).
"""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path
from typing import Sequence, TypeVar

from diqa_bench.datasets import Record
from diqa_bench.errors import DataError

T = TypeVar("T")

PROTOCOLS = ("split", "full")
_LABELS = {
    "train": "train", "training": "train", "0": "train",
    "val": "val", "valid": "val", "validation": "val", "1": "val",
    "test": "test", "testing": "test", "2": "test",
    "unused": "unused", "": "unused",
}


def split_label(value: object) -> str | None:
    """The canonical label ('train', 'val', 'test', 'unused') of a split cell, or None when it is
    not a split label. Numbers written as floats by spreadsheets (``2.0``) count as their integer."""
    text = str(value if value is not None else "").strip().lower()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return _LABELS.get(text)


def check_split_labels(records: Sequence[Record], label: str) -> Counter:
    """Count the records per canonical split label; a label that is none of the known ones is a
    one-line :class:`DataError` (it would otherwise silently land on one side)."""
    counts: Counter = Counter()
    for r in records:
        if r.split is None:
            counts["unsplit"] += 1
            continue
        canon = split_label(r.split)
        if canon is None:
            raise DataError(f"dataset {label!r}, image {r.id!r}: split label {r.split!r} is not train/val/test (or 0/1/2, training/validation)")
        counts[canon] += 1
    return counts


def _group_rank(group: str, seed: int | str) -> str:
    return hashlib.sha256(f"{seed}\x00{group}".encode()).hexdigest()


def split_groups(groups: Sequence[str], test_ratio: float, seed: int) -> set[str]:
    """The set of groups that go to the test side: the ``round(test_ratio * n)`` groups with the
    smallest hash rank (at least one, and at least one left for training when there are two)."""
    unique = sorted(set(groups))
    if not 0.0 < test_ratio < 1.0:
        raise ValueError(f"test_ratio must be between 0 and 1, got {test_ratio}")
    n_test = round(test_ratio * len(unique))
    n_test = min(max(n_test, 1), max(len(unique) - 1, 1))
    ranked = sorted(unique, key=lambda g: _group_rank(g, seed))
    return set(ranked[:n_test])


def validation_groups(groups: Sequence[str], ratio: float, seed: int) -> set[str]:
    """The train-side groups held out as validation groups for one seed: ``round(ratio * n)`` of
    them (at least one), by a hash of (seed, group) salted apart from the test split's, so they are
    not simply the groups ranked next after the test groups. Fewer than two groups: none (one must
    remain to fit on)."""
    unique = sorted(set(groups))
    if ratio <= 0 or len(unique) < 2:
        return set()
    n_val = min(max(round(ratio * len(unique)), 1), len(unique) - 1)
    ranked = sorted(unique, key=lambda g: _group_rank(g, f"validation\x00{seed}"))
    return set(ranked[:n_val])


def split_records(
    records: Sequence[Record], test_ratio: float, seed: int, use_split_column: bool = True, protocol: str = "split"
) -> tuple[list[Record], list[Record]]:
    """(train, test) records. ``protocol='full'``: no train side, every record is a test record.
    When every record carries a ``split`` label and ``use_split_column`` is set, the dataset's own
    split is used (the seed then changes nothing): validation and unused images land on neither
    side. Otherwise the group-aware hashed split applies."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "full":
        return [], list(records)
    if use_split_column and records and all(r.split for r in records):
        labels = [split_label(r.split) for r in records]
        bad = next((r for r, lab in zip(records, labels) if lab is None), None)
        if bad is not None:
            raise DataError(f"image {bad.id!r}: split label {bad.split!r} is not train/val/test (or 0/1/2, training/validation)")
        train = [r for r, lab in zip(records, labels) if lab == "train"]
        test = [r for r, lab in zip(records, labels) if lab == "test"]
        return train, test
    test_groups = split_groups([r.content_group for r in records], test_ratio, seed)
    train = [r for r in records if r.content_group not in test_groups]
    test = [r for r in records if r.content_group in test_groups]
    return train, test


def split_items(items: Sequence[T], groups: Sequence[str], test_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Group-aware split of arbitrary items by position: (train positions, held-out positions).
    For methods that carve a validation set out of their training data. ``groups[i]`` is the
    content group of ``items[i]``: a length mismatch would silently mis-assign groups, so it fails."""
    if len(items) != len(groups):
        raise ValueError(f"split_items: {len(items)} items but {len(groups)} groups")
    held = split_groups(groups, test_ratio, seed)
    train = [i for i, g in enumerate(groups) if g not in held]
    out = [i for i, g in enumerate(groups) if g in held]
    return train, out


def group_kfold(groups: Sequence[str], k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """k group-aware folds (train positions, validation positions), deterministic for a seed."""
    unique = sorted(set(groups), key=lambda g: _group_rank(g, seed))
    k = max(2, min(k, len(unique)))
    fold_of = {g: i % k for i, g in enumerate(unique)}
    folds = []
    for f in range(k):
        val = [i for i, g in enumerate(groups) if fold_of[g] == f]
        train = [i for i, g in enumerate(groups) if fold_of[g] != f]
        folds.append((train, val))
    return folds


# -- cross-validation: folds of content groups, repeated over seeds ------------------------------
FOLD_KEY_BASE = 1000  # a fold's unit key: repetition seed * FOLD_KEY_BASE + fold
LEAVE_ONE_GROUP_OUT = "leave-one-group-out"


def fold_key(seed: int, fold: int) -> int:
    """The split key of one fold of one repetition (units, splits and fitted models are keyed by it)."""
    if not 0 <= fold < FOLD_KEY_BASE:
        raise ValueError(f"fold {fold} outside 0..{FOLD_KEY_BASE - 1}")
    return int(seed) * FOLD_KEY_BASE + int(fold)


def fold_of_key(key: int) -> tuple[int, int]:
    """(repetition seed, fold) of a split key made by :func:`fold_key`."""
    return int(key) // FOLD_KEY_BASE, int(key) % FOLD_KEY_BASE


def fold_count(folds, group_counts: Sequence[int]) -> int:
    """How many folds a run has: K, or for leave-one-group-out the largest number of content
    groups among its datasets (each dataset's groups then sit one per fold; a dataset with fewer
    groups leaves the last folds empty)."""
    if folds == LEAVE_ONE_GROUP_OUT:
        k = max(group_counts, default=0)
        if k >= FOLD_KEY_BASE:
            raise DataError(f"splits.folds: leave-one-group-out would make {k} folds (at most {FOLD_KEY_BASE - 1}); use K folds")
        return k
    return int(folds)


def fold_test_groups(groups: Sequence[str], k: int, seed: int, fold: int) -> set[str]:
    """The content groups tested in one fold of a group-aware K-fold split: the groups, ordered by
    the hash of (seed, group) (as :func:`split_groups` does), dealt round-robin into k folds, so
    every group is tested in exactly one fold per seed and the folds differ in size by at most one
    group."""
    ranked = sorted(set(groups), key=lambda g: _group_rank(g, seed))
    return {g for i, g in enumerate(ranked) if i % k == fold}


# -- pyiqa split files ----------------------------------------------------------------------------
class RefusedGlobal(pickle.UnpicklingError):
    """A split file asked for a class or function: refused, nothing was run."""


class DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so a split file can never run code: only what the
    pickle protocol encodes directly loads (dict, list, tuple, int, float, str, bytes, bool, None)."""

    def find_class(self, module: str, name: str):
        raise RefusedGlobal(f"refused to load {module}.{name}: a split file may hold only dicts, lists and numbers")


def read_split_file(path, split_index: object = 1) -> dict[str, list[int]]:
    """One split of a pyiqa split file (``{split_index: {'train': [...], 'val': [...], 'test': [...]}}``,
    row positions from 0), loaded without executing anything. Returns phase -> positions."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = DataOnlyUnpickler(fh).load()
    except RefusedGlobal as exc:
        raise DataError(f"split file {path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as exc:
        raise DataError(f"split file {path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"split file {path}: expected a dict of splits, found {type(data).__name__}")
    key = split_index
    if key not in data and isinstance(key, str) and key.isdigit() and int(key) in data:
        key = int(key)
    if key not in data:
        raise DataError(f"split file {path} has no split {split_index!r}; it has {', '.join(map(repr, sorted(data, key=str)))}")
    phases = data[key]
    if not isinstance(phases, dict):
        raise DataError(f"split file {path}: split {split_index!r} is a {type(phases).__name__}, expected a dict of train/val/test lists")
    out: dict[str, list[int]] = {}
    for phase, positions in phases.items():
        canon = split_label(phase)
        if canon not in ("train", "val", "test"):
            raise DataError(f"split file {path}: split {split_index!r} has phase {phase!r}; expected train, val, test")
        if not isinstance(positions, (list, tuple)) or not all(isinstance(p, int) and not isinstance(p, bool) for p in positions):
            raise DataError(f"split file {path}: split {split_index!r}, phase {phase!r} is not a list of row numbers")
        out[canon] = list(positions)
    return out


def labels_from_split_file(n: int, phases: dict[str, list[int]], where: str) -> list[str]:
    """Per-position labels for ``n`` rows from a split file's phases; rows it does not list are
    'unused'. A position out of range, or listed twice, is a DataError."""
    labels = ["unused"] * n
    for phase, positions in phases.items():
        for p in positions:
            if not 0 <= p < n:
                raise DataError(f"{where}: {phase} row {p} is outside the {n} rows of the meta-info file")
            if labels[p] != "unused":
                raise DataError(f"{where}: row {p} is listed in both {labels[p]} and {phase}")
            labels[p] = phase
    return labels
