"""Running a benchmark: plan it, score it on an executor, write the results.

:func:`run_benchmark` is the whole of ``diqa-bench run``: it builds the
:class:`~diqa_bench.plan.Plan` (datasets, splits, units), hands the units to an executor that runs
each through a :class:`~diqa_bench.scorer.Scorer`, and writes the tables of the cells finished,
also when the run is interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from diqa_bench import pairs
from diqa_bench.config import Config
from diqa_bench.errors import RunAborted, UserError, WeightsRefused
from diqa_bench.executors import LocalExecutor
from diqa_bench.metrics import pool_folds
from diqa_bench.plan import ImageRef, LoadedDataset, Plan  # noqa: F401 - the names plugins and scripts import from here
from diqa_bench.plugins import Registry
from diqa_bench.report.agreement import write_ratings
from diqa_bench.results import write_all
from diqa_bench.run_facts import RunFacts, methods_weights, run_info
from diqa_bench.scorer import CellOutcome, RunOptions, Scorer, export_model, resolve_device  # noqa: F401
from diqa_bench.session import ScoringSession
from diqa_bench.store import RESULT_FILES, check_results_folder, holds_finished_results, publish_results, results_lock, scored_cells, staging_folder
from diqa_bench.thresholds import write_deploy


def _registry_in_use(run):
    """The run computes the statistics its registry and config name, and draws the registry's figures."""

    @functools.wraps(run)
    def wrapper(config, registry, *args, **kwargs):
        with registry.in_use(config.statistics_extra):
            return run(config, registry, *args, **kwargs)

    return wrapper


@_registry_in_use
def run_benchmark(config: Config, registry: Registry, options: RunOptions, log: Callable[[str], None] | None = None, executor=None):
    """Run a whole benchmark and write its results. Returns (outcomes, paths of written files).
    Results are written even when the run is interrupted, with the cells done so far: into
    ``options.out`` when it holds no finished results, else beside it (``<out>.partial``)."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Checked before any work: the results folder is writable and no other run writes to it.
    final_out = Path(os.path.abspath(Path(options.out).expanduser()))  # "." and ".." have no name to put a sibling beside
    check_results_folder(final_out)  # before the lock file beside it exists
    lock = results_lock(final_out)
    try:
        stage = staging_folder(final_out)
        options = dataclasses.replace(options, out=stage)
        # The device and the cache are checked before any work: the session is opened first.
        session = ScoringSession.for_run(registry, options, config)
    except BaseException:
        if "stage" in locals():
            shutil.rmtree(stage, ignore_errors=True)
        lock.release()
        raise
    outcomes: list[CellOutcome] = []

    interrupted = False
    aborted: RunAborted | None = None
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    scorer: Scorer | None = None
    try:
        try:
            plan = Plan.build(config, registry, session.cache_dir, options.only, session.progress, say)
            scorer = Scorer(plan, registry, options, say, session=session)
            executor = executor or LocalExecutor(progress=session.progress, log=say)
            executor.run(scorer, scorer.plan.units, on_unit=lambda unit, result: outcomes.extend(result))
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted: writing the cells finished so far (a re-run resumes from the cache)")
        except RunAborted as exc:
            interrupted = aborted = exc
        except WeightsRefused as exc:  # stops the run like an abort, keeping the cells finished before it
            interrupted = aborted = RunAborted(str(exc))
            aborted.refused = True
        if scorer is None:  # interrupted while the datasets were loading: its (empty) results are still written
            scorer = Scorer(Plan(config, [], {}), registry, options, say, session=session)
        if not interrupted:
            _keep_finished_results_from_a_failed_run(outcomes, final_out)
        pairs.attach(scorer.plan, outcomes)
        outcomes = pool_folds(outcomes, scorer.plan.folds)  # cross-validation: one cell per repetition, every image once
        tested = [o for o in outcomes if o.phase == "test"]
        validated = [o for o in outcomes if o.phase == "validation"]  # splits.validation: written apart, never in the main tables
        deployed = [o for o in outcomes if o.phase == "deploy"]  # config deploy: they choose the deployable models' cuts
        try:
            write_ratings(stage, getattr(scorer, "plan", None))  # before the tables: the human-agreement table reads it
            facts = RunFacts(device=scorer.device, batch_size=options.batch_size, workers=scorer.workers, processes=scorer.processes,
                             decoder=scorer.decoder, executor=type(executor).__name__ if executor is not None else "LocalExecutor",
                             out=options.out, cache_dir=scorer.cache_dir, weights=methods_weights(config, registry, scorer.method_context(0)),
                             skips=scorer.skips)
            write_all(stage, {**run_info(config, registry, scorer.plan, facts, started), "interrupted": bool(interrupted)}, tested, config,
                      reports=options.reports, validation=validated)
            if config.deploy_folds and not interrupted:

                write_deploy(stage, scorer.plan, deployed, config, scorer.log)
            where = publish_results(stage, final_out, complete=not interrupted)
        except OSError as exc:  # a full disk, a folder gone read-only: the scores are cached, the old results stay
            raise UserError(f"cannot write results to {final_out}: {exc.strerror or exc}; the previous results there are kept "
                            "(scores are cached: once it is fixed, a re-run writes them in seconds)") from None
    finally:  # a crash leaves the previous results as they were
        shutil.rmtree(stage, ignore_errors=True)
        lock.release()
    if aborted is not None:
        done = sum(o.status == "ok" for o in outcomes)
        then = ("replace or remove the file, then run again" if getattr(aborted, "refused", False) else "run the same command again to resume")
        raise RunAborted(f"{aborted}; {done} finished cells are written to {where}; {then} (finished work is cached)")
    if where != final_out and interrupted:
        say(f"the finished results in {final_out} are kept; this interrupted run's partial results are in {where}")
    elif where != final_out:
        say(f"{final_out} was no results folder when the run finished (made while it ran?) and is kept; the results are in {where}")
    paths = {k: where / p.name for k, p in RESULT_FILES.items()}
    if interrupted:
        raise KeyboardInterrupt
    return outcomes, paths


def _keep_finished_results_from_a_failed_run(outcomes: list[CellOutcome], out: Path) -> None:
    """A run in which no cell succeeded and some failed (a broken cache, a full disk, a method that
    crashes everywhere) has nothing to show: it never replaces finished results that have at least
    one scored cell. One line says why."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed or any(o.status == "ok" for o in outcomes) or not holds_finished_results(out) or not scored_cells(out):
        return
    reasons = Counter(" ".join(o.reason.split())[:300] or "no reason given" for o in failed)
    reason, count = reasons.most_common(1)[0]
    why = f"every cell failed with {reason}" if count == len(failed) else f"every cell failed ({count} of {len(failed)} with {reason})"
    raise RunAborted(f"{why}; the finished results in {out} are kept as they were (fix the cause and run again)")


