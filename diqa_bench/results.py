"""Turning cell outcomes into the stored results of a run, written atomically.

Files in the output folder:
- ``scores.csv``: one row per image per cell (the raw material; every table derives from it);
- ``metrics.csv`` / ``metrics.json``: tidy, one row per method x train x test x seed x statistic,
  plus rows with ``seed = "all"`` aggregated across split seeds (mean, std, pooled-bootstrap CI);
- ``run.json``: what ran, on what, with which versions, and every cell's status;
- ``LEADERBOARD.md``: rendered from metrics.csv and run.json (see :mod:`diqa_bench.leaderboard`).

A run writes into a hidden sibling folder and :func:`publish_results` swaps it in when the run is
complete, so an interrupted or crashed re-run never replaces finished results with fewer cells.
One run at a time per folder: :func:`results_lock`.
"""

from __future__ import annotations

import dataclasses

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench import stats
from diqa_bench.files import atomic_write, current_umask, frame_csv, read_csv  # noqa: F401 - also imported from here
from diqa_bench.thresholds import RUN_THRESHOLDS, train_accept_rate, write_run_thresholds, write_thresholds  # noqa: F401 - also imported from here

METRIC_COLUMNS = ["method", "train", "test", "seed", "statistic", "value", "ci_low", "ci_high", "n", "std", "groups"]
SCORE_COLUMNS = ["image", "dataset", "domain", "method", "train", "seed", "score", "mos", "mos_norm", "group", "distortion", "level", "path"]
AGGREGATE_SEED = "all"
# The acceptability row besides stats.GATE_STATISTICS: the score cut chosen on the train split, in
# the method's units; fixed for the test set, so it has no interval.
THRESHOLD = "THRESHOLD"
# The validation phase's scores.csv, metrics.csv and metrics.json (splits.validation): kept apart
# from the main tables, so no leaderboard row, †, threshold or gate ever reads them.
VALIDATION_DIR = "validation"


def results_lock(out: Path):
    """Hold an exclusive lock on the results folder ``out`` (a lock file beside it), or raise a
    one-line UserError when another run holds it. Release it with ``.release()``."""
    from filelock import FileLock, Timeout

    from diqa_bench.errors import UserError

    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(out.parent / f".{out.name}.lock"), timeout=0)
        lock.acquire()
    except Timeout:
        raise UserError(f"another diqa-bench run is writing to {out}; wait for it to finish or choose another --out") from None
    except OSError as exc:
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return lock


# The file a run writes into every results folder (and <out>.partial). A run replaces a folder only
# when it holds this file, or nothing at all: a folder of the user's that merely looks like results
# (a run.json, models/, figures/) is never deleted.
RESULTS_MARKER = ".diqa-bench-results"
MARKER_TEXT = "diqa-bench results"


def is_results_folder(folder: Path) -> bool:
    """True when ``folder`` was written by a diqa-bench run (it holds the marker file)."""
    marker = Path(folder) / RESULTS_MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            return False
        with open(marker, encoding="utf-8", errors="replace") as f:
            return f.read(len(MARKER_TEXT)) == MARKER_TEXT
    except OSError:
        return False


def replaceable(folder: Path) -> bool:
    """A path a run may put its results at: nothing there, an empty folder, or a marked one."""
    folder = Path(folder)
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    try:
        return is_results_folder(folder) or not any(folder.iterdir())
    except OSError:
        return False


def _refuse_unless_replaceable(folder: Path, why: str = "") -> None:
    from diqa_bench.errors import UserError

    if replaceable(folder):
        return
    if not folder.is_dir():
        raise UserError(f"cannot write results to {folder}{why}: it exists and is not a folder")
    raise UserError(f"cannot write results to {folder}{why}: it holds files but is no results folder written by diqa-bench "
                    f"(no {RESULTS_MARKER} file in it), and a run replaces the whole folder; choose a new or empty one "
                    "(results of an older diqa-bench: delete the folder or move it aside first)")


def holds_finished_results(folder: Path) -> bool:
    """A marked results folder of a run that was not interrupted."""
    if not is_results_folder(folder) or not (Path(folder) / "run.json").is_file():
        return False
    try:
        return not json.loads((Path(folder) / "run.json").read_text()).get("interrupted", False)
    except (OSError, ValueError, AttributeError):
        return False


