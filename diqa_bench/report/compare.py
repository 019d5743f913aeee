"""Comparing two stored runs: what changed, by how much, and whether the change is significant.

Per method x train set x test domain x statistic: delta = B - A with a bootstrap CI.
- Paired (``mode = "paired"``): when the runs scored the same images (same dataset and image id in
  the same split seed), each resample draws the same images for both runs; the delta is the mean
  over common seeds of the statistic on the common images. This is the sensitive test of "did my
  change help on the same data".
- Independent (``mode = "independent"``): no images in common; the delta is the difference of the
  stored means (metrics.csv) and its CI comes from the difference of independent bootstraps.
The logistic mapping behind PLCC and RMSE is fitted once per run and seed on the images used, as
in :func:`diqa_bench.stats.evaluate`. Warnings say when the runs are not like for like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench import stats
from diqa_bench.report.stored import Cell, StoredRun, load_run, quantile_ci, two_sided_p

COLUMNS = ["method", "train", "test", "statistic", "value_a", "value_b", "delta", "ci_low", "ci_high", "p_value", "significant", "mode", "n"]
COMPARED = ("SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE")


def _boot_stats(score: np.ndarray, mos: np.ndarray, idx: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Point statistics and their values on the resamples ``idx`` [B, n] of one cell's images."""
    mapping = stats.fit_logistic(score, mos)
    mapped = mapping(score)
    point = {k: float(v[0]) for k, v in stats.all_stats(score[None], mos[None], mapped[None]).items()}
    return point, stats.all_stats(score[idx], mos[idx], mapped[idx])


def _common(a: Cell, b: Cell) -> tuple[np.ndarray, np.ndarray]:
    ib = {k: i for i, k in enumerate(b.images)}
    pairs = [(i, ib[k]) for i, k in enumerate(a.images) if k in ib]
    return np.array([p[0] for p in pairs], int), np.array([p[1] for p in pairs], int)


def _paired(cells_a: list[Cell], cells_b: list[Cell], bootstrap: int, seed: int):
    deltas: dict[str, list[float]] = {}
    boots: dict[str, list[np.ndarray]] = {}
    ns = []
    for a, b in zip(cells_a, cells_b):
        pa, pb = _common(a, b)
        if len(pa) < 3:
            continue
        idx = np.random.default_rng(seed).integers(0, len(pa), size=(bootstrap, len(pa)))
        point_a, boot_a = _boot_stats(a.aligned_score[pa], a.eval_mos[pa], idx)
        point_b, boot_b = _boot_stats(b.aligned_score[pb], b.eval_mos[pb], idx)
        ns.append(len(pa))
        for k in COMPARED:
            deltas.setdefault(k, []).append(point_b[k] - point_a[k])
            boots.setdefault(k, []).append(boot_b[k] - boot_a[k])
    return deltas, boots, ns


def _independent(cells_a: list[Cell], cells_b: list[Cell], bootstrap: int, seed: int):
    """Pooled bootstrap of each run (its own seeds), differenced resample by resample."""
    pooled = []
    for i, cells in enumerate((cells_a, cells_b)):
        rng = np.random.default_rng([seed, i])  # independent streams for the two runs
        per_stat: dict[str, list[np.ndarray]] = {}
        for c in cells:
            idx = rng.integers(0, len(c.score), size=(bootstrap, len(c.score)))
            for k, v in _boot_stats(c.aligned_score, c.eval_mos, idx)[1].items():
                per_stat.setdefault(k, []).append(v)
        pooled.append(per_stat)
    # Pair the j-th pooled resample of A with the j-th of B; trim to the shorter pool.
    boots = {}
    for k in COMPARED:
        va, vb = np.concatenate(pooled[0][k]), np.concatenate(pooled[1][k])
        m = min(len(va), len(vb))
        boots[k] = vb[:m] - va[:m]
    return boots


