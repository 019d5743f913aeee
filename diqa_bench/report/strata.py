"""Strata: each entry's agreement within each value of a per-image attribute, the worst stratum
and the gap between the best and the worst one.

A teledermatology gate that works on light skin and fails on dark skin, or on one kind of damage
and not another, looks fine in one SROCC; it is judged by its worst group. ``strata: [column,
...]`` in a config names the attributes (:data:`COLUMNS`): ``distortion`` and ``level`` as the
dataset records them, ``reference_kind`` (``real`` or ``synthetic``: whether the image's dataset
is made of synthetic references, as the default benchmark's ``synthetic-skin``), ``dataset``, and
any ``metadata_columns`` a ``csv`` or ``derm-ratings`` dataset declares (scores.csv columns).

Per test domain, entry (method @ train set), column and stratum: the statistics of
:data:`STATISTICS` on the stratum's images of each split seed, their mean over seeds and a
content-group bootstrap interval. Each stratum resamples its own content groups (as many as it
has, so a small stratum is never drawn empty), from a generator keyed by the set of those groups:
strata made of the same groups (the distortions of the same reference images) get the same draws
and are paired, strata of different groups (real and synthetic references) independent draws, as
they are; a stratum holding all the cell's groups gets the draws of the overall interval. The worst
stratum is the one with the lowest mean SROCC; the gap is best minus worst, with the interval of
that difference from the same draws. Choosing the best and the worst by their point estimates
makes the gap's point estimate lean high when strata differ little (its interval still says
whether the difference is real). A stratum with fewer than :data:`diqa_bench.stats.MIN_GROUPS`
content groups or :data:`diqa_bench.stats.MIN_IMAGES` images in a seed carries the small-data
warning, as a small test domain does. Over a single stratum the values equal the overall ones.
PLCC within a stratum uses the cell's logistic mapping, fitted once on all its images (as the
overall PLCC does); where that mapping is flat over a stratum's scores, PLCC is undefined (NaN).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from diqa_bench import stats
from diqa_bench.report.stored import Cell, StoredRun, load_run

COLUMNS = ("distortion", "level", "reference_kind", "dataset")
STATISTICS = ("SROCC", "PLCC")
TABLE_COLUMNS = ["test", "method", "train", "column", "stratum", "statistic", "value", "ci_low", "ci_high", "n", "groups", "seeds",
                 "warning"]
WORST, GAP = "worst", "gap (best - worst)"


def stratum_labels(run: StoredRun, cell: Cell, column: str) -> np.ndarray:
    """The stratum of every image of a cell for one column ('' where unknown)."""
    if column == "distortion":
        return np.asarray(cell.distortion, str)
    if column == "level":
        return np.asarray(cell.level, str)
    if column == "dataset":
        return np.asarray([d for d, _ in cell.images], str)
    if column == "reference_kind":
        synthetic = {d["name"]: d.get("synthetic") for dom in run.run_info.get("domains", {}).values() for d in dom.get("datasets", [])}
        kind = {True: "synthetic", False: "real"}
        return np.asarray([kind.get(synthetic.get(d), "") for d, _ in cell.images], str)
    if column in cell.attrs:  # a metadata column a dataset declared (metadata_columns)
        return cell.attrs[column]
    return np.full(len(cell.images), "", str)  # declared by no dataset of this domain: no strata here


def _subsample(sample: stats.Sample, mask: np.ndarray) -> stats.Sample:
    """The images of ``mask`` as a sample of their own, keeping the cell's mapping (fitted once on
    all its images, as for the overall PLCC)."""
    codes = np.unique(sample.codes[mask], return_inverse=True)[1].reshape(-1)  # in the cell's group order: all groups keep their codes
    return stats.Sample(sample.score[mask], sample.mos[mask], codes, sample.mapping)


def strata(folder_or_run: Path | StoredRun, columns=None, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None):
    """Tidy DataFrame (:data:`TABLE_COLUMNS`) of every stratum's statistics, plus per entry and
    column a ``worst`` row (its ``stratum`` column reads ``worst: <name>``) and a ``gap`` row per
    statistic. ``columns`` default to the run's config ``strata``."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    columns = list(columns if columns is not None else run.run_info.get("config", {}).get("strata") or [])
    bootstrap, confidence, seed = run.bootstrap_settings(bootstrap, confidence, seed)
    rows = []
    cells = run.cells()
    entries: dict[tuple[str, str, str], list[str]] = {}
    for method, train, test, s in cells:
        entries.setdefault((method, train, test), []).append(s)
    tests = run.test_domains()
    for (method, train, test), seeds in entries.items():
        if test not in tests:
            continue
        for column in columns:
            # per stratum and statistic: per-seed values and replicates
            values: dict[str, dict[str, list]] = {}
            sizes: dict[str, list[tuple[int, int]]] = {}
            for s in seeds:
                cell = cells[(method, train, test, s)]
                sample = cell.sample()
                labels = stratum_labels(run, cell, column)
                for stratum in sorted({v for v in labels if v not in ("", "nan")}, key=_natural):
                    mask = labels == stratum
                    sub = _subsample(sample, mask)
                    sizes.setdefault(stratum, []).append((sub.n, sub.n_groups))
                    w = None
                    if bootstrap > 0 and sub.n >= 3 and sub.n_groups > 1:
                        own = sorted(set(sample.codes[mask].tolist()))
                        stream = () if len(own) == sample.n_groups else (zlib.crc32(" ".join(map(str, own)).encode()),)
                        w = stats.group_weights(sub.codes, bootstrap, stats.seed_rng(seed, stats.draw_seed(s, run.shared_draws), *stream))
                    for name in STATISTICS:
                        point = float(stats.statistic(name, sub)[0]) if sub.n >= 3 else float("nan")
                        reps = stats.statistic(name, sub, w) if w is not None else np.full(max(bootstrap, 1), np.nan)
                        values.setdefault(stratum, {}).setdefault(name, []).append((point, reps))
            if not values:
                continue
            means: dict[str, dict[str, tuple[float, np.ndarray]]] = {}
            mean_size = {k: (int(round(np.mean([n for n, _ in v]))), int(round(np.mean([g for _, g in v])))) for k, v in sizes.items()}
            warned = {k: stats.data_warning(min(n for n, _ in v), min(g for _, g in v)) for k, v in sizes.items()}
            for stratum, by_name in values.items():
                warning = warned[stratum]
                for name, parts in by_name.items():
                    points = [p for p, _ in parts if np.isfinite(p)]
                    mean = float(np.mean(points)) if len(points) == len(parts) else float("nan")
                    rep = stats.seed_mean([r for _, r in parts])
                    means.setdefault(name, {})[stratum] = (mean, rep)
                    lo, hi = stats.quantile_ci(rep, confidence) if bootstrap > 0 else (float("nan"), float("nan"))
                    rows.append(dict(test=test, method=method, train=train, column=column, stratum=stratum, statistic=name, value=mean,
                                     ci_low=lo, ci_high=hi, n=mean_size[stratum][0], groups=mean_size[stratum][1], seeds=len(parts),
                                     warning=warning))
            srocc = {k: v for k, v in means.get("SROCC", {}).items() if np.isfinite(v[0])}
            if len(srocc) < 2:
                continue
            worst = min(srocc, key=lambda k: srocc[k][0])
            best = max(srocc, key=lambda k: srocc[k][0])
            for name in STATISTICS:
                (vw, rw), (vb, rb) = means[name][worst], means[name][best]
                lo, hi = stats.quantile_ci(rb - rw, confidence) if bootstrap > 0 else (float("nan"), float("nan"))
                lo_w, hi_w = stats.quantile_ci(rw, confidence) if bootstrap > 0 else (float("nan"), float("nan"))
                common = dict(test=test, method=method, train=train, column=column, statistic=name, seeds=len(seeds))
                rows.append(dict(common, stratum=f"{WORST}: {worst}", value=vw, ci_low=lo_w, ci_high=hi_w, n=mean_size[worst][0],
                                 groups=mean_size[worst][1], warning=warned[worst]))
                rows.append(dict(common, stratum=f"{GAP}: {best} - {worst}", value=vb - vw, ci_low=lo, ci_high=hi, n=0, groups=0,
                                 warning=""))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _natural(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _cell(value: float, lo: float, hi: float, warning: str = "") -> str:
    if value != value:
        return "n/a"
    text = f"{value:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else "")
    return text + (" ⚠" if warning else "")


def strata_rows(table, test: str, column: str, statistic: str = "SROCC") -> tuple[list[str], list[list[str]]]:
    """Header and rows of one test domain's strata table for one column: a row per entry, a
    column per stratum ([CI]; ⚠ a stratum with too little data), then the worst stratum and the
    gap between the best and the worst with its interval."""
    if table is None or not len(table):
        return [], []
    sub = table[(table["test"] == test) & (table["column"] == column) & (table["statistic"] == statistic)]
    if not len(sub):
        return [], []
    plain = sub[~sub["stratum"].str.startswith((WORST + ":", GAP + ":"))]
    names = list(dict.fromkeys(plain["stratum"]))
    header = ["Method @ train set"] + [f"{statistic} {column} = {n}" for n in names] + ["Worst stratum", "Gap (best - worst) [CI]"]
    rows = []
    for (method, train), g in sub.groupby(["method", "train"], sort=False):
        by = {r.stratum: r for r in g.itertuples(index=False)}
        row = [f"{method} @ {train}"]
        for n in names:
            r = by.get(n)
            row.append(_cell(r.value, r.ci_low, r.ci_high, str(r.warning or "") not in ("", "nan")) if r is not None else "")
        worst = next((r for k, r in by.items() if k.startswith(WORST + ":")), None)
        gap = next((r for k, r in by.items() if k.startswith(GAP + ":")), None)
        row.append(f"{worst.stratum.split(': ', 1)[1]} ({worst.value:.3f})" if worst is not None else "")
        row.append(_cell(gap.value, gap.ci_low, gap.ci_high) if gap is not None else "")
        rows.append(row)
    return header, rows


def read_strata(folder: Path):
    """The stored strata table, or None when the folder has none."""
    import pandas as pd

    path = Path(folder) / "strata.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype={"method": str, "train": str, "test": str, "column": str, "stratum": str, "warning": str},
                       keep_default_na=False, na_values={c: [""] for c in ("value", "ci_low", "ci_high")})
