"""Run the grid's units on a Ray cluster (``pip install 'diqa-bench[ray]'``).

Each unit becomes one Ray task with the resources the executor declares. The driver ships the run's
:class:`~diqa_bench.plan.Plan` (datasets already loaded and split: plain data) once through the
object store, with the run options and the plugins to load; each worker process builds one
:class:`~diqa_bench.scorer.Scorer` from them and reuses it for every task of the run. No worker
re-reads the config or reloads a dataset, so every executor scores exactly the same images. Per-image scores and fitted models go to the cache folder, which every node
must reach at the same path; a retried or re-run unit takes whatever it finds there.

Zero-shot units are sharded: before a unit runs, its test images that are not cached yet are
scored by shard tasks of at most ``shard_size`` images (deduplicated across seeds, which share
images). The unit itself then reads every score from the cache, in the order a local run uses, so
the tables are identical to the local executor's.

Results reach ``on_unit`` in unit order (a unit finished early waits for the ones before it), which
keeps scores.csv and metrics.csv in the local executor's row order.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from diqa_bench.errors import RunAborted, UserError, WeightsRefused
from diqa_bench.datasets import Skip
from diqa_bench.batch_loop import failure_reason, once

INSTALL_HINT = "pip install 'diqa-bench[ray]'"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to score the driver's plan as the driver would."""

    run_id: str
    plan: Any  # diqa_bench.plan.Plan
    options: Any  # RunOptions, with absolute paths
    plugins: Any  # diqa_bench.plugins.PluginSources: the driver's plugins
    cwd: str  # the driver's folder: relative image paths resolve as they do there


@dataclass
class Shard:
    method: Any  # MethodSpec
    seed: int
    images: list[Any]  # ImageRef
    units: list[int]  # positions of the units waiting for it


