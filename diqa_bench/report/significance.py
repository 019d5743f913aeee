"""Is a method significantly worse than the best one on a test domain?

The best entry (method @ train set) per test domain is the one with the highest mean SROCC in
metrics.csv. Every other entry is compared with it by a paired bootstrap over images of the SROCC
difference (best - other): within each split seed both are scored on the same test images, and
each resample draws the same image indices for both. Per-seed bootstraps are pooled across seeds,
so the interval covers both image sampling and split variation (as the leaderboard's CIs do).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diqa_bench.report.stored import (
    Cell,
    StoredRun,
    load_run,
    quantile_ci,
    srocc,
    srocc_rows,
    two_sided_p,
)

COLUMNS = ["test", "method", "train", "seed", "best_method", "best_train", "delta", "ci_low", "ci_high", "p_value", "worse", "n"]
WORSE_MARK = "†"


def paired_srocc_delta(best: Cell, other: Cell, bootstrap: int, seed: int) -> tuple[float, np.ndarray, int]:
    """SROCC(best) - SROCC(other) on the images both cells scored, and its paired bootstrap samples."""
    common = sorted(set(best.images) & set(other.images))
    if len(common) < 3:
        return float("nan"), np.array([]), len(common)
    ib = {k: i for i, k in enumerate(best.images)}
    io = {k: i for i, k in enumerate(other.images)}
    pos_b = np.array([ib[k] for k in common])
    pos_o = np.array([io[k] for k in common])
    sb, so = best.aligned_score[pos_b], other.aligned_score[pos_o]
    mos = best.eval_mos[pos_b]
    delta = srocc(sb, mos) - srocc(so, mos)
    idx = np.random.default_rng(seed).integers(0, len(common), size=(bootstrap, len(common)))
    boot = srocc_rows(sb[idx], mos[idx]) - srocc_rows(so[idx], mos[idx])
    return delta, boot, len(common)


def significance(folder_or_run: Path | StoredRun, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None):
    """DataFrame with one row per test domain x other entry x seed (and seed "all", pooled):
    delta = SROCC(best) - SROCC(entry), its CI, two-sided bootstrap p-value and ``worse`` (the CI
    lies above 0). Bootstrap size, confidence and seed default to the run's protocol."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    protocol = run.protocol
    bootstrap = bootstrap or protocol.get("bootstrap") or 1000
    confidence = confidence or protocol.get("confidence", 0.95)
    seed = protocol.get("stats_seed", 0) if seed is None else seed
    cells = run.cells()
    agg = run.aggregate("SROCC")
    rows = []
    for test in run.test_domains():
        ranked = agg[agg["test"] == test].dropna(subset=["value"]).sort_values("value", ascending=False, kind="stable")
        if len(ranked) < 2:
            continue
        best_method, best_train = ranked.iloc[0]["method"], ranked.iloc[0]["train"]
        seeds = sorted({k[3] for k in cells if k[:3] == (best_method, best_train, test)})
        for entry in ranked.iloc[1:].itertuples(index=False):
            deltas, boots, ns = [], [], []
            for s in seeds:
                b, o = cells.get((best_method, best_train, test, s)), cells.get((entry.method, entry.train, test, s))
                if b is None or o is None:
                    continue
                delta, boot, n = paired_srocc_delta(b, o, bootstrap, seed)
                lo, hi = quantile_ci(boot, confidence)
                rows.append(dict(test=test, method=entry.method, train=entry.train, seed=s, best_method=best_method, best_train=best_train,
                                 delta=delta, ci_low=lo, ci_high=hi, p_value=two_sided_p(boot), worse=bool(lo > 0), n=n))
                if np.isfinite(delta):
                    deltas.append(delta)
                    boots.append(boot)
                    ns.append(n)
            if deltas:
                pooled = np.concatenate(boots)
                lo, hi = quantile_ci(pooled, confidence)
                rows.append(dict(test=test, method=entry.method, train=entry.train, seed="all", best_method=best_method, best_train=best_train,
                                 delta=float(np.mean(deltas)), ci_low=lo, ci_high=hi, p_value=two_sided_p(pooled), worse=bool(lo > 0),
                                 n=int(round(np.mean(ns)))))
    return pd.DataFrame(rows, columns=COLUMNS)


def significance_marks(folder: Path) -> dict[tuple[str, str, str], str]:
    """(method label, train set, test domain) -> mark for the leaderboard: "†" when significantly
    worse than the domain's best entry (seeds pooled), "" otherwise. Entries absent were not compared
    (the best one, or a cell without stored scores)."""
    df = significance(folder)
    pooled = df[df["seed"] == "all"]
    return {(r.method, r.train, r.test): (WORSE_MARK if r.worse else "") for r in pooled.itertuples(index=False)}
