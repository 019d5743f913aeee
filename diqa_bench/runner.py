"""Running a benchmark: plan it, score it on an executor, write the results.

:func:`run_benchmark` is the whole of ``diqa-bench run``: it builds the
:class:`~diqa_bench.plan.Plan` (datasets, splits, units), hands the units to an executor that runs
each through a :class:`~diqa_bench.scorer.Scorer`, and writes the tables of the cells finished,
also when the run is interrupted.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable

from diqa_bench.config import Config
from diqa_bench.errors import RunAborted
from diqa_bench.plan import ImageRef, LoadedDataset, Plan  # noqa: F401 - the names plugins and scripts import from here
from diqa_bench.plugins import Registry
from diqa_bench.scorer import CellOutcome, RunOptions, Scorer, export_model, resolve_device  # noqa: F401


def run_benchmark(config: Config, registry: Registry, options: RunOptions, log: Callable[[str], None] | None = None, executor=None):
    """Run a whole benchmark and write its results. Returns (outcomes, paths of written files).
    Results are written even when the run is interrupted, with the cells done so far: into
    ``options.out`` when it holds no finished results, else beside it (``<out>.partial``)."""
    from datetime import datetime, timezone

    from diqa_bench import pairs
    from diqa_bench.executors import LocalExecutor
    from diqa_bench.results import pool_folds, publish_results, results_lock, run_info, staging_folder, write_all

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Checked before any work: the results folder is writable and no other run writes to it.
    final_out = Path(os.path.abspath(options.out))  # "." and ".." have no name to put a sibling beside
    lock = results_lock(final_out)
    try:
        stage = staging_folder(final_out)
        options = dataclasses.replace(options, out=stage)
        # Checks the device and the cache before any work. The plan stays empty until the datasets
        # are loaded below, so a run interrupted while loading still writes its (empty) results.
        scorer = Scorer(Plan(config, [], {}), registry, options, log)
    except BaseException:
        if "stage" in locals():
            shutil.rmtree(stage, ignore_errors=True)
        lock.release()
        raise
    outcomes: list[CellOutcome] = []

    interrupted = False
    aborted: RunAborted | None = None
    try:
        try:
            scorer.plan = Plan.build(config, registry, scorer.cache_dir, options.only, scorer.progress_enabled(), scorer.log)
            executor = executor or LocalExecutor(progress=scorer.progress_enabled(), log=scorer.log)
            executor.run(scorer, scorer.plan.units, on_unit=lambda unit, result: outcomes.extend(result))
        except KeyboardInterrupt:
            interrupted = True
            scorer.log("interrupted: writing the cells finished so far (a re-run resumes from the cache)")
        except RunAborted as exc:
            interrupted = aborted = exc
        pairs.attach(scorer.plan, outcomes)
        outcomes = pool_folds(outcomes, scorer.plan.folds)  # cross-validation: one cell per repetition, every image once
        write_all(stage, {**run_info(config, registry, scorer, options, executor, started), "interrupted": bool(interrupted)}, outcomes, config, reports=options.reports)
        where = publish_results(stage, final_out, complete=not interrupted)
    finally:  # a crash leaves the previous results as they were
        shutil.rmtree(stage, ignore_errors=True)
        lock.release()
    if aborted is not None:
        done = sum(o.status == "ok" for o in outcomes)
        raise RunAborted(f"{aborted}; {done} finished cells are written to {where}; run the same command again to resume (finished work is cached)")
    if where != final_out:
        scorer.log(f"the finished results in {final_out} are kept; this interrupted run's partial results are in {where}")
    paths = {k: where / p.name for k, p in RESULT_FILES.items()}
    if interrupted:
        raise KeyboardInterrupt
    return outcomes, paths


RESULT_FILES = {name: Path(file) for name, file in (
    ("scores", "scores.csv"), ("metrics", "metrics.csv"), ("metrics_json", "metrics.json"), ("run", "run.json"), ("leaderboard", "LEADERBOARD.md"))}
