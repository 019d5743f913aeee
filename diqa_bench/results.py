"""Writing a run's results: from cell outcomes to every file of its results folder.

:func:`write_all` computes the statistics (:mod:`diqa_bench.metrics`, :mod:`diqa_bench.pairs`;
reused from the derived cache when the same scores were seen before), writes scores.csv,
metrics.csv / metrics.json, run.json and the acceptability thresholds, then renders the
leaderboard and the report (:func:`render_leaderboard`). Where the files go and how a finished
folder replaces the old one: :mod:`diqa_bench.store`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from diqa_bench import derived, pairs, extensions
from diqa_bench.files import atomic_write, frame_csv, json_rows, read_csv
from diqa_bench.leaderboard import render_markdown
from diqa_bench.metrics import cell_records, compute_metrics, protocol_statistics, scores_frame
from diqa_bench.pair_files import write_pair_files
from diqa_bench.report import build_report, build_tables
from diqa_bench.report.ablation import read_ablation
from diqa_bench.report.agreement import read_agreement
from diqa_bench.report.significance import WORSE_MARK
from diqa_bench.report.strata import read_strata
from diqa_bench.report.transfer import read_transfer
from diqa_bench.store import RESULT_FILES, VALIDATION_DIR, load_results
from diqa_bench.thresholds import RUN_THRESHOLDS, write_run_thresholds, write_thresholds  # noqa: F401 - also imported from here


def write_validation(out: Path, outcomes, config) -> tuple[str, list[dict[str, Any]]]:
    """The validation phase's scores.csv, metrics.csv and metrics.json in ``out/validation``;
    returns the scores.csv text and the phase's cell records (for run.json)."""
    folder = Path(out) / VALIDATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    scores_csv = scores_frame(outcomes).to_csv(index=False)
    details: dict = {}
    metrics = compute_metrics(outcomes, config, details)
    atomic_write(folder / "scores.csv", scores_csv)
    atomic_write(folder / "metrics.csv", metrics.to_csv(index=False))
    atomic_write(folder / "metrics.json", json.dumps(json_rows(metrics), indent=1))
    return scores_csv, cell_records(outcomes, details)


def write_all(out: Path, run_info: dict[str, Any], outcomes, config, reports: bool = True, validation=None) -> dict[str, Path]:
    """Write every result file (and, with ``reports``, the figures and report.html); returns the
    main files' paths. ``validation``: the validation phase's outcomes (splits.validation), written
    apart (:func:`write_validation`) and read only by the ablation table."""
    out.mkdir(parents=True, exist_ok=True)
    regular, paired = pairs.partition(outcomes)  # paired-preference cells have their own statistic
    scores = scores_frame(outcomes)
    scores_csv = frame_csv(scores)
    # everything the statistics read that scores.csv does not hold: statuses, the train split's
    # scores (acceptability threshold) and the pairs of a paired-preference domain
    cells = [(o.method, o.train, o.test, o.seed, o.status, o.reason, list(o.train_scores), list(o.train_bad), repr(o.pairs)) for o in outcomes]
    cached = derived.entry(run_info.get("cache_dir"), "metrics", derived.key(scores_csv, cells, config.raw, run_info.get("statistics")))
    stored = _cached_metrics(cached)
    if stored is None:
        details: dict = {}
        pair_metrics, pair_cells = pairs.evaluate(paired, config)
        metrics = pairs.add_metrics(compute_metrics(regular, config, details), pair_metrics)
        metrics_csv, metrics_json = frame_csv(metrics), json.dumps(json_rows(metrics), indent=1)
        derived.store(cached, {"metrics.csv": metrics_csv, "metrics.json": metrics_json,
                               "details.json": json.dumps({"details": [[list(k), v] for k, v in details.items()], "pair_cells": pair_cells}, default=str)})
    else:  # the same scores, cells, config and code as a run before: the same statistics
        metrics, (metrics_csv, metrics_json, details, pair_cells) = None, stored
    run_info = {**run_info, "protocol": {**run_info.get("protocol", {}), **protocol_statistics()}}
    run_info = {**run_info, "cells": cell_records(outcomes, details), **({"pair_cells": pair_cells} if paired else {})}
    run_info["failed_cells"] = [c for c in run_info["cells"] if c["status"] != "ok"]
    validation_scores = None
    if validation is not None and "validation" in run_info:
        validation_scores, val_cells = write_validation(out, validation, config)
        run_info["validation"] = {**run_info["validation"], "cells": val_cells, "failed_cells": [c for c in val_cells if c["status"] != "ok"]}
    paths = {key: out / name for key, name in RESULT_FILES.items()}
    atomic_write(paths["scores"], scores_csv)
    atomic_write(paths["metrics"], metrics_csv)
    atomic_write(paths["metrics_json"], metrics_json)
    atomic_write(paths["run"], json.dumps(run_info, indent=2, default=str))
    if config.acceptability is not None:
        write_thresholds(out, outcomes, details)
        write_run_thresholds(out, outcomes, details)
    paths.update(write_pair_files(out, paired))
    ratings = out / "ratings.csv"  # per-rater data (diqa_bench.report.agreement), written before

    figures = [(spec.name, spec.caption, spec.section, plugin) for spec, plugin in extensions.in_use("figures") or []]  # a plugin's figure joins the key
    key_parts = [figures, scores_csv, metrics_csv, run_info.get("domains"), config.raw, ratings.read_text() if ratings.is_file() else None] + ([validation_scores] if validation_scores is not None else [])
    report_cache = derived.entry(run_info.get("cache_dir"), "report", derived.key(*key_parts))
    render_leaderboard(out, metrics, run_info, build_figures=reports, cache=report_cache)
    return paths


