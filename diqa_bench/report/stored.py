"""Reading a stored run back for the reports: scores.csv, metrics.csv and run.json only.

Nothing here runs a method. Statistics the reports need beyond metrics.csv (significance, run
comparison, per-distortion breakdown) are recomputed from the stored per-image scores, with the
same direction rules as :mod:`diqa_bench.stats`: a lower-is-better method's scores are negated (no
abs()), DMOS-style labels are negated, and a test domain that mixes datasets is judged on the
per-dataset normalised MOS (0-1, higher better), as :func:`diqa_bench.metrics.eval_mos` does. Content groups come from
scores.csv's ``group`` column; a folder stored before it existed makes each image its own group.
Every resampling goes through :mod:`diqa_bench.stats` (one implementation for tables and reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench import stats
from diqa_bench.datasets import scale_mos
from diqa_bench.files import read_csv
from diqa_bench.errors import UserError
from diqa_bench.pairs import pair_domains
from diqa_bench.store import load_results, numeric_columns
from diqa_bench.tables import SCORE_COLUMNS

CellKey = tuple[str, str, str, str]  # (method label, train set, test domain, split seed)


@dataclass
class Cell:
    """One method x train x test x seed cell, its images in a fixed order (sorted by dataset, id)."""

    images: list[tuple[str, str]]  # (dataset, image id)
    score: np.ndarray  # raw, as the method gave it
    aligned_score: np.ndarray  # negated for lower-is-better methods: higher = better everywhere
    mos: np.ndarray  # raw MOS (what scatter plots show on one-dataset domains)
    eval_mos: np.ndarray  # the MOS the cell is judged against, higher = better
    distortion: np.ndarray
    level: np.ndarray
    lower_better: bool
    attrs: dict[str, np.ndarray] = field(default_factory=dict)  # declared metadata columns of scores.csv, as text
    groups: np.ndarray | None = None  # content-group label per image (None: each image its own group)
    bad: np.ndarray | None = None  # with acceptability: which images are unacceptable (None: the run declares no threshold)
    cut: float = float("nan")  # the gate's stored score threshold, in the method's units (NaN: none stored)

    def sample(self) -> "stats.Sample":
        """The cell as a :class:`diqa_bench.stats.Sample` (mapping fitted on all its images; with
        acceptability, its unacceptable flags and its own stored cut, direction-aligned)."""
        if not hasattr(self, "_sample"):
            cut = -self.cut if self.lower_better else self.cut
            self._sample = stats.Sample.build(self.aligned_score, self.eval_mos, self.groups, bad=self.bad,
                                              cut=cut if self.bad is not None else None)
        return self._sample


def paired_samples(a: Cell, b: Cell) -> tuple["stats.Sample", "stats.Sample"] | None:
    """The images both cells scored, as two samples with the same images, order and group codes
    (each keeps the mapping fitted on all its own images, and its own acceptability flags and
    gate cut); None when fewer than 3 are common."""
    index_b = {k: i for i, k in enumerate(b.images)}
    pairs = [(i, index_b[k]) for i, k in enumerate(a.images) if k in index_b]
    if len(pairs) < 3:
        return None
    pa, pb = (np.array(x, int) for x in zip(*pairs))
    labels = a.groups[pa] if a.groups is not None else None
    codes = stats.group_codes(labels, len(pa))
    sa, sb = a.sample(), b.sample()
    return (stats.Sample(sa.score[pa], sa.mos[pa], codes, sa.mapping, None if sa.bad is None else sa.bad[pa], sa.cut),
            stats.Sample(sb.score[pb], sb.mos[pb], codes, sb.mapping, None if sb.bad is None else sb.bad[pb], sb.cut))


@dataclass
class StoredRun:
    folder: Path
    metrics: Any  # pandas DataFrame (metrics.csv)
    scores: Any  # pandas DataFrame (scores.csv)
    run_info: dict[str, Any]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.run_info.get("protocol", {})

    def bootstrap_settings(self, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None) -> tuple[int, float, int]:
        """(bootstrap size, confidence, stats seed): the given ones, else the run's protocol."""
        protocol = self.protocol
        return (bootstrap or protocol.get("bootstrap") or 1000, confidence or protocol.get("confidence", 0.95),
                protocol.get("stats_seed", 0) if seed is None else seed)

    @property
    def shared_draws(self) -> bool:
        """Cross-validation: every repetition tests the same images, so all get the same group draws."""
        return self.protocol.get("folds") is not None

    def adjustment(self, adjust: str | None = None) -> str:
        """The multiplicity adjustment of the run's tables: the given one, else the run's protocol,
        else its config's ``statistics.adjust``, else Holm (the default)."""
        if adjust:
            return adjust
        stats_cfg = self.run_info.get("config", {}).get("statistics") or {}
        return self.protocol.get("adjust") or stats_cfg.get("adjust") or "holm"

    def test_domains(self) -> list[str]:
        skip = pair_domains(self.run_info)  # paired-preference domains have no MOS: their table is diqa_bench.pairs'
        declared = self.run_info.get("config", {}).get("test_domains")
        if declared:
            return [d for d in declared if d not in skip]
        return sorted(set(self.metrics["test"]) - skip) if len(self.metrics) else []

    def domain_datasets(self, test: str) -> list[dict[str, Any]]:
        return [d for d in self.run_info.get("domains", {}).get(test, {}).get("datasets", []) if not d.get("error")]

    def mos_label(self, test: str) -> str:
        """Axis label of the MOS a test domain is judged on, with its scale and origin."""
        info = self.run_info.get("domains", {}).get(test, {})
        sets = self.domain_datasets(test)
        pseudo = "pseudo-MOS" if info.get("pseudo_mos") else "MOS"
        if len(sets) == 1:
            rng = sets[0].get("mos_range") or []
            kind = "DMOS" if sets[0].get("lower_better") else pseudo
            return f"{kind} ({rng[0]:g}-{rng[1]:g})" if len(rng) == 2 else kind
        return f"normalised {pseudo} (0-1)"

    def cells(self) -> dict[CellKey, Cell]:
        """Every stored cell with its aligned arrays (built once per run)."""
        if not hasattr(self, "_cells"):
            self._cells = _build_cells(self)
        return self._cells

    def aggregate(self, statistic: str = "SROCC"):
        """metrics.csv rows aggregated over seeds for one statistic."""
        m = self.metrics
        return m[(m["seed"].astype(str) == "all") & (m["statistic"] == statistic)]


