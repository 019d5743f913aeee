"""Leakage-free train/test splits.

Every image of one content group (reference image, patient) lands on the same side. Splits are
a pure function of the group names, the ratio and the seed: each group gets a deterministic
pseudo-random position from a hash of (seed, group), so the split is identical on every machine,
whatever the order the records came in, and adding a group never moves another one.
"""

from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

from diqa_bench.datasets import Record

T = TypeVar("T")


def _group_rank(group: str, seed: int) -> str:
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


def split_records(records: Sequence[Record], test_ratio: float, seed: int, use_split_column: bool = True) -> tuple[list[Record], list[Record]]:
    """(train, test) records. When every record carries a ``split`` label and
    ``use_split_column`` is set, the dataset's own split is used (the seed then changes nothing)."""
    if use_split_column and records and all(r.split for r in records):
        train = [r for r in records if r.split.lower() in ("train", "training")]
        test = [r for r in records if r.split.lower() not in ("train", "training")]
        return train, test
    test_groups = split_groups([r.content_group for r in records], test_ratio, seed)
    train = [r for r in records if r.content_group not in test_groups]
    test = [r for r in records if r.content_group in test_groups]
    return train, test


def split_items(items: Sequence[T], groups: Sequence[str], test_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Group-aware split of arbitrary items by position: (train positions, held-out positions).
    For methods that carve a validation set out of their training data."""
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