def scored_cells(folder: Path) -> int:
    """How many cells of the results in ``folder`` have scores (0 when run.json cannot be read)."""
    try:
        cells = json.loads((Path(folder) / "run.json").read_text()).get("cells") or []
        return sum(isinstance(c, dict) and c.get("status") == "ok" for c in cells)
    except (OSError, ValueError, AttributeError):
        return 0


def partial_folder(out: Path) -> Path:
    """Where an interrupted run goes when ``out`` holds finished results."""
    return out.with_name(out.name + ".partial")


def check_results_folder(out: Path) -> None:
    """Refuse, before the lock file beside it is made and before any work, a results folder that a
    run must not replace as a whole: the file system's root, the current folder or one above it."""
    from diqa_bench.errors import UserError

    out = Path(os.path.abspath(out))
    if out == out.parent:
        raise UserError(f"cannot write results to {out}: a run replaces its results folder as a whole; choose a folder such as results/NAME")
    here = Path(os.path.abspath(os.curdir))
    if out == here or out in here.parents:
        raise UserError(f"cannot write results to {out}: it is the current folder{'' if out == here else ' or holds it'}, and a run replaces "
                        "its results folder as a whole; choose a folder below it, such as results/NAME")
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write results to {out}: it exists and is not a folder")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` for this run's results, marked as a results folder; also
    checks, before any work, that results can be written there: ``out`` (and ``<out>.partial``,
    should this run be interrupted) must be free, empty or a results folder."""
    from diqa_bench import __version__
    from diqa_bench.errors import UserError

    out = Path(out)
    check_results_folder(out)
    _refuse_unless_replaceable(out)
    if holds_finished_results(out):
        _refuse_unless_replaceable(partial_folder(out), f" (where an interrupted run would write, beside the finished results in {out})")
    stage = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.incomplete-"))
        stage.chmod(0o777 & ~current_umask())
        atomic_write(stage / RESULTS_MARKER, f"{MARKER_TEXT}, format 1\nwritten by diqa-bench {__version__}: a run replaces this whole folder\n")
        return stage
    except OSError as exc:
        if stage is not None:  # a full disk: no empty staging folder is left behind
            shutil.rmtree(stage, ignore_errors=True)
        raise UserError(f"cannot write results to {out}: {exc.strerror or exc}") from None


def publish_results(stage: Path, out: Path, complete: bool) -> Path:
    """Move a run's results from ``stage`` to where they belong and return that folder.

    A complete run replaces ``out`` as a whole (no file of the previous run survives, so nothing
    links stale figures). An interrupted run replaces ``out`` only when ``out`` holds no finished
    results; otherwise it goes to ``<out>.partial`` and the finished results stay as they were.
    Only a folder a run wrote is replaced (checked again here: the user may have made one while
    the run worked); otherwise the results go to a new folder beside it."""
    out = Path(out)
    target = out if complete or not holds_finished_results(out) else partial_folder(out)
    if not replaceable(target):
        target = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{target.name}-"))
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / "results")
        os.replace(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, target)
    return target


def _eval_mos(outcome) -> tuple[np.ndarray, bool]:
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
        mos, mos_lower = _eval_mos(o)
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


EMPTY_FOLD = "has no test images"  # the reason plan.images gives a fold that tests none of a domain's groups


def pool_folds(outcomes: list, folds: int) -> list:
    """Cross-validation: one cell per method x train set x test domain x repetition seed, holding
    the out-of-fold scores of all its folds (every test image once). A fold that tested none of
    the domain's groups adds nothing; any other fold without scores makes the pooled cell fail (or
    not run) with that fold's reason. Statistics are computed on these pooled cells only."""
    from diqa_bench.splits import fold_of_key

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
    import pandas as pd

    # the datasets' declared metadata columns (strata), after the fixed ones: none unless one declares them
    extra = sorted({k for o in outcomes for r in o.images for k in getattr(r, "attrs", {})} - set(SCORE_COLUMNS))
    rows = []
    for o in outcomes:
        for r, s in zip(o.images, o.scores):
            attrs = getattr(r, "attrs", {})
            rows.append((r.id, r.dataset, r.domain, o.method, o.train, o.seed, s, r.mos, r.mos_norm, r.group, r.distortion or "",
                         "" if r.level is None else r.level, r.path, *(attrs.get(k, "") for k in extra)))
    return pd.DataFrame(rows, columns=SCORE_COLUMNS + extra)