class RayExecutor:
    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_task: float = 1,
        num_gpus_per_task: float = 0,
        memory: int | None = None,
        max_retries: int = 2,
        shard_size: int | None = 1000,
        runtime_env: dict[str, Any] | None = None,
        progress: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.address = address
        self.num_cpus_per_task = num_cpus_per_task
        self.num_gpus_per_task = num_gpus_per_task
        self.memory = memory
        self.max_retries = max_retries
        self.shard_size = shard_size
        self.runtime_env = runtime_env
        self.progress = progress
        self.log = log

    # -- connection ------------------------------------------------------------------------------
    def connect(self):
        """Import Ray and join (or start) a cluster. Returns (ray, whether we started the session)."""
        try:
            import ray
        except ImportError:
            raise UserError(f"the ray executor needs Ray, which is not installed: {INSTALL_HINT}") from None
        if ray.is_initialized():
            return ray, False
        kwargs: dict[str, Any] = {"runtime_env": self.runtime_env} if self.runtime_env else {}
        if self.address is None:
            kwargs["include_dashboard"] = False  # a throw-away local cluster needs no web UI
        try:
            ray.init(address=self.address, **kwargs)
        except ConnectionError as exc:
            raise UserError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        return ray, True

    def _task_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus_per_task, "num_gpus": self.num_gpus_per_task, "max_retries": self.max_retries}
        if self.memory:
            opts["memory"] = int(self.memory)
        return opts

    # -- the run ---------------------------------------------------------------------------------
    def run(self, scorer, units, on_unit=None):
        spec = worker_spec(scorer, self.num_cpus_per_task)
        ray, started = self.connect()
        try:
            return self.run_units(ray, scorer, spec, list(units), on_unit)
        finally:
            if started:
                ray.shutdown()

    def run_units(self, ray, scorer, spec: WorkerSpec, units: list, on_unit) -> list:
        """Run the units on a connected cluster: shards of images first when sharding is on, then
        the units, collecting each as it finishes (what :meth:`run` does once connected)."""
        unit_task = ray.remote(_unit_task).options(**self._task_options())
        shard_task = ray.remote(_shard_task).options(**self._task_options())
        shards = plan_shards(scorer, units, self.shard_size) if self.shard_size else []
        spec_ref = ray.put(spec)  # stored once in the object store; each task receives the object itself
        waiting_on = [0] * len(units)
        for sh in shards:
            for u in sh.units:
                waiting_on[u] += 1

        pending: dict[Any, tuple[str, int]] = {}  # ObjectRef -> ("unit" | "shard", position)
        started_at: dict[int, float] = {}

        def submit_unit(i: int) -> None:
            started_at[i] = time.time()
            pending[unit_task.remote(spec_ref, units[i])] = ("unit", i)

        for j, sh in enumerate(shards):
            pending[shard_task.remote(spec_ref, sh.method, sh.seed, sh.images)] = ("shard", j)
        for i in range(len(units)):
            if waiting_on[i] == 0:
                submit_unit(i)

        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(units) + len(shards), unit="task", desc="benchmark (ray)", dynamic_ncols=True)
        say = bar.write if bar is not None else self.log

        finished: dict[int, list] = {}  # unit position -> outcomes, until every earlier unit is done
        released = 0
        outcomes: list = []

        def release() -> None:
            nonlocal released
            while released in finished:
                i = released
                result = finished.pop(i)
                outcomes.extend(result)
                if on_unit is not None:
                    on_unit(units[i], result)
                released += 1

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                kind, pos = pending.pop(ref)
                if kind == "shard":
                    self._shard_done(ray, ref, shards[pos], say)
                    for u in shards[pos].units:
                        waiting_on[u] -= 1
                        if waiting_on[u] == 0:
                            submit_unit(u)
                else:
                    result = self._unit_done(ray, ref, scorer, units[pos])
                    finished[pos] = result
                    self._report(units[pos], result, pos, len(units), time.time() - started_at[pos], bar, say)
                if bar is not None:
                    bar.update(1)
                release()
        except (KeyboardInterrupt, RunAborted):
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - a lost cluster cannot cancel anything
                    pass
            raise
        finally:
            # What finished is kept, in unit order, even past a gap left by an interruption.
            for i in sorted(finished):
                outcomes.extend(finished[i])
                if on_unit is not None:
                    on_unit(units[i], finished[i])
            if bar is not None:
                bar.close()
        return outcomes

    def _shard_done(self, ray, ref, shard: Shard, say) -> None:
        """A shard that failed leaves its images to its units, which score them or report why they
        cannot (a method error is theirs to report; a worker that kept dying is only logged here)."""
        try:
            ray.get(ref)
        except Exception as exc:
            say(f"  shard of {len(shard.images)} images for {shard.method.label} failed ({worker_error(exc)}); its units score them")

    def _unit_done(self, ray, ref, scorer, unit) -> list:
        from diqa_bench.scorer import CellOutcome  # lazy: loads importlib.metadata (plugin discovery)

        try:
            result, skips = ray.get(ref)
        except Exception as exc:
            if cluster_lost(ray, exc):  # every later task would fail the same way, after its retries
                raise RunAborted(f"the Ray cluster was lost ({type(exc).__name__}: {worker_error(exc)})") from None
            if isinstance(getattr(exc, "cause", None), WeightsRefused):  # the user's file, refused: stop as a local run does
                stop = RunAborted(str(exc.cause))
                stop.refused = True
                raise stop from None
            if isinstance(exc, ray.exceptions.RayTaskError):  # raised by our code on the worker: not retried
                reason = f"on the Ray worker: {worker_error(exc)}"
            else:  # the worker process or its node died, on every attempt
                reason = f"the Ray task failed on every attempt ({self.max_retries + 1}): {worker_error(exc)}"
            lower = bool(getattr(scorer.registry.method(unit.method.name), "lower_better", False))
            return [CellOutcome(unit.method.label, unit.train_label, t, unit.seed, "failed", reason, lower_better=lower, phase=unit.phase)
                    for t in unit.tests]
        scorer.skips.extend(Skip(*s) for s in skips)
        return result

    def _report(self, unit, result, pos: int, total: int, seconds: float, bar, say) -> None:
        if bar is not None:
            bar.set_postfix_str(unit.describe())
        else:
            status = ", ".join(sorted({o.status for o in result}))
            self.log(f"[unit {pos + 1}/{total}] {unit.describe()}: {status} ({seconds:.1f}s)")
        for o in result:
            if o.status != "ok":
                say(f"  {o.method} @ {o.train} -> {o.test} (seed {o.seed}): {o.status}: {o.reason}")


def cluster_lost(ray, exc: BaseException) -> bool:
    """Whether ``exc`` means the driver lost its cluster (its local raylet or the cluster's control
    store died), rather than one task or one worker node failing."""
    names = ("LocalRayletDiedError", "RaySystemError", "GcsUnavailableError")
    lost = tuple(t for t in (getattr(ray.exceptions, n, None) for n in names) if isinstance(t, type))
    return isinstance(exc, lost)


