"""Statistical power of a finished run: content-group bootstrap half-widths of SROCC.

    python benchmarks/power.py RESULTS_DIR [--top 5] [--bootstrap 1000]

For every entry (method @ train set) of every test domain it resamples the test content groups
(reference images; an image id's first path component, as the embedded datasets name them) with
replacement inside each split seed, recomputes SROCC per seed, averages over the seeds, and reports
the half-width of the 95% percentile interval of that seed mean; also the mean over seeds of the
per-seed half-widths. It prints the test groups per seed and the median half-width over the top
``--top`` entries of each domain (ranked by the leaderboard's mean SROCC, sign-corrected for
lower-is-better methods). Read-only: it only reads scores.csv and metrics.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (average ranks for ties)."""
    rx = np.apply_along_axis(rankdata, 1, x)
    ry = np.apply_along_axis(rankdata, 1, y)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / den, np.nan)


def group_replicates(cell: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """SROCC of ``n_boot`` content-group resamples of one seed's test images."""
    groups = [g for _, g in cell.groupby("group", sort=True)]
    score = [g["score"].to_numpy() for g in groups]
    mos = [g["mos"].to_numpy() for g in groups]
    picks = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    out = np.empty(n_boot)
    for b in range(n_boot):  # resamples differ in length: one at a time
        x = np.concatenate([score[i] for i in picks[b]])
        y = np.concatenate([mos[i] for i in picks[b]])
        out[b] = spearman_rows(x[None], y[None])[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    scores = pd.read_csv(args.results / "scores.csv")
    scores = scores.dropna(subset=["score", "mos"])
    scores["group"] = scores["image"].astype(str).str.split("/").str[0]
    scores["train"] = scores["train"].fillna("-").astype(str)
    metrics = pd.read_csv(args.results / "metrics.csv")
    metrics["train"] = metrics["train"].fillna("-").astype(str)
    overall = metrics[(metrics["statistic"] == "SROCC") & (metrics["seed"].astype(str) == "all")]
    rng = np.random.default_rng(args.seed)
    for test, dom in scores.groupby("domain"):
        per_seed = dom.groupby("seed")["group"].nunique()
        print(f"\n## {test}: {dom.groupby('seed')['image'].nunique().iloc[0]} test images per seed, "
              f"test groups per seed {dict(per_seed)}")
        ranked = overall[overall["test"] == test].sort_values("value", ascending=False)
        rows = []
        for _, m in ranked.iterrows():
            entry = dom[(dom["method"] == m["method"]) & (dom["train"] == m["train"])]
            if entry.empty:
                continue
            reps, widths = [], []
            for _, cell in entry.groupby("seed"):
                r = group_replicates(cell, args.bootstrap, rng)
                reps.append(r)
                lo, hi = np.nanpercentile(r, [2.5, 97.5])
                widths.append((hi - lo) / 2)
            mean_rep = np.nanmean(np.vstack(reps), axis=0)
            lo, hi = np.nanpercentile(mean_rep, [2.5, 97.5])
            rows.append((m["method"], m["train"], m["value"], (hi - lo) / 2, float(np.mean(widths))))
        table = pd.DataFrame(rows, columns=["method", "train", "SROCC", "half-width (seed mean)", "half-width (per seed)"])
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        top = table.head(args.top)
        print(f"top {len(top)}: median half-width {top['half-width (seed mean)'].median():.3f} (seed mean), "
              f"{top['half-width (per seed)'].median():.3f} (per seed)")


if __name__ == "__main__":
    main()
