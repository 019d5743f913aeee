"""Statistics of a run's cells: the metrics table and the scores table, computed from cell
outcomes in memory (nothing here reads or writes a file).

- :func:`scores_frame`: scores.csv, one row per image per cell (the raw material);
- :func:`compute_metrics`: metrics.csv, tidy, one row per method x train x test x seed x statistic,
  plus rows with ``seed = "all"`` aggregated across split seeds (mean, std, pooled-bootstrap CI);
- :func:`cell_records` and :func:`protocol_statistics`: what run.json says about the cells and
  about how the numbers were computed.

Paired-preference cells have a statistic of their own (:mod:`diqa_bench.pairs`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from diqa_bench import stats
from diqa_bench.splits import fold_of_key
from diqa_bench.tables import AGGREGATE_SEED, METRIC_COLUMNS, SCORE_COLUMNS


# The acceptability row besides stats.GATE_STATISTICS: the score cut chosen on the train split, in
# the method's units; fixed for the test set, so it has no interval.
THRESHOLD = "THRESHOLD"


def eval_mos(outcome) -> tuple[np.ndarray, bool]:
    """MOS the cell is judged against: raw MOS when the test domain holds one dataset; the
    per-dataset normalised MOS (``mos_norm``, from :func:`diqa_bench.datasets.normalise_mos`, higher
    better) when it mixes datasets of other scales."""
    datasets = {r.dataset for r in outcome.images}
    if len(datasets) <= 1:
        return np.array([r.mos for r in outcome.images], float), outcome.mos_lower_better
    return np.array([r.mos_norm for r in outcome.images], float), False


def compute_metrics(outcomes, config, details: dict | None = None) -> "Any":
    """Tidy metrics DataFrame for the successful cells. Intervals resample content groups within
    each split seed (the acceptability statistics too, from the same draws); the ``seed = all``
    rows are means over seeds with the interval of that mean (see :mod:`diqa_bench.stats`). ``details``, when given, receives per cell (method, train, test,
    seed) its mapping, content-group count and acceptability threshold (for run.json)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    boots: dict[tuple, list[np.ndarray]] = {}
    nan = float("nan")
    for o in outcomes:
        if o.status != "ok":
            continue
        mos, mos_lower = eval_mos(o)
        bad_test, cut = None, nan
        if config.acceptability is not None:
            bad_test = stats.unacceptable([r.mos for r in o.images], config.acceptability, [r.mos_lower_better for r in o.images])
            cut = stats.gate_threshold(o.train_scores, o.train_bad, lower_better=o.lower_better)
        # The gate statistics are resampled with the same group draws as the correlations; the cut
        # was chosen on the train split, so it stays fixed in every test-set replicate.
        cell = stats.evaluate(
            np.array(o.scores), mos, groups=[r.group for r in o.images], lower_better=o.lower_better, mos_lower_better=mos_lower,
            bootstrap=config.bootstrap, confidence=config.confidence, rng=stats.seed_rng(config.stats_seed, stats.draw_seed(o.seed, getattr(config, "folds", None) is not None)),
            bad=bad_test, cut=cut,
        )
        common = dict(method=o.method, train=o.train, test=o.test, seed=o.seed, n=cell.n, std=nan, groups=cell.n_groups)
        for name in cell.values:
            lo, hi = cell.ci.get(name, (nan, nan))
            rows.append(dict(common, statistic=name, value=cell.values[name], ci_low=lo, ci_high=hi))
            if name in cell.boot:
                boots.setdefault((o.method, o.train, o.test, name), []).append(cell.boot[name])
        info = {"mapping": cell.mapping.describe(), "groups": cell.n_groups}
        if bad_test is not None:
            rows.append(dict(common, statistic=THRESHOLD, value=cut, ci_low=nan, ci_high=nan))  # fixed: no interval
            info["threshold"] = cut if np.isfinite(cut) else None
            if np.isfinite(cut) and len(o.train_scores):  # 1.0 or 0.0: the "gate" accepts (rejects) everything there
                info["train_accept"] = train_accept_rate(o.train_scores, cut, o.lower_better)
        if details is not None:
            details[(o.method, o.train, o.test, o.seed)] = info
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    if df.empty:
        return df
    df["seed"] = df["seed"].astype(str)
    agg_rows = []
    for (method, train, test, name), g in df.groupby(["method", "train", "test", "statistic"], sort=False):
        vals = g["value"].to_numpy(float)
        lo, hi = stats.pooled_ci(boots.get((method, train, test, name), []), config.confidence) if config.bootstrap else (nan, nan)
        with np.errstate(all="ignore"):
            mean = float(np.nanmean(vals)) if np.isfinite(vals).any() else nan
            std = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else nan
        agg_rows.append(dict(method=method, train=train, test=test, seed=AGGREGATE_SEED, statistic=name, value=mean,
                             ci_low=lo, ci_high=hi, n=int(round(g["n"].mean())), std=std, groups=float(g["groups"].mean())))
    return pd.concat([df, pd.DataFrame(agg_rows, columns=METRIC_COLUMNS)], ignore_index=True)