def _cached_metrics(entry: Path | None):
    """(metrics.csv text, metrics.json text, details, pair_cells) of a cached computation, or None."""
    if not derived.hit(entry):
        return None
    try:
        saved = json.loads(derived.read_text(entry, "details.json"))
        details = {(m, t, te, int(seed)): v for (m, t, te, seed), v in saved["details"]}
        return derived.read_text(entry, "metrics.csv"), derived.read_text(entry, "metrics.json"), details, saved["pair_cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry: compute again


def render_leaderboard(out: Path, metrics=None, run_info=None, build_figures: bool = True, cache: Path | None = None) -> str:
    """(Re-)render LEADERBOARD.md of a results folder from its stored files. The paired tables
    (significance.csv, transfer.csv/json) are recomputed from scores.csv; with ``build_figures``
    also the figures and report.html. A report that cannot be built is a warning, never a lost
    leaderboard: the tables then come from the files already stored, if any."""
    if metrics is None or run_info is None:
        metrics, run_info = load_results(out)
    marks, figures = None, None
    if len(metrics):
        try:
            if build_figures:
                written = build_report(out, cache)
                figures = sorted(str(p.relative_to(out)) for p in written if p.suffix == ".png")
            else:
                build_tables(out, cache)
        except Exception as exc:  # figures are a bonus; the tables must still be written
            warnings.warn(f"report {'figures' if build_figures else 'tables'} not written: {type(exc).__name__}: {exc}")
    sig = out / "significance.csv"
    if sig.is_file():
        df = read_csv(sig, dtype={"seed": str, "method": str, "train": str, "test": str})
        pooled = df[df["seed"] == "all"]
        marks = {(r.method, r.train, r.test): (WORSE_MARK if r.worse else "") for r in pooled.itertuples(index=False)}
    if figures is None and (out / "figures").is_dir():
        figures = sorted(str(p.relative_to(out)) for p in (out / "figures").glob("*.png"))
    text = render_markdown(metrics, run_info, marks=marks, figures=figures, transfer=read_transfer(out), ablation=read_ablation(out),
                           strata=read_strata(out), agreement=read_agreement(out))
    atomic_write(out / "LEADERBOARD.md", text)
    return text