def _git_info(where: Path) -> dict[str, Any]:
    try:
        # --no-optional-locks: `git status` would otherwise refresh and rewrite the checkout's index
        git = ["git", "--no-optional-locks"]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=5)
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device: str) -> dict[str, Any]:
    import torch

    from diqa_bench import __version__

    info = {
        "diqa_bench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "git": _git_info(Path(__file__).resolve().parent),
    }
    # From the installed metadata: importing pyiqa (seconds) just for a version string is too dear.
    from importlib import metadata

    try:
        info["pyiqa"] = metadata.version("pyiqa")
    except metadata.PackageNotFoundError:
        info["pyiqa"] = None
    return info


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


def run_info(config, registry, scorer, options, executor, started: str) -> dict[str, Any]:
    """run.json's content for a run started at ``started`` (ISO time): configuration, environment,
    plugins, protocol, the datasets of each domain, screening and skipped images. ``scorer`` is the
    driver's :class:`diqa_bench.scorer.Scorer` (with its plan); ``executor`` the one the run used."""
    from datetime import datetime, timezone

    from diqa_bench import pairs
    from diqa_bench.cache import stable_hash

    plan = scorer.plan
    domains = {}
    for dom, specs in config.domains.items():
        sets = [plan.datasets[s.name] for s in specs if s.name in plan.datasets]
        domains[dom] = {
            "datasets": [
                {"name": d.name, "type": d.type, "images": len(d.records), "content_hash": d.content_hash, "error": d.error,
                 "mos_range": list(getattr(d.obj, "mos_range", ())) if not d.error else None, "pseudo_mos": d.pseudo_mos,
                 "lower_better": bool(getattr(d.obj, "lower_better", False)) if not d.error else None,
                 # which references are real photos and which generated, for the reader of a table
                 "synthetic": bool(getattr(d.obj, "synthetic", False)) if not d.error else None,
                 "references": getattr(d.obj, "references_note", None) if not d.error else None,
                 "notes": list(getattr(d.obj, "notes", None) or []) if not d.error else [],
                 **_data_protocol(d)}
                for d in sets
            ],
            "pseudo_mos": any(d.pseudo_mos for d in sets),
            "synthetic": any(getattr(d.obj, "synthetic", False) for d in sets if not d.error),
            **pairs.domain_info(sets),
        }
    return {
        "schema_version": 1,
        "name": config.name,
        "config_path": str(config.path),
        "config_hash": stable_hash(config.raw),
        "config": config.raw,
        "started_at": started,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(scorer.device),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "error": p.error} for p in registry.plugins.values()],
        "plugin_clashes": list(getattr(registry, "clashes", [])),
        "protocol": {
            "test_ratio": config.test_ratio, "seeds": config.seeds, "use_split_column": config.use_split_column, "split_protocol": config.protocol,
            "bootstrap": config.bootstrap, "confidence": config.confidence, "stats_seed": config.stats_seed, "adjust": config.adjust,
            "folds": config.folds, "fold_count": getattr(scorer.plan, "folds", 0),
            "normalise_mos": config.normalise_mos, "bad_input": config.bad_input, "acceptability": config.acceptability,
            "mapping": "VQEG 4-parameter logistic (linear fallback)", "batch_size": options.batch_size, "workers": scorer.workers, "processes": scorer.processes, "decoder": scorer.decoder,
            "executor": type(executor).__name__ if executor is not None else "LocalExecutor",
        },
        "domains": domains,
        "licences": run_licences(config, registry, plan),
        "fitted_models": fitted_models(options.out),
        "weights": methods_weights(config, registry, scorer),
        "screening": plan.screening,
        "skipped": [dict(dataset=s.dataset, image=s.image, reason=s.reason) for s in _unique_skips(plan.skips + scorer.skips)],
        "cache_dir": str(scorer.cache_dir),
        **_variant_info(config),
    }


def _variant_info(config) -> dict[str, Any]:
    """run.json's ``variants`` (each variant row, its base row and the options it changes) and
    ``validation`` (the share of train groups held out), only for a config that has them."""
    out: dict[str, Any] = {}
    rows = [{"method": m.label, "base": m.base, "options": m.variant} for m in config.methods if m.base]
    if rows:
        out["variants"] = rows
    if config.validation > 0:
        out["validation"] = {"ratio": config.validation, "folder": VALIDATION_DIR,
                             "what": "per split seed, this share of each dataset's train content groups is held out: every row is fitted on "
                                     "the rest and scored on them (validation/metrics.csv); the test phase fits on the whole train split"}
    return out


