"""Reading a stored run back for the reports: scores.csv, metrics.csv and run.json only.

Nothing here runs a method. Statistics the reports need beyond metrics.csv (significance, run
comparison, per-distortion breakdown) are recomputed from the stored per-image scores, with the
same direction rules as :mod:`diqa_bench.stats`: a lower-is-better method's scores are negated (no
abs()), DMOS-style labels are negated, and a test domain that mixes datasets is judged on the
per-dataset normalised MOS (0-1, higher better), as the runner does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench.errors import UserError

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


@dataclass
class StoredRun:
    folder: Path
    metrics: Any  # pandas DataFrame (metrics.csv)
    scores: Any  # pandas DataFrame (scores.csv)
    run_info: dict[str, Any]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.run_info.get("protocol", {})

    def test_domains(self) -> list[str]:
        from diqa_bench.pairs import pair_domains

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
    import pandas as pd

    from diqa_bench.results import load_results

    folder = Path(folder)
    metrics, run_info = load_results(folder)
    if not (folder / "scores.csv").is_file():
        raise UserError(f"{folder}: no scores.csv here; the reports are built from the stored per-image scores")
    scores = pd.read_csv(folder / "scores.csv", dtype={"image": str, "dataset": str, "domain": str, "method": str, "train": str,
                                                        "seed": str, "distortion": str, "level": str}, keep_default_na=False,
                         na_values={"score": [""], "mos": [""]})
    _directions(run_info)  # fail now, before any figure is drawn, when the run predates the key
    return StoredRun(folder, metrics, scores, run_info)


def _directions(run_info: dict[str, Any]) -> dict[tuple[str, str], bool]:
    """(method label, train) -> lower_better, from run.json's cells."""
    out: dict[tuple[str, str], bool] = {}
    for c in run_info.get("cells", []):
        if "lower_better" not in c:
            raise UserError("run.json cells carry no 'lower_better': this run was stored by an older diqa-bench; re-run it to build reports")
        out[(c["method"], c["train"])] = bool(c["lower_better"])
    return out


def _eval_mos(run: StoredRun, rows) -> np.ndarray:
    """The MOS the runner judged these rows on (see diqa_bench.results._eval_mos)."""
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
        values = mos[idx]
        if how == "range" and info.get("mos_range"):
            low, high = info["mos_range"]
            norm = (values - low) / (high - low)
            norm = 1.0 - norm if info.get("lower_better") else norm
        else:  # z-score over the images of this dataset present in the cell
            sd = values.std()
            norm = (values - values.mean()) / (sd if sd > 0 else 1.0)
            norm = -norm if info.get("lower_better") else norm
        out[idx] = norm
    return out


def _build_cells(run: StoredRun) -> dict[CellKey, Cell]:
    from diqa_bench.pairs import pair_domains

    directions = _directions(run.run_info)
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
        )
    return cells


def srocc_rows(score: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of two [B, n] arrays (NaN where a row is constant)."""
    from scipy import stats

    rs = stats.rankdata(score, axis=1)
    rm = stats.rankdata(mos, axis=1)
    rs = rs - rs.mean(1, keepdims=True)
    rm = rm - rm.mean(1, keepdims=True)
    den = np.sqrt((rs * rs).sum(1) * (rm * rm).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rs * rm).sum(1) / den


def srocc(score: np.ndarray, mos: np.ndarray) -> float:
    return float(srocc_rows(np.asarray(score, float)[None], np.asarray(mos, float)[None])[0])


def quantile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    v = np.asarray(samples, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def two_sided_p(samples: np.ndarray) -> float:
    """Bootstrap p-value of "the difference is 0": twice the smaller tail beyond 0 (capped at 1)."""
    v = np.asarray(samples, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan")
    tail = min((v <= 0).sum(), (v >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (len(v) + 1)))


def safe_name(text: str) -> str:
    """A file-name-safe version of a domain or method label."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))

