"""Paired preference (2AFC) evaluation: datasets of image pairs where one image is known to be
better, and the pair-accuracy statistic.

A pair dataset yields one :class:`~diqa_bench.datasets.Record` per distinct image (so each method
scores each image once, through the normal scoring path and score cache) and keeps the pair list
in ``dataset.pairs``. Such data carries no MOS: it is evaluation-only. The config refuses a pair
domain in ``train_sets``; the plan (:mod:`diqa_bench.plan`) puts every image of a pair dataset on the test side for every
split seed, so no trainable method sees one for fitting or model selection.

Statistic, per cell: ``PAIR_ACC``, the share of pairs whose direction-aligned scores prefer the
``better`` image (a tie counts half; a lower-is-better method's scores are negated, never
``abs()``). A pair with an image the method has no score for (skipped: too small, NaN) counts as a
tie too: every row is then over the same pairs, and a method that cannot judge a pair gets
chance credit for it, never more; ``unscored`` (run.json ``pair_cells``, the table) says how many
pairs that was. With a percentile bootstrap interval that resamples content groups with all their
pairs (a pair without a group is its own group). Per-category values are ``PAIR_ACC[<category>]``.
Chance is 0.5.

Stored: metrics.csv / metrics.json rows (n = pairs), ``pairs.csv`` (every pair: dataset, better,
worse, group, category; :mod:`diqa_bench.pair_files`) next to ``scores.csv`` (every image's score),
and ``run.json`` (``domains`` gets ``kind: pairs`` with pair, group and category counts;
``pair_cells`` the pairs and groups each cell used). The leaderboard shows a pair domain as its own
table, rendered from these files (:mod:`diqa_bench.pair_tables`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from diqa_bench.datasets import Dataset, Record
from diqa_bench.errors import ConfigError
from diqa_bench.tables import AGGREGATE_SEED, METRIC_COLUMNS

STATISTIC = "PAIR_ACC"
KIND = "pairs"
CHANCE = 0.5
PAIR_COLUMNS = ["domain", "dataset", "better", "worse", "group", "category"]


def category_statistic(category: str) -> str:
    return f"{STATISTIC}[{category}]"


@dataclass(frozen=True)
class Pair:
    """One judgement: ``better`` is preferred over ``worse`` (record ids of the same dataset)."""

    better: str
    worse: str
    group: str = ""  # content group: pairs sharing one are resampled together
    category: str = ""

    @property
    def content_group(self) -> str:
        return self.group or f"{self.better}\x00{self.worse}"


class PairDataset(Dataset):
    """Base class of paired-preference dataset types. ``load`` must set ``self.pairs``; records
    come from :func:`records_for_pairs`. ``evaluation_only``: never trained or selected on."""

    evaluation_only: ClassVar[bool] = True
    mos_range = (0.0, 1.0)
    pairs: list[Pair]


def is_pair_dataset(obj: Any) -> bool:
    return bool(getattr(obj, "evaluation_only", False))


def records_for_pairs(pairs: list[Pair], path_of: dict[str, str]) -> list[Record]:
    """One record per distinct image of ``pairs``. The MOS is a placeholder the statistics never
    read (pairs carry the truth): 1 for an image that is only ever the better one, 0 for only ever
    the worse one, 0.5 for both; it keeps scores.csv readable."""
    roles: dict[str, set[str]] = {}
    group: dict[str, str] = {}
    for p in pairs:
        roles.setdefault(p.better, set()).add("better")
        roles.setdefault(p.worse, set()).add("worse")
        group.setdefault(p.better, p.group)
        group.setdefault(p.worse, p.group)
    out = []
    for image, r in roles.items():
        mos = 0.5 if len(r) == 2 else (1.0 if "better" in r else 0.0)
        out.append(Record(id=image, path=path_of[image], mos=mos, group=group[image]))
    return out


# -- the statistic ---------------------------------------------------------------------------------

@dataclass
class PairResult:
    value: float
    ci: tuple[float, float]
    boot: np.ndarray  # bootstrap samples of the accuracy
    pairs: int
    groups: int


def pair_credit(better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """1 where ``better`` scores higher, 0.5 on a tie or where either score is missing (NaN), 0
    otherwise (scores already aligned so that higher means better)."""
    better, worse = np.asarray(better, float), np.asarray(worse, float)
    tie = (better == worse) | np.isnan(better) | np.isnan(worse)
    return np.where(tie, 0.5, np.where(better > worse, 1.0, 0.0))


def pair_accuracy(better: np.ndarray, worse: np.ndarray, groups: list[str], *, lower_better: bool = False, bootstrap: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> PairResult:
    """Pair accuracy of one method on a list of pairs (``better[i]`` and ``worse[i]`` are the raw
    scores of pair i, ``groups[i]`` its content group), with a bootstrap interval over groups: each
    resample draws as many groups as there are, with replacement, and takes every pair of each
    drawn group (accuracy = credited pairs / pairs drawn)."""
    sign = -1.0 if lower_better else 1.0
    credit = pair_credit(sign * np.asarray(better, float), sign * np.asarray(worse, float))
    n = len(credit)
    if n == 0:
        return PairResult(float("nan"), (float("nan"), float("nan")), np.array([]), 0, 0)
    names, index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    g = len(names)
    sums = np.bincount(index, weights=credit, minlength=g)
    counts = np.bincount(index, minlength=g).astype(float)
    value = float(credit.mean())
    boot = np.array([])
    ci = (float("nan"), float("nan"))
    if bootstrap:
        draws = np.random.default_rng(seed).integers(0, g, size=(bootstrap, g))
        boot = sums[draws].sum(1) / counts[draws].sum(1)
        alpha = (1 - confidence) / 2
        ci = (float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha)))
    return PairResult(value, ci, boot, n, g)


# -- a run's pairs: the runner's hook and run.json ------------------------------------------------------

def domain_pairs(datasets: list[Any]) -> list[tuple[str, Pair]]:
    """(dataset name, pair) of every pair of a domain's loaded datasets (plan.LoadedDataset)."""
    out = []
    for ds in datasets:
        if not ds.error and ds.evaluation_only:
            out.extend((ds.name, p) for p in getattr(ds.obj, "pairs", []))
    return out