def train_accept_rate(train_scores, cut: float, lower_better: bool) -> float:
    """Share of the train split's images a cut accepts (by the gate's rule)."""
    ts = np.asarray(train_scores, float)
    ts = ts[np.isfinite(ts)]
    return float(np.mean(ts <= cut if lower_better else ts >= cut)) if len(ts) else float("nan")


EMPTY_FOLD = "has no test images"  # the reason plan.images gives a fold that tests none of a domain's groups


def pool_folds(outcomes: list, folds: int) -> list:
    """Cross-validation: one cell per method x train set x test domain x repetition seed, holding
    the out-of-fold scores of all its folds (every test image once). A fold that tested none of
    the domain's groups adds nothing; any other fold without scores makes the pooled cell fail (or
    not run) with that fold's reason. Statistics are computed on these pooled cells only."""
    if not folds:
        return outcomes
    grouped: dict[tuple, list] = {}
    for o in outcomes:
        seed, fold = fold_of_key(o.seed)
        grouped.setdefault((o.method, o.train, o.test, seed), []).append((fold, o))
    pooled = []
    for (method, train, test, seed), parts in grouped.items():
        parts.sort(key=lambda fo: fo[0])
        first = parts[0][1]
        cell = dataclasses.replace(first, seed=seed, images=[], scores=[], train_scores=[], train_bad=[], status="ok", reason="")
        missing = [f for f in range(folds) if f not in {fold for fold, _ in parts}]
        bad = [(f, o) for f, o in parts if o.status != "ok" and not o.reason.endswith(EMPTY_FOLD)]
        if bad:
            f, o = bad[0]
            cell.status, cell.reason = o.status, f"fold {f + 1} of {folds}: {o.reason}"
        elif missing:  # an interrupted run: a repetition with folds missing would test only part of the images
            cell.status, cell.reason = "failed", f"folds {', '.join(str(f + 1) for f in missing)} of {folds} did not finish"
        else:
            for _, o in parts:
                if o.status == "ok":
                    cell.images += o.images
                    cell.scores += o.scores
            if not cell.images:
                cell.status, cell.reason = "failed", parts[0][1].reason
        pooled.append(cell)
    return pooled


def scores_frame(outcomes):
    """scores.csv: one row per image per cell."""
    import pandas as pd  # pandas only when a table is built: `validate` reads the column lists above

    # the datasets' declared metadata columns (strata), after the fixed ones: none unless one declares them
    extra = sorted({k for o in outcomes for r in o.images for k in getattr(r, "attrs", {})} - set(SCORE_COLUMNS))
    rows = []
    for o in outcomes:
        for r, s in zip(o.images, o.scores):
            attrs = getattr(r, "attrs", {})
            rows.append((r.id, r.dataset, r.domain, o.method, o.train, o.seed, s, r.mos, r.mos_norm, r.group, r.distortion or "",
                         "" if r.level is None else r.level, r.path, *(attrs.get(k, "") for k in extra)))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS + extra)


def cell_records(outcomes, details: dict | None = None) -> list[dict[str, Any]]:
    """run.json's cells; ``details`` (from :func:`compute_metrics`) adds each scored cell's
    mapping behind PLCC/RMSE, its content-group count and its acceptability threshold."""
    details = details or {}
    return [dict(method=o.method, train=o.train, test=o.test, seed=o.seed, status=o.status, reason=o.reason, n=len(o.scores),
                 lower_better=o.lower_better, **details.get((o.method, o.train, o.test, o.seed), {})) for o in outcomes]


def protocol_statistics() -> dict[str, Any]:
    """How the numbers were computed, for run.json's protocol (and the leaderboard's paragraph)."""
    return {
        "mapping": f"VQEG 4-parameter logistic constrained monotonically increasing; linear (slope >= 0) when n < {stats.MIN_LOGISTIC_N}, "
                   "the scores are constant, or the fit fails, is flat or would change the sign (per cell in cells[].mapping)",
        "resampling": "content groups",
        "estimand": "mean over split seeds of the per-seed statistic",
        "interval": "percentile bootstrap: each replicate resamples the test content groups within every split seed and averages "
                    "the per-seed statistics; paired comparisons use the same group draws for both sides",
        "min_groups": stats.MIN_GROUPS, "min_images": stats.MIN_IMAGES,
    }
