"""The ablation table: does a variant of a method's options beat the method as configured?

A method in a config may declare ``variants`` (:func:`diqa_bench.config.variant_spec`); each runs
as its own row, ``name[k=v]``, and run.json lists them (``variants``: row, base row, options). For
every variant, train set and test domain, twice:
- ``phase = validation``: on the validation groups carved from each train split
  (``splits.validation``; ``validation/scores.csv``), fitted on the rest of the train split. This
  is where options are chosen.
- ``phase = test``: on the test split, fitted on the whole train split, for reporting the chosen
  configuration only.
``value`` = statistic(variant) - statistic(base), computed as the transfer table's deltas
(:func:`diqa_bench.report.transfer.paired_deltas`: same images, same content-group draws for both
sides, mean over split seeds) with its verdict.
"""

from __future__ import annotations

from pathlib import Path

from diqa_bench.config import option_text
from diqa_bench.report.significance import domain_warning
from diqa_bench.report.stored import StoredRun, load_run, read_scores
from diqa_bench.files import read_csv
from diqa_bench.report.transfer import KIND_STATISTICS, paired_deltas, write_delta_table
from diqa_bench.store import VALIDATION_DIR

COLUMNS = ["phase", "method", "base", "options", "train", "test", "statistic", "value", "ci_low", "ci_high", "n_images", "n_groups", "seeds",
           "verdict", "p_value", "variant_value", "base_value", "warning"]
PHASES = ("validation", "test")  # validation first: it is the one to choose by


def validation_run(run: StoredRun) -> StoredRun | None:
    """The validation phase of a stored run as a run of its own (its scores, metrics and cells), or
    None when the run has none."""
    import pandas as pd

    info = run.run_info.get("validation")
    folder = run.folder / VALIDATION_DIR
    if not isinstance(info, dict) or not (folder / "scores.csv").is_file() or not (folder / "metrics.csv").is_file():
        return None
    metrics = pd.read_csv(folder / "metrics.csv", dtype={"seed": str, "method": str, "train": str, "test": str})
    return StoredRun(folder, metrics, read_scores(folder / "scores.csv"), {**run.run_info, "cells": info.get("cells", [])})


def ablation(folder_or_run: Path | StoredRun, bootstrap: int | None = None, confidence: float | None = None, seed: int | None = None):
    """The ablation table as a DataFrame with :data:`COLUMNS` (empty when no method has variants)."""
    import pandas as pd

    run = folder_or_run if isinstance(folder_or_run, StoredRun) else load_run(folder_or_run)
    variants = run.run_info.get("variants") or []
    bootstrap, confidence, seed = run.bootstrap_settings(bootstrap, confidence, seed)
    rows = []
    for phase in PHASES if variants else ():
        source = validation_run(run) if phase == "validation" else run
        if source is None:
            continue
        cells = source.cells()
        for test in source.test_domains():
            names = KIND_STATISTICS.get(run.run_info.get("domains", {}).get(test, {}).get("kind", "mos"), ())
            warning = None
            for v in variants:
                trains = dict.fromkeys(k[1] for k in cells if k[0] == v["method"] and k[2] == test)
                for train in trains:
                    found = paired_deltas(cells, (v["base"], train), (v["method"], train), test, names, bootstrap, confidence, seed)
                    if found and warning is None:
                        warning = domain_warning(source, test)
                    for name, d, value, base_value in found:
                        rows.append(dict(phase=phase, method=v["method"], base=v["base"], options=option_text(v["options"]), train=train, test=test,
                                         statistic=name, value=d.value, ci_low=d.ci[0], ci_high=d.ci[1], n_images=int(round(d.n_images)),
                                         n_groups=int(round(d.n_groups)), seeds=" ".join(map(str, d.seeds)), verdict=d.verdict,
                                         p_value=d.p_value, variant_value=value, base_value=base_value, warning=warning))
    return pd.DataFrame(rows, columns=COLUMNS)


def write_ablation(folder: Path, table) -> list[Path]:
    """ablation.csv and ablation.json (seeds as a list, NaN as null), atomically."""
    return write_delta_table(folder, "ablation", table)


def read_ablation(folder: Path):
    """The stored ablation table, or None when the folder has none."""
    path = Path(folder) / "ablation.csv"
    if not path.is_file():
        return None
    text = {c: str for c in ("phase", "method", "base", "options", "train", "test", "statistic", "seeds", "verdict", "warning")}
    return read_csv(path, dtype=text, keep_default_na=False,
                       na_values={c: [""] for c in ("value", "ci_low", "ci_high", "p_value", "variant_value", "base_value")})