def attach(plan: Any, outcomes: list[Any]) -> None:
    """Give every outcome of a pair test domain the domain's pairs (the statistic needs them).
    ``plan``: the run's :class:`diqa_bench.plan.Plan`, on the machine that loaded its datasets."""
    cache: dict[str, list[tuple[str, Pair]]] = {}
    for o in outcomes:
        if o.test not in plan.config.domains:
            continue
        if o.test not in cache:
            sets = [plan.datasets[s.name] for s in plan.config.domains[o.test] if s.name in plan.datasets]
            cache[o.test] = domain_pairs(sets) if any(d.evaluation_only for d in sets) else None
        if cache[o.test] is not None:
            o.pairs = cache[o.test]


def domain_info(datasets: list[Any]) -> dict[str, Any]:
    """Extra run.json keys of a pair domain (nothing for other domains). A pair dataset that failed
    to load still makes its domain a pair domain: its table then gives the reason."""
    if not any(d.evaluation_only for d in datasets):
        return {}
    pairs = domain_pairs(datasets)
    cats: dict[str, int] = {}
    for _, p in pairs:
        if p.category:
            cats[p.category] = cats.get(p.category, 0) + 1
    return {"kind": KIND, "pairs": len(pairs), "groups": len({(d, p.content_group) for d, p in pairs}), "categories": cats}


# -- the statistic of a run's cells -------------------------------------------------------------------

def partition(outcomes: list[Any]) -> tuple[list[Any], list[Any]]:
    """(regular outcomes, pair-domain outcomes)."""
    regular = [o for o in outcomes if getattr(o, "pairs", None) is None]
    paired = [o for o in outcomes if getattr(o, "pairs", None) is not None]
    return regular, paired


def _cell_pairs(o) -> tuple[np.ndarray, np.ndarray, list[str], list[str], int]:
    """Scores of better and worse image of every pair (NaN where the method has none: the pair
    counts as a tie), groups, categories, and how many pairs lack a score."""
    score = {(r.dataset, r.id): s for r, s in zip(o.images, o.scores) if math.isfinite(s)}
    b, w, groups, cats, unscored = [], [], [], [], 0
    for name, p in o.pairs:
        sb, sw = score.get((name, p.better), math.nan), score.get((name, p.worse), math.nan)
        unscored += math.isnan(sb) or math.isnan(sw)
        b.append(sb)
        w.append(sw)
        groups.append(f"{name}/{p.content_group}")
        cats.append(p.category)
    return np.array(b, float), np.array(w, float), groups, cats, unscored


