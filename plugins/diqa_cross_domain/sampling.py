"""Which training images a step sees: domain-balanced draws and within-dataset pairs.

Head mode draws each batch position independently with its domain's share as probability
(:func:`balanced_draw`): balanced on average. Finetune mode gives each domain a fixed quota of every
step (:func:`domain_quotas`, :func:`stratified_draw`): its images are decoded in groups of one size,
and a step must stay balanced however the domains' image sizes split it."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np


def sample_probabilities(domains: Sequence[str], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Per-sample draw probabilities: each domain gets its weight's share of the draws (equal shares
    by default; a domain missing from ``weights`` gets weight 1), split evenly over its samples, so
    a large domain does not drown a small one."""
    weights = dict(weights or {})
    counts: dict[str, int] = defaultdict(int)
    for d in domains:
        counts[d] += 1
    domain_w = {d: float(weights.get(d, 1.0)) for d in counts}
    total = sum(domain_w.values())
    if total <= 0:
        raise ValueError(f"domain_weights give every training domain weight 0: {domain_w}")
    probs = np.array([domain_w[d] / total / counts[d] for d in domains], dtype=float)
    return probs / probs.sum()


def balanced_draw(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sample positions drawn with replacement according to ``probs``."""
    return rng.choice(len(probs), size=n, replace=True, p=probs)


def domain_quotas(domains: Sequence[str], weights: Mapping[str, float] | None, n: int) -> dict[str, int]:
    """How many of ``n`` batch positions each domain gets: its weight's share (as in
    :func:`sample_probabilities`), rounded by largest remainder so the counts add up to ``n``."""
    present = sorted(set(domains))
    w = {d: float((weights or {}).get(d, 1.0)) for d in present}
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"domain_weights give every training domain weight 0: {w}")
    exact = {d: n * w[d] / total for d in present}
    quotas = {d: math.floor(exact[d]) for d in present}
    by_remainder = sorted(present, key=lambda d: (quotas[d] - exact[d], d))
    for d in by_remainder[: n - sum(quotas.values())]:
        quotas[d] += 1
    return quotas


def stratified_draw(domains: Sequence[str], quotas: Mapping[str, int], rng: np.random.Generator) -> np.ndarray:
    """Sample positions for one batch holding exactly ``quotas[d]`` draws of each domain ``d``
    (with replacement, uniform within the domain), domain by domain."""
    domains = np.asarray(domains)
    parts = [rng.choice(np.flatnonzero(domains == d), size=k, replace=True) for d, k in sorted(quotas.items()) if k]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def within_dataset_pairs(datasets: Sequence, sample_ids: Sequence[int] | None = None) -> np.ndarray:
    """All pairs (a, b), a < b, of batch positions whose images come from the same dataset, as an
    int array [P, 2]. ``datasets`` holds names or integer codes. With ``sample_ids`` (the training sample behind each position; balanced
    draws repeat samples), a sample is never paired with itself."""
    _, codes = np.unique(np.asarray(datasets), return_inverse=True)
    same = codes[:, None] == codes[None, :]
    same &= np.triu(np.ones_like(same, dtype=bool), k=1)
    if sample_ids is not None:
        ids = np.asarray(sample_ids)
        same &= ids[:, None] != ids[None, :]
    return np.argwhere(same).astype(np.int64)


def validation_split(domains: Sequence[str], groups: Sequence[str], ratio: float, seed: int, min_groups: int) -> tuple[list[int], list[int]]:
    """(train positions, validation positions): ``ratio`` of each domain's content groups held out
    whole, domain by domain, so the validation set that picks the epoch holds every training domain
    (a split over the pooled groups can leave a small domain out of it entirely). A domain with
    fewer than ``min_groups`` groups is kept whole for training."""
    from diqa_bench.splits import split_items

    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(domains):
        by_domain[d].append(i)
    train: list[int] = []
    val: list[int] = []
    for d in sorted(by_domain):
        idx = by_domain[d]
        g = [groups[i] for i in idx]
        if ratio > 0 and len(set(g)) >= min_groups:
            tr, va = split_items(idx, g, ratio, seed)
            train += [idx[i] for i in tr]
            val += [idx[i] for i in va]
        else:
            train += idx
    return sorted(train), sorted(val)