def methods_weights(config, registry, scorer) -> list[dict[str, Any]]:
    """The weight files (path and sha256) each configured method loads on this machine: their
    content is part of its cache keys, so a table never mixes scores of two weight files."""
    from diqa_bench.cache import weights_used

    ctx = scorer.method_context(0)
    rows = []
    for m in config.methods:
        try:
            files = weights_used(registry.method(m.name)(**m.options), ctx)
        except Exception:  # noqa: BLE001 - the method's cells say why it cannot be created
            files = []
        rows.append({"method": m.label, "files": files})
    return rows


def run_licences(config, registry, plan) -> dict[str, Any]:
    """What each method (by label) and dataset of the run declares of its licences, with the
    source of each fact (:mod:`diqa_bench.licences`), for run.json and the leaderboard."""
    from diqa_bench.licences import facts_of

    methods = {m.label: facts_of(registry.method(m.name), m.options) for m in config.methods if m.name in registry.methods}
    datasets = {}
    for specs in config.domains.values():
        for spec in specs:
            d = plan.datasets.get(spec.name)
            obj = getattr(d, "obj", None)
            options = dict(spec.options)
            if obj is not None and getattr(obj, "root", None) is not None:
                options["root"] = str(obj.root)  # resolved as the dataset read it
            if spec.type in registry.datasets:
                datasets[spec.name] = facts_of(registry.dataset(spec.type), options)
    return {"methods": methods, "datasets": datasets}


def fitted_models(out: Path) -> list[dict[str, Any]]:
    """What each fitted model saved in ``out/models`` ran as (its ``description.json``, see
    :meth:`diqa_bench.methods.Method.describe`), for run.json and the protocol."""
    rows = []
    for path in sorted(Path(out).glob("models/*/seed*/description.json")):
        entry, seed = path.parent.parent.name, path.parent.name[len("seed"):]
        method, _, train = entry.rpartition("@")
        try:
            rows.append({"method": method, "train": train, "seed": int(seed), **json.loads(path.read_text())})
        except (ValueError, OSError):
            continue  # a model folder from elsewhere: nothing to report
    return rows


def _data_protocol(d) -> dict[str, Any]:
    """What a dataset did to its images and splits, for run.json: preprocessing (e.g. pyiqa's
    resize), where its split came from, and how many images each split label holds."""
    from diqa_bench.splits import check_split_labels

    if d.error:
        return {}
    out: dict[str, Any] = {}
    if getattr(d.obj, "preprocessing", None):
        out["preprocessing"] = d.obj.preprocessing
    if getattr(d.obj, "split_source", None):
        out["split_source"] = d.obj.split_source
    labels = check_split_labels(d.records, d.name)
    if set(labels) != {"unsplit"}:
        out["split_counts"] = dict(labels)
    return out


def _unique_skips(skips: list) -> list:
    seen, out = set(), []
    for s in skips:
        if (s.dataset, s.image, s.reason) not in seen:
            seen.add((s.dataset, s.image, s.reason))
            out.append(s)
    return out


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

    from diqa_bench import pairs

    from diqa_bench import derived

    out.mkdir(parents=True, exist_ok=True)
    regular, paired = pairs.partition(outcomes)  # paired-preference cells have their own statistic
    scores = scores_frame(outcomes)
    scores_csv = frame_csv(scores)
    # everything the statistics read that scores.csv does not hold: statuses, the train split's
    # scores (acceptability threshold) and the pairs of a paired-preference domain
    cells = [(o.method, o.train, o.test, o.seed, o.status, o.reason, list(o.train_scores), list(o.train_bad), repr(o.pairs)) for o in outcomes]
    cached = derived.entry(run_info.get("cache_dir"), "metrics", derived.key(scores_csv, cells, config.raw))
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
    paths = {
        "scores": out / "scores.csv",
        "metrics": out / "metrics.csv",
        "metrics_json": out / "metrics.json",
        "run": out / "run.json",
        "leaderboard": out / "LEADERBOARD.md",
    }
    atomic_write(paths["scores"], scores_csv)
    atomic_write(paths["metrics"], metrics_csv)
    atomic_write(paths["metrics_json"], metrics_json)
    atomic_write(paths["run"], json.dumps(run_info, indent=2, default=str))
    if config.acceptability is not None:
        write_thresholds(out, outcomes, details)
        write_run_thresholds(out, outcomes, details)
    paths.update(pairs.write_files(out, paired))
    ratings = out / "ratings.csv"  # per-rater data (diqa_bench.report.agreement), written before
    key_parts = [scores_csv, metrics_csv, run_info.get("domains"), config.raw, ratings.read_text() if ratings.is_file() else None] + ([validation_scores] if validation_scores is not None else [])
    report_cache = derived.entry(run_info.get("cache_dir"), "report", derived.key(*key_parts))
    render_leaderboard(out, metrics, run_info, build_figures=reports, cache=report_cache)
    return paths


