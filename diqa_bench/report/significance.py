"""Is a method significantly worse than the best one on a test domain?

The best entry (method @ train set) per test domain is the one with the highest mean SROCC in
metrics.csv. Every other entry is compared with it by a paired content-group bootstrap of the
SROCC difference (best - other), :func:`diqa_bench.stats.paired_delta`: within each split seed
both are scored on the same test images and every replicate draws the same content groups for
both; the per-seed differences are averaged over the seeds both share, replicate by replicate.
A test domain with too little data (see :func:`diqa_bench.stats.data_warning`) keeps its rows,
with the warning in the ``warning`` column.

Multiplicity: the comparisons of one test domain with its best entry are one family (those
pooled over seeds, and separately those of each split seed); ``p_value`` is the raw bootstrap
p, ``p_adjusted`` the p adjusted within the family (``adjust``: Holm by default,
:func:`diqa_bench.stats.adjust_p`), and ``worse`` (the leaderboard's †) needs both the interval
above 0 and the adjusted p below 1 - confidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diqa_bench import stats
from diqa_bench.report.stored import StoredRun, load_run, paired_samples

COLUMNS = ["test", "method", "train", "seed", "best_method", "best_train", "delta", "ci_low", "ci_high", "p_value", "worse", "n", "groups", "warning",
           "p_adjusted", "adjust", "family_size"]
WORSE_MARK = "†"


def domain_warning(run: StoredRun, test: str) -> str:
    """The too-little-data warning of a test domain, from its smallest split seed ("" if none)."""
    sizes: dict[str, tuple[int, int]] = {}
    for (method, train, t, seed), cell in run.cells().items():
        if t == test:
            sample = cell.sample()
            n, g = sizes.get(seed, (0, 0))
            sizes[seed] = (max(n, sample.n), max(g, sample.n_groups))
    if not sizes:
        return ""
    return stats.data_warning(min(n for n, _ in sizes.values()), min(g for _, g in sizes.values()))


def significance(folder_or_run: Path | StoredRun, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None,
                 adjust: str | None = None):
    """DataFrame with one row per test domain x other entry x seed (and seed "all", pooled):
    delta = SROCC(best) - SROCC(entry), its CI, two-sided bootstrap p-value, the p adjusted within
    its family (see the module docstring) and ``worse``. Bootstrap size, confidence, seed and
    adjustment default to the run's protocol."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    bootstrap, confidence, seed = run.bootstrap_settings(bootstrap, confidence, seed)
    adjust = run.adjustment(adjust)
    cells = run.cells()
    agg = run.aggregate("SROCC")
    rows = []
    for test in run.test_domains():
        ranked = agg[agg["test"] == test].dropna(subset=["value"]).sort_values("value", ascending=False, kind="stable")
        if len(ranked) < 2:
            continue
        warning = domain_warning(run, test)
        best_method, best_train = ranked.iloc[0]["method"], ranked.iloc[0]["train"]
        seeds = sorted({k[3] for k in cells if k[:3] == (best_method, best_train, test)})
        for entry in ranked.iloc[1:].itertuples(index=False):
            pairs = {}
            for s in seeds:
                b, o = cells.get((best_method, best_train, test, s)), cells.get((entry.method, entry.train, test, s))
                if b is not None and o is not None and (p := paired_samples(o, b)) is not None:
                    pairs[s] = p
            if not pairs:
                continue
            common = dict(test=test, method=entry.method, train=entry.train, best_method=best_method, best_train=best_train, warning=warning)
            for s, pair in pairs.items():
                d = stats.paired_delta({s: pair}, "SROCC", bootstrap=bootstrap, confidence=confidence, stats_seed=seed, shared_draws=run.shared_draws)
                rows.append(dict(common, seed=s, delta=d.value, ci_low=d.ci[0], ci_high=d.ci[1], p_value=d.p_value, worse=bool(d.ci[0] > 0),
                                 n=int(round(d.n_images)), groups=int(round(d.n_groups))))
            d = stats.paired_delta(pairs, "SROCC", bootstrap=bootstrap, confidence=confidence, stats_seed=seed, shared_draws=run.shared_draws)
            if np.isfinite(d.value):
                rows.append(dict(common, seed="all", delta=d.value, ci_low=d.ci[0], ci_high=d.ci[1], p_value=d.p_value, worse=bool(d.ci[0] > 0),
                                 n=int(round(d.n_images)), groups=int(round(d.n_groups))))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(df):
        df["p_adjusted"], df["family_size"] = stats.adjust_families(df["p_value"], df["test"] + "\0" + df["seed"].astype(str), adjust)
        df["adjust"] = adjust
        df["worse"] = [stats.adjusted_verdict(r.ci_low, r.ci_high, r.p_adjusted, confidence) == "better" for r in df.itertuples(index=False)]
    return df


def significance_marks(folder: Path) -> dict[tuple[str, str, str], str]:
    """(method label, train set, test domain) -> mark for the leaderboard: "†" when significantly
    worse than the domain's best entry (seeds pooled), "" otherwise. Entries absent were not compared
    (the best one, or a cell without stored scores)."""
    df = significance(folder)
    pooled = df[df["seed"] == "all"]
    return {(r.method, r.train, r.test): (WORSE_MARK if r.worse else "") for r in pooled.itertuples(index=False)}