def compare_runs(dir_a: Path, dir_b: Path, bootstrap: int | None = None, confidence: float | None = None):
    """(DataFrame with COLUMNS, warnings) comparing run B against run A (delta = B - A)."""
    import pandas as pd

    run_a, run_b = load_run(Path(dir_a)), load_run(Path(dir_b))
    warnings = compatibility_warnings(run_a, run_b)
    protocol = run_a.protocol
    bootstrap = bootstrap or protocol.get("bootstrap") or 1000
    confidence = confidence or protocol.get("confidence", 0.95)
    seed = protocol.get("stats_seed", 0)
    cells_a, cells_b = run_a.cells(), run_b.cells()
    stored_a = _stored(run_a)
    stored_b = _stored(run_b)

    entries_a = {k[:3] for k in cells_a}
    entries_b = {k[:3] for k in cells_b}
    only_a, only_b = sorted(entries_a - entries_b), sorted(entries_b - entries_a)
    if only_a:
        warnings.append(f"{len(only_a)} method x train x test entries only in A (not compared), e.g. {' @ '.join(only_a[0][:2])} -> {only_a[0][2]}")
    if only_b:
        warnings.append(f"{len(only_b)} method x train x test entries only in B (not compared), e.g. {' @ '.join(only_b[0][:2])} -> {only_b[0][2]}")

    rows = []
    for method, train, test in sorted(entries_a & entries_b):
        seeds_a = sorted(k[3] for k in cells_a if k[:3] == (method, train, test))
        seeds_b = sorted(k[3] for k in cells_b if k[:3] == (method, train, test))
        common_seeds = [s for s in seeds_a if s in seeds_b]
        deltas, boots, ns = _paired([cells_a[(method, train, test, s)] for s in common_seeds],
                                    [cells_b[(method, train, test, s)] for s in common_seeds], bootstrap, seed)
        mode = "paired" if ns else "independent"
        if not ns:
            boots = {k: [v] for k, v in _independent([cells_a[(method, train, test, s)] for s in seeds_a],
                                                      [cells_b[(method, train, test, s)] for s in seeds_b], bootstrap, seed).items()}
        for stat in COMPARED:
            va = stored_a.get((method, train, test, stat), float("nan"))
            vb = stored_b.get((method, train, test, stat), float("nan"))
            samples = np.concatenate(boots[stat])
            lo, hi = quantile_ci(samples, confidence)
            delta = float(np.mean(deltas[stat])) if ns else vb - va
            rows.append(dict(method=method, train=train, test=test, statistic=stat, value_a=va, value_b=vb, delta=delta, ci_low=lo, ci_high=hi,
                             p_value=two_sided_p(samples), significant=bool(lo > 0 or hi < 0), mode=mode,
                             n=int(round(np.mean(ns))) if ns else 0))
    return pd.DataFrame(rows, columns=COLUMNS), warnings


def _stored(run: StoredRun) -> dict[tuple[str, str, str, str], float]:
    agg = run.metrics[run.metrics["seed"].astype(str) == "all"]
    return {(r.method, r.train, r.test, r.statistic): float(r.value) for r in agg.itertuples(index=False)}


def compatibility_warnings(run_a: StoredRun, run_b: StoredRun) -> list[str]:
    """What differs between the two runs besides the thing being compared."""
    a, b = run_a.run_info, run_b.run_info
    out = []
    if a.get("config_hash") != b.get("config_hash"):
        out.append(f"config differs: hash {a.get('config_hash')} vs {b.get('config_hash')} ({a.get('config_path')} vs {b.get('config_path')})")
    hashes_a, hashes_b = _data_hashes(a), _data_hashes(b)
    for name in sorted(set(hashes_a) | set(hashes_b)):
        ha, hb = hashes_a.get(name), hashes_b.get(name)
        if ha != hb:
            out.append(f"data differs: dataset {name} content hash {ha or 'absent'} vs {hb or 'absent'}")
    env_a, env_b = a.get("environment", {}), b.get("environment", {})
    for key in ("diqa_bench", "torch", "pyiqa"):
        if env_a.get(key) != env_b.get(key):
            out.append(f"versions differ: {key} {env_a.get(key)} vs {env_b.get(key)}")
    commit_a, commit_b = (env_a.get("git") or {}).get("commit"), (env_b.get("git") or {}).get("commit")
    if commit_a != commit_b:
        out.append(f"code differs: git commit {str(commit_a)[:12]} vs {str(commit_b)[:12]}")
    for key in ("machine", "device", "gpu"):
        if env_a.get(key) != env_b.get(key):
            out.append(f"machine differs: {key} {_short(env_a.get(key))} vs {_short(env_b.get(key))}")
    return out


def _data_hashes(run_info: dict[str, Any]) -> dict[str, str]:
    return {d["name"]: d.get("content_hash") for dom in run_info.get("domains", {}).values() for d in dom.get("datasets", [])}


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def format_comparison(df, warnings: list[str], statistics: tuple[str, ...] = ("SROCC", "PLCC", "KRCC", "RMSE")) -> str:
    """Markdown: the warnings, then one table of B - A per entry and statistic ("*" = significant)."""
    from tabulate import tabulate

    lines = ["# Run comparison (B - A)", ""]
    if warnings:
        lines += ["**Warnings: the runs are not like for like.**", ""] + [f"- {w}" for w in warnings] + [""]
    sub = df[df["statistic"].isin(statistics)] if len(df) else df
    if not len(sub):
        lines.append("_No method x train x test entry in common._")
        return "\n".join(lines) + "\n"
    rows = []
    for r in sub.itertuples(index=False):
        rows.append([f"{r.method} @ {r.train}", r.test, r.statistic, f"{r.value_a:.3f}", f"{r.value_b:.3f}",
                     f"{r.delta:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]", f"{r.p_value:.3f}", "yes *" if r.significant else "no", r.mode, r.n])
    lines.append(tabulate(rows, headers=["Method @ train set", "Test", "Statistic", "A", "B", "Δ [CI]", "p", "Significant", "Bootstrap", "n"],
                          tablefmt="github", disable_numparse=True))
    lines += ["", "Δ = B - A; for RMSE lower is better, so a negative Δ is an improvement. Paired: both runs resampled on the same images "
              "(n per seed in common); independent: no images in common, difference of independent bootstraps."]
    return "\n".join(lines) + "\n"