def _cached_metrics(entry: Path | None):
    """(metrics.csv text, metrics.json text, details, pair_cells) of a cached computation, or None."""
    from diqa_bench import derived

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
    import warnings

    from diqa_bench.leaderboard import render_markdown
    from diqa_bench.report.transfer import read_transfer

    if metrics is None or run_info is None:
        metrics, run_info = load_results(out)
    marks, figures = None, None
    if len(metrics):
        try:
            if build_figures:
                from diqa_bench.report import build_report

                written = build_report(out, cache)
                figures = sorted(str(p.relative_to(out)) for p in written if p.suffix == ".png")
            else:
                from diqa_bench.report import build_tables

                build_tables(out, cache)
        except Exception as exc:  # figures are a bonus; the tables must still be written
            warnings.warn(f"report {'figures' if build_figures else 'tables'} not written: {type(exc).__name__}: {exc}")
    sig = out / "significance.csv"
    if sig.is_file():
        from diqa_bench.report.significance import WORSE_MARK

        df = read_csv(sig, dtype={"seed": str, "method": str, "train": str, "test": str})
        pooled = df[df["seed"] == "all"]
        marks = {(r.method, r.train, r.test): (WORSE_MARK if r.worse else "") for r in pooled.itertuples(index=False)}
    if figures is None and (out / "figures").is_dir():
        figures = sorted(str(p.relative_to(out)) for p in (out / "figures").glob("*.png"))
    from diqa_bench.report.ablation import read_ablation
    from diqa_bench.report.agreement import read_agreement
    from diqa_bench.report.strata import read_strata

    text = render_markdown(metrics, run_info, marks=marks, figures=figures, transfer=read_transfer(out), ablation=read_ablation(out),
                           strata=read_strata(out), agreement=read_agreement(out))
    atomic_write(out / "LEADERBOARD.md", text)
    return text


def json_rows(df) -> list[dict[str, Any]]:
    rows = df.to_dict(orient="records")
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not np.isfinite(v):
                r[k] = None
    return rows


def load_results(folder: Path):
    """(metrics DataFrame, run_info) of a stored run, for re-rendering without recomputing."""
    folder = Path(folder)
    from diqa_bench.errors import UserError

    for name in ("metrics.csv", "run.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name} here; is this a diqa-bench results folder?")
    try:
        metrics = read_csv(folder / "metrics.csv", dtype={"seed": str})
        run_info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' and json's parse errors are ValueErrors
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{folder}: damaged results ({reason}); re-run the benchmark to rewrite them") from None
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing or not isinstance(run_info, dict):
        what = f"metrics.csv lacks {', '.join(missing)}" if missing else "run.json is not an object"
        raise UserError(f"{folder}: damaged results ({what}); re-run the benchmark to rewrite them")
    numeric_columns(metrics, ("value", "ci_low", "ci_high", "n", "std", "groups"), folder / "metrics.csv")
    return metrics, run_info


def numeric_columns(df, columns, path: Path) -> None:
    """Make ``columns`` of a stored CSV numbers in place; a cell that is not one (``value=abc``, a
    hand edit or a damaged file) is a one-line error naming it, not a traceback in the statistics."""
    import pandas as pd

    from diqa_bench.errors import UserError

    for c in columns:
        if c not in df.columns:
            continue
        parsed = pd.to_numeric(df[c], errors="coerce")
        bad = df[c].notna() & parsed.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(f"{path}: damaged results (row {row + 2}, column {c}: {df[c].iloc[row]!r} is not a number); re-run the benchmark to rewrite them")
        df[c] = parsed