def load_run(folder: Path) -> StoredRun:
    """Read a results folder; one-line errors when it is not one."""
    folder = Path(folder)
    metrics, run_info = load_results(folder)
    if not (folder / "scores.csv").is_file():
        raise UserError(f"{folder}: no scores.csv here; the reports are built from the stored per-image scores")
    scores = read_scores(folder / "scores.csv")
    _directions(run_info)  # fail now, before any figure is drawn, when the run predates the key
    return StoredRun(folder, metrics, scores, run_info)


def read_scores(path: Path):
    """A stored scores.csv, every label column as text."""

    import pandas as pd

    extra = {c: str for c in pd.read_csv(path, nrows=0).columns if c not in SCORE_COLUMNS}  # declared metadata columns: text
    scores = read_csv(path, dtype={"image": str, "dataset": str, "domain": str, "method": str, "train": str,
                                   "seed": str, "distortion": str, "level": str, "group": str, **extra}, keep_default_na=False,
                      na_values={"score": [""], "mos": [""]})
    numeric_columns(scores, ("score", "mos", "mos_norm"), path)
    return scores


def _directions(run_info: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """(method label, train) -> lower_better, from run.json's cells."""
    out: dict[tuple[str, str], bool] = {}
    for c in run_info.get("cells", []):
        if "lower_better" not in c:
            raise UserError("run.json cells carry no 'lower_better': this run was stored by an older diqa-bench; re-run it to build reports")
        out[(c["method"], c["train"])] = bool(c["lower_better"])
    return out


def _eval_mos(run: StoredRun, rows) -> np.ndarray:
    """The MOS the run judged these rows on: the rule of :func:`diqa_bench.results.compute_metrics`
    (raw MOS for one dataset, per-dataset normalised MOS for several), on stored rows."""
    test = rows["domain"].iloc[0]
    sets = {d["name"]: d for d in run.domain_datasets(test)}
    mos = rows["mos"].to_numpy(float)
    if rows["dataset"].nunique() <= 1 and len(sets) <= 1:
        lower = bool(sets.get(rows["dataset"].iloc[0], {}).get("lower_better", False))
        return -mos if lower else mos
    if "mos_norm" in rows.columns:
        return rows["mos_norm"].to_numpy(float)
    out = np.empty(len(rows))
    how = run.protocol.get("normalise_mos", "range")
    for name, idx in rows.groupby("dataset").indices.items():
        info = sets.get(name, {})
        # Without a declared range, z-score over the images of this dataset present in the cell.
        mode = "range" if how == "range" and info.get("mos_range") else "zscore"
        out[idx] = scale_mos(mos[idx], info.get("mos_range"), bool(info.get("lower_better")), mode)
    return out


def _unacceptable(run: StoredRun, rows) -> np.ndarray | None:
    """Which rows' images are unacceptable, by the rule of :func:`diqa_bench.results.compute_metrics`
    (raw MOS against the run's threshold, in each dataset's own direction); None without one."""
    threshold = run.protocol.get("acceptability")
    if threshold is None:
        return None
    test = rows["domain"].iloc[0]
    lower = {d["name"]: bool(d.get("lower_better")) for d in run.domain_datasets(test)}
    return stats.unacceptable(rows["mos"].to_numpy(float), float(threshold), [lower.get(n, False) for n in rows["dataset"]])


def _thresholds(run: StoredRun) -> dict[CellKey, float]:
    """The gate cut each cell chose on its train split: metrics.csv's per-seed THRESHOLD rows, else
    run.json's cells[].threshold."""
    out = {(c["method"], c["train"], c["test"], str(c["seed"])): float(c["threshold"])
           for c in run.run_info.get("cells", []) if c.get("threshold") is not None}
    m = run.metrics
    if len(m):
        rows = m[(m["statistic"] == "THRESHOLD") & (m["seed"].astype(str) != "all")]
        out.update({(r.method, r.train, r.test, str(r.seed)): float(r.value) for r in rows.itertuples(index=False)})
    return out


def _build_cells(run: StoredRun) -> dict[CellKey, Cell]:
    directions = _directions(run.run_info)
    cuts = _thresholds(run)
    scores = run.scores
    skip = pair_domains(run.run_info)  # judged on pairs, not on a MOS (diqa_bench.pairs)
    cells: dict[CellKey, Cell] = {}
    if scores.empty:
        return cells
    for (method, train, test, seed), rows in scores.groupby(["method", "train", "domain", "seed"], sort=False):
        if test in skip:
            continue
        rows = rows.sort_values(["dataset", "image"], kind="stable").reset_index(drop=True)
        lower = directions.get((method, train), False)
        score = rows["score"].to_numpy(float)
        cells[(method, train, test, str(seed))] = Cell(
            images=list(zip(rows["dataset"], rows["image"])), score=score, aligned_score=-score if lower else score,
            mos=rows["mos"].to_numpy(float), eval_mos=_eval_mos(run, rows), distortion=rows["distortion"].to_numpy(str),
            level=rows["level"].to_numpy(str), lower_better=lower,
            attrs={c: rows[c].astype(str).to_numpy(str) for c in rows.columns if c not in SCORE_COLUMNS},
            groups=(rows["dataset"] + "/" + rows["image"]).to_numpy(str) if "group" not in rows.columns else rows["group"].to_numpy(str),
            bad=_unacceptable(run, rows), cut=cuts.get((method, train, test, str(seed)), float("nan")),
        )
    return cells


def srocc(score: np.ndarray, mos: np.ndarray) -> float:
    """Spearman correlation of two aligned arrays (NaN when one is constant)."""
    sample = stats.Sample(np.asarray(score, float), np.asarray(mos, float), np.arange(len(score)), stats.Mapping("linear", [1.0, 0.0]))
    return float(stats.statistic("SROCC", sample)[0])


def safe_name(text: str) -> str:
    """A file-name-safe version of a domain or method label."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))