def evaluate(paired: list[Any], config: Any) -> tuple[Any, list[dict[str, Any]]]:
    """metrics rows (per seed and seed "all": mean over seeds, bootstrap samples pooled) of the
    pair-domain cells, and the pairs / groups each cell used (for run.json)."""
    import pandas as pd  # only once a run's tables are computed: `validate` imports this module

    rows, cells = [], []
    pooled: dict[tuple, list[np.ndarray]] = {}
    values: dict[tuple, list[tuple[float, int]]] = {}
    for o in paired:
        if o.status != "ok":
            continue
        b, w, groups, cats, unscored = _cell_pairs(o)
        cells.append(dict(method=o.method, train=o.train, test=o.test, seed=o.seed, pairs=len(b), groups=len(set(groups)), unscored=unscored))
        parts = [(STATISTIC, np.ones(len(b), bool))]
        parts += [(category_statistic(c), np.array([x == c for x in cats])) for c in sorted({c for c in cats if c})]
        for name, mask in parts:
            res = pair_accuracy(b[mask], w[mask], [g for g, m in zip(groups, mask) if m], lower_better=o.lower_better,
                                bootstrap=config.bootstrap, confidence=config.confidence, seed=config.stats_seed)
            rows.append(dict(method=o.method, train=o.train, test=o.test, seed=str(o.seed), statistic=name, value=res.value,
                             ci_low=res.ci[0], ci_high=res.ci[1], n=res.pairs, std=float("nan")))
            key = (o.method, o.train, o.test, name)
            values.setdefault(key, []).append((res.value, res.pairs))
            if len(res.boot):
                pooled.setdefault(key, []).append(res.boot)
    for (method, train, test, name), vals in values.items():
        v = np.array([x for x, _ in vals], float)
        lo = hi = float("nan")
        if pooled.get((method, train, test, name)):
            samples = np.concatenate(pooled[(method, train, test, name)])
            alpha = (1 - config.confidence) / 2
            lo, hi = float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))
        rows.append(dict(method=method, train=train, test=test, seed=AGGREGATE_SEED, statistic=name, value=float(np.nanmean(v)), ci_low=lo, ci_high=hi,
                         n=int(round(np.mean([n for _, n in vals]))), std=float(np.nanstd(v, ddof=1)) if len(v) > 1 else float("nan")))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS), cells


def add_metrics(metrics, pair_metrics):
    """metrics.csv rows with the pair rows appended."""
    import pandas as pd  # as in evaluate

    if not len(pair_metrics):
        return metrics
    if not len(metrics):
        return pair_metrics
    return pd.concat([metrics, pair_metrics], ignore_index=True)


# -- reading run.json ----------------------------------------------------------------------------------

def is_pair_domain(run_info: dict[str, Any], test: str) -> bool:
    return run_info.get("domains", {}).get(test, {}).get("kind") == KIND


def pair_domains(run_info: dict[str, Any]) -> set[str]:
    return {d for d, info in run_info.get("domains", {}).items() if info.get("kind") == KIND}


# -- config check --------------------------------------------------------------------------------------

def check_config(domains: dict[str, list[Any]], train_sets: list[list[str]], registry: Any, file: str) -> None:
    """Refuse a pair domain in train_sets, and a domain mixing pair and MOS datasets (one line)."""
    kinds: dict[str, str] = {}
    for dom, specs in domains.items():
        flags = [bool(getattr(registry.datasets[s.type].cls, "evaluation_only", False)) for s in specs if s.type in registry.datasets]
        if any(flags) and not all(flags):
            raise ConfigError(f"{file}: domains.{dom}: mixes paired-preference datasets with MOS datasets; put the pairs in a domain of their own")
        if flags and all(flags):
            kinds[dom] = next(s.type for s in specs)
    for i, ts in enumerate(train_sets):
        for j, d in enumerate(ts):
            if d in kinds:
                raise ConfigError(f"{file}: train_sets[{i}][{j}]: domain {d!r} holds paired-preference data (dataset type {kinds[d]!r}), "
                                  "which is evaluation-only: list it under test_domains, never in train_sets")
