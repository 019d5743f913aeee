"""The facts of a run that run.json records besides its statistics: configuration, environment
(versions, device, git commit), plugins, protocol, each domain's datasets, licences, weight files,
fitted models, screening and skipped images.

:func:`run_info` takes plain facts (:class:`RunFacts`, gathered by the runner from its scorer and
executor), so that writing run.json needs no part of the scoring machinery.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from diqa_bench import pairs
from diqa_bench.cache import stable_hash, weights_used
from diqa_bench.licences import facts_of
from diqa_bench.splits import check_split_labels
from diqa_bench.store import VALIDATION_DIR
from diqa_bench.version import __version__


@dataclass(frozen=True)
class RunFacts:
    """What the run's driver knows and the config does not: where and how it scored."""

    device: str
    batch_size: int
    workers: int
    processes: int
    decoder: str
    executor: str  # class name of the executor the run used
    out: Path  # the folder the run writes to: its saved models are listed
    cache_dir: Path
    weights: list[dict[str, Any]] = field(default_factory=list)  # from methods_weights
    skips: list = field(default_factory=list)  # images the scoring skipped (the plan's own are added)


def git_info(where: Path) -> dict[str, Any]:
    """The commit of the git checkout holding ``where`` and whether tracked files differ from it;
    both None outside a checkout or without git."""
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
    """Versions, device and machine of this run (run.json ``environment``)."""
    import torch  # seconds to import: only once run.json is written, never for `validate`

    info = {
        "diqa_bench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "git": git_info(Path(__file__).resolve().parent),
    }
    # From the installed metadata: importing pyiqa (seconds) just for a version string is too dear.
    try:
        info["pyiqa"] = metadata.version("pyiqa")
    except metadata.PackageNotFoundError:
        info["pyiqa"] = None
    return info


def run_info(config, registry, plan, facts: RunFacts, started: str) -> dict[str, Any]:
    """run.json's content for a run started at ``started`` (ISO time): configuration, environment,
    plugins, protocol, the datasets of each domain, screening and skipped images. ``plan``: the
    run's :class:`diqa_bench.plan.Plan`; ``facts``: what the runner knows of how it scored."""
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
        "environment": environment(facts.device),
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "error": p.error} for p in registry.plugins.values()],
        "plugin_clashes": list(getattr(registry, "clashes", [])),
        "protocol": {
            "test_ratio": config.test_ratio, "seeds": config.seeds, "use_split_column": config.use_split_column, "split_protocol": config.protocol,
            "bootstrap": config.bootstrap, "confidence": config.confidence, "stats_seed": config.stats_seed, "adjust": config.adjust,
            "folds": config.folds, "fold_count": getattr(plan, "folds", 0),
            "normalise_mos": config.normalise_mos, "bad_input": config.bad_input, "acceptability": config.acceptability,
            "mapping": "VQEG 4-parameter logistic (linear fallback)", "batch_size": facts.batch_size, "workers": facts.workers, "processes": facts.processes, "decoder": facts.decoder,
            "executor": facts.executor,
        },
        "domains": domains,
        "licences": run_licences(config, registry, plan),
        "fitted_models": fitted_models(facts.out),
        "weights": facts.weights,
        "screening": plan.screening,
        "skipped": [dict(dataset=s.dataset, image=s.image, reason=s.reason) for s in _unique_skips(plan.skips + facts.skips)],
        "cache_dir": str(facts.cache_dir),
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


def methods_weights(config, registry, ctx) -> list[dict[str, Any]]:
    """The weight files (path and sha256) each configured method loads on this machine, given the
    run's method context ``ctx``: their content is part of its cache keys, so a table never mixes
    scores of two weight files."""
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