# -- driver side helpers ---------------------------------------------------------------------------
def worker_spec(scorer, num_cpus_per_task: float) -> WorkerSpec:
    """What a worker needs to score like ``scorer``; checks every plugin can be re-imported there."""
    from diqa_bench.plugins import PluginSources  # lazy: loads importlib.metadata (plugin discovery)

    opts = scorer.opts
    # Decoding workers inside a task share the CPUs the task declared.
    workers = opts.workers if opts.workers is not None else max(0, int(num_cpus_per_task) - 1)
    # Paths resolved here, so that no worker resolves them against its own folder or environment.
    weights = str(scorer.weights_dir.absolute()) if scorer.weights_dir else None
    options = replace(opts, out=Path(opts.out).absolute(), cache_dir=Path(opts.cache_dir).absolute(), weights_dir=weights, workers=workers,
                      progress=False)
    return WorkerSpec(uuid.uuid4().hex, scorer.plan, options, PluginSources.of(scorer.registry), os.getcwd())


def plan_shards(scorer, units: list, shard_size: int) -> list[Shard]:
    """Shards of the not-yet-cached test images of zero-shot units. An image is scored once per
    method configuration, whichever seeds or units need it."""
    if shard_size < 1:
        raise UserError(f"shard_size must be at least 1, not {shard_size}")
    shards: list[Shard] = []
    owner: dict[tuple[str, str], int] = {}  # (cache token, image key) -> shard position
    for i, unit in enumerate(units):
        if unit.train is not None:
            continue
        try:
            token = scorer.zero_shot_token(scorer.new_method(unit))
        except Exception:
            continue  # the unit itself reports why the method cannot be created
        images = []
        for test in unit.tests:
            sides = ("test", "train") if scorer.config.acceptability is not None else ("test",)
            for side in sides:
                found, why = scorer.domain_images(test, unit.seed, side, unit.phase)
                if not why:
                    images.extend(found)
        unique = list({r.key: r for r in images}.values())
        cached = scorer.scores.get_many(token, [r.key for r in unique])
        todo = []
        for r in unique:
            if r.key in cached:
                continue
            if (token, r.key) in owner:
                shard = shards[owner[(token, r.key)]]
                if i not in shard.units:
                    shard.units.append(i)
                continue
            todo.append(r)
        for s in range(0, len(todo), shard_size):
            chunk = todo[s : s + shard_size]
            shards.append(Shard(unit.method, unit.seed, chunk, [i]))
            for r in chunk:
                owner[(token, r.key)] = len(shards) - 1
    return shards


def worker_error(exc: BaseException) -> str:
    """One line naming what went wrong on the worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):

        return failure_reason(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# -- worker side -----------------------------------------------------------------------------------
_SCORER: dict[str, Any] = {}  # run id -> Scorer: one per worker process and run, reused by its tasks


def worker_scorer(spec: WorkerSpec):
    if spec.run_id in _SCORER:
        return _SCORER[spec.run_id]
    from diqa_bench.scorer import Scorer  # lazy: loads importlib.metadata (plugin discovery)

    if os.path.isdir(spec.cwd):
        os.chdir(spec.cwd)
    registry = spec.plugins.load("on this Ray node")
    quiet = (lambda msg: print(msg, flush=True)) if os.environ.get("DIQA_BENCH_DEBUG") else (lambda msg: None)
    scorer = Scorer(spec.plan, registry, spec.options, log=quiet)
    _SCORER.clear()
    _SCORER[spec.run_id] = scorer
    return scorer


def _unit_task(spec: WorkerSpec, unit) -> tuple[list, list[tuple[str, str, str]]]:
    """Run one unit on a worker; returns its outcomes and the images it skipped."""
    scorer = worker_scorer(spec)
    before = len(scorer.skips)
    result = scorer.run_unit(unit)
    return result, [(s.dataset, s.image, s.reason) for s in scorer.skips[before:]]


def _shard_task(spec: WorkerSpec, method_spec, seed: int, images: list) -> None:
    """Score a shard of images into the shared score cache. A method error is left to the units
    (they hit it again and report it with their cells), so it is swallowed here."""
    scorer = worker_scorer(spec)
    ctx = scorer.method_context(seed)
    try:
        method = scorer.session.method(method_spec.name, method_spec.options)
    except Exception:
        return

    try:
        scorer.score_images(method, scorer.zero_shot_token(method), images, ctx, once(lambda: method.setup(ctx)))
    except Exception:
        pass
    finally:
        try:
            method.teardown()
        except Exception:
            pass
