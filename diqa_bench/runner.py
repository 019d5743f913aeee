"""The runner: loads datasets, splits them, hands work units to an executor, and collects scores.

It never decides what a number means (that is :mod:`diqa_bench.stats`) nor how it is shown (that is
:mod:`diqa_bench.results` and :mod:`diqa_bench.leaderboard`). Its jobs: decode and batch images on
the right device, cache everything a re-run or a killed run can reuse, and make sure a failing
cell is recorded with its reason while the rest of the grid goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from diqa_bench import __version__
from diqa_bench.batch_loop import failure_reason, once, score_batches
from diqa_bench.cache import (
    ScoreCache,
    file_hash,
    stable_hash,
)
from diqa_bench.config import Config
from diqa_bench.datasets import (
    Dataset,
    DatasetContext,
    Record,
    Skip,
    check_records,
    normalise_mos,
)
from diqa_bench.errors import DataError, MethodUnavailable, RunAborted, UserError
from diqa_bench.grid import Unit, expand
from diqa_bench.methods import Method, MethodContext, TrainingData, TrainSample
from diqa_bench.pairs import is_pair_dataset
from diqa_bench.parallel import CHUNK, recipe_for, score_in_processes
from diqa_bench.plugins import Registry
from diqa_bench.splits import check_split_labels, split_records


def resolve_device(requested: str | None) -> str:
    """'auto' (or None): cuda, then mps, then cpu. Anything else is passed to torch as given."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {requested}: torch sees no CUDA device here (torch {torch.__version__})")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class LoadedDataset:
    name: str
    domain: str
    type: str
    obj: Dataset
    records: list[Record]
    keys: list[str]  # content hash per record
    content_hash: str
    skips: list[Skip] = field(default_factory=list)
    error: str | None = None

    @property
    def pseudo_mos(self) -> bool:
        return bool(getattr(self.obj, "pseudo_mos", False))


@dataclass
class ImageRef:
    """One test or train image of a cell, with everything the tables need."""

    key: str
    path: str
    id: str
    dataset: str
    domain: str
    mos: float
    mos_norm: float
    group: str
    distortion: str | None
    level: int | None
    mos_lower_better: bool = False  # DMOS-style label (its dataset's direction)


@dataclass
class CellOutcome:
    """Scores of one (method, train set, test domain, seed) cell, or why there are none."""

    method: str
    train: str
    test: str
    seed: int
    status: str  # "ok", "failed", "not run"
    reason: str = ""
    images: list[ImageRef] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    lower_better: bool = False
    mos_lower_better: bool = False
    train_scores: list[float] = field(default_factory=list)  # on the test domain's train split (acceptability threshold)
    train_bad: list[bool] = field(default_factory=list)  # which of those images are unacceptable
    pairs: list | None = None  # paired-preference test domain: its (dataset, Pair) list (diqa_bench.pairs)


@dataclass
class RunOptions:
    out: Path
    cache_dir: Path
    device: str = "auto"
    workers: int | None = None
    batch_size: int = 16
    only: list[str] | None = None
    weights_dir: str | None = None
    progress: bool | None = None  # None: bars on a terminal, plain lines otherwise
    reports: bool = True  # figures, significance and report.html next to the tables
    processes: int = 1  # CPU only: zero-shot methods score in this many single-threaded processes
    decode: str = "auto"  # auto/cpu: PIL; gpu: nvJPEG on a CUDA device (faster, scores differ slightly)


class Runner:
    def __init__(self, config: Config, registry: Registry, options: RunOptions, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.opts = options
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.device = resolve_device(options.device)
        from diqa_bench.images import resolve_decoder, set_image_limits

        self.decoder = resolve_decoder(options.decode, self.device)
        if "max_image_pixels" in config.run_options:  # in the environment: decoding workers inherit it
            set_image_limits(config.run_options["max_image_pixels"])
        # a GPU eats decoded images faster than a CPU method does: more decode workers by default there
        self.workers = options.workers if options.workers is not None else min(8 if self.device.startswith("cuda") else 4, os.cpu_count() or 1)
        self.processes = max(1, int(options.processes or 1))
        self.cache_dir = Path(options.cache_dir)
        self.scores = ScoreCache(self.cache_dir)
        self.datasets: dict[str, LoadedDataset] = {}
        self.skips: list[Skip] = []
        self.decode_skips: dict[str, str] = {}  # image key -> reason, found while decoding
        self.screening: dict[str, Any] = {}
        weights = options.weights_dir or config.weights_dir or os.environ.get("DIQA_BENCH_WEIGHTS")
        self.weights_dir = Path(weights).expanduser() if weights else None

    # -- datasets --------------------------------------------------------------------------------
    def load_datasets(self) -> None:
        needed = set(self.config.test_domains)
        for ts in self.config.train_sets:
            needed.update(ts)
        ctx = DatasetContext(cache_dir=self.cache_dir / "datasets", progress=self._progress_enabled())
        for domain in self.config.domains:
            if domain not in needed:
                continue
            for spec in self.config.domains[domain]:
                self.datasets[spec.name] = self._load_one(spec, domain, ctx)

    def _load_one(self, spec, domain: str, ctx: DatasetContext) -> LoadedDataset:
        cls = self.registry.dataset(spec.type)
        try:
            obj = cls(**spec.options)
            problems = obj.check()
            if problems:
                raise DataError("; ".join(problems))
            self.log(f"loading dataset {spec.name} ({spec.type}) for domain {domain}")
            records = obj.load(ctx)
            checked = check_records(list(records), obj, spec.name, self.config.bad_input)
            check_split_labels(checked.records, spec.name)  # an unknown label fails here, not in every cell
        except (DataError, UserError, OSError) as exc:
            self.log(f"dataset {spec.name}: {exc}")
            return LoadedDataset(spec.name, domain, spec.type, cls.__new__(cls), [], [], "", error=str(exc))
        keys = [file_hash(r.path) for r in checked.records]
        content = stable_hash([(r.id, k, r.mos, r.content_group, r.split) for r, k in zip(checked.records, keys)])
        self.skips.extend(checked.skips)
        if getattr(obj, "screening", None):
            self.screening[spec.name] = obj.screening
        return LoadedDataset(spec.name, domain, spec.type, obj, checked.records, keys, content, checked.skips)

    def _domain_sets(self, domain: str) -> list[LoadedDataset]:
        return [self.datasets[s.name] for s in self.config.domains[domain]]

    def _split(self, ds: LoadedDataset, seed: int) -> tuple[list[int], list[int]]:
        """(train positions, test positions) of one dataset for one seed; group-aware."""
        if is_pair_dataset(ds.obj):  # evaluation-only: all of it is test data for every seed, none trains
            return [], list(range(len(ds.records)))
        pos_of = {id(r): i for i, r in enumerate(ds.records)}
        train, test = split_records(ds.records, self.config.test_ratio, seed, self.config.use_split_column, getattr(self.config, "protocol", "split"))
        return [pos_of[id(r)] for r in train], [pos_of[id(r)] for r in test]

    def _refs(self, ds: LoadedDataset, positions: Iterable[int]) -> list[ImageRef]:
        recs = [ds.records[p] for p in positions]
        norm = normalise_mos([r.mos for r in ds.records], ds.obj, self.config.normalise_mos)
        return [
            ImageRef(ds.keys[p], r.path, r.id, ds.name, ds.domain, float(r.mos), float(norm[p]), f"{ds.name}/{r.content_group}", r.distortion, r.level,
                     bool(ds.obj.lower_better))
            for p, r in zip(positions, recs)
        ]

    def domain_images(self, domain: str, seed: int, side: str) -> tuple[list[ImageRef], str | None]:
        """Images of one side ('train' / 'test') of a domain for a seed, or the reason there are none."""
        out: list[ImageRef] = []
        for ds in self._domain_sets(domain):
            if ds.error:
                return [], f"dataset {ds.name}: {ds.error}"
            train, test = self._split(ds, seed)
            out.extend(self._refs(ds, train if side == "train" else test))
        out = [r for r in out if r.key not in self.decode_skips]
        if not out:
            return [], f"domain {domain!r} has no {side} images"
        return out, None

    # -- methods ---------------------------------------------------------------------------------
    def method_context(self, seed: int) -> MethodContext:
        return MethodContext(
            device=self.device,
            batch_size=self.opts.batch_size,
            workers=self.workers,
            seed=seed,
            cache_dir=self.cache_dir,
            weights_dir=self.weights_dir,
            progress=self._progress_enabled(),
            decoder=self.decoder,
        )

    def zero_shot_token(self, method: Method) -> str:
        """The score-cache token of a zero-shot method in this run. Scores from nvJPEG-decoded
        pixels differ slightly from PIL's, so they never share cache entries."""
        token = method.cache_token()
        return token if self.decoder == "pil" else f"{token}|{self.decoder}"

    def new_method(self, unit: Unit) -> Method:
        cls = self.registry.method(unit.method.name)
        return cls(**unit.method.options)

    def score_images(self, method: Method, token: str, images: list[ImageRef], ctx: MethodContext, ensure_setup: Callable[[], None]) -> list[float]:
        """Scores for ``images`` from the per-image cache; what is missing is computed in batches
        (calling ``ensure_setup`` first, so a fully cached cell never loads the model)."""
        from diqa_bench.images import iter_batches

        unique = list(dict.fromkeys(r.key for r in images))
        have = self.scores.get_many(token, unique)
        todo = [k for k in unique if k not in have]
        if todo:
            ensure_setup()
            wanted = set(todo)
            early = {k: float(v) for k, v in method.score_from_cache(todo).items() if k in wanted}
            if early:  # scored from the method's own caches (e.g. features): no decoding
                self.scores.put_many(token, early)
                have.update(early)
                todo = [k for k in todo if k not in early]
        if todo:
            path_of = {r.key: r.path for r in images}
            paths = [path_of[k] for k in todo]
            errors: dict[str, str] = {}

            def on_error(pos: int, msg: str) -> None:
                if self.config.bad_input == "error":
                    raise DataError(msg)
                errors[todo[pos]] = msg

            recipe = None
            if self.processes > 1 and str(ctx.device) == "cpu" and not method.trainable and len(todo) > CHUNK:
                recipe = recipe_for(method, self.registry, ctx)
            if recipe is not None:  # one process per core (see diqa_bench.parallel)
                for done in score_in_processes(recipe, paths, todo, self.processes, on_error):
                    self.scores.put_many(token, done)
                    have.update(done)
            pending: dict[str, float] = {}
            batches = () if recipe is not None else iter_batches(
                paths, todo, range(len(todo)), batch_size=ctx.batch_size, device=ctx.device, workers=ctx.workers, size=method.input_size, on_error=on_error,
                decoder=ctx.decoder,
            )
            for batch, values in score_batches(method, batches):
                pending.update(zip(batch.keys, values))
                if len(pending) >= 256:  # commit often: a killed run loses at most a few batches
                    self.scores.put_many(token, pending)
                    have.update(pending)
                    pending = {}
            self.scores.put_many(token, pending)
            have.update(pending)
            for k, msg in errors.items():
                self.decode_skips[k] = msg
        return [have.get(r.key, float("nan")) for r in images]

    # -- units -----------------------------------------------------------------------------------
    def run_unit(self, unit: Unit) -> list[CellOutcome]:
        label, train = unit.method.label, unit.train_label
        outcomes = {t: CellOutcome(label, train, t, unit.seed, "failed") for t in unit.tests}
        ctx = self.method_context(unit.seed)
        try:
            method = self.new_method(unit)
        except Exception as exc:
            return self._fail_all(outcomes, f"cannot create method: {type(exc).__name__}: {exc}", "failed")
        ensure_setup = once(lambda: method.setup(ctx))
        try:
            if unit.train is None:
                token, ready = self.zero_shot_token(method), ensure_setup
            else:
                token, ready = self._fit(unit, method, ctx, ensure_setup)
            for test in unit.tests:
                o = outcomes[test]
                o.lower_better = bool(method.lower_better)
                images, why = self.domain_images(test, unit.seed, "test")
                if why:
                    o.reason = why
                    continue
                try:
                    scores = self.score_images(method, token, images, ctx, ready)
                    o.lower_better = bool(method.lower_better)  # may be known only after setup
                    self._finish(o, images, scores, method, token, ctx, ready)
                except MethodUnavailable:
                    raise
                except Exception as exc:  # one test domain failing leaves the others
                    o.status, o.reason = "failed", failure_reason(exc)
                    self._debug(exc)
        except MethodUnavailable as exc:
            return self._fail_all(outcomes, str(exc), "not run")
        except Exception as exc:
            self._debug(exc)
            return self._fail_all(outcomes, failure_reason(exc), "failed")
        finally:
            try:
                method.teardown()
            except Exception:
                pass
        return list(outcomes.values())

    def _finish(self, o: CellOutcome, images: list[ImageRef], scores: list[float], method: Method, token: str, ctx, ensure_setup) -> None:
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        nan_imgs = [i for i in bad if images[i].key not in self.decode_skips]
        if nan_imgs:  # the method's own failure, not bad input: ranking it on the images left would
            # compare it with other methods on an easier subset
            o.status = "failed"
            o.reason = f"{len(nan_imgs)} of {len(scores)} scores are NaN or infinite (first: {images[nan_imgs[0]].path})"
            return
        keep = [i for i in range(len(scores)) if i not in set(bad)]
        for i in bad:
            if images[i].key in self.decode_skips:
                self.skips.append(Skip(images[i].dataset, images[i].id, self.decode_skips[images[i].key]))
        o.images = [images[i] for i in keep]
        o.scores = [scores[i] for i in keep]
        if len(o.scores) < 3:
            o.status, o.reason = "failed", f"only {len(o.scores)} usable scores (need 3)"
            return
        sets = self._domain_sets(o.test)
        o.mos_lower_better = len(sets) == 1 and bool(sets[0].obj.lower_better)
        if self.config.acceptability is not None:
            from diqa_bench.stats import unacceptable  # scipy: not for `score`, which imports this module for resolve_device

            tr_images, why = self.domain_images(o.test, o.seed, "train")
            if not why:
                tr_scores = self.score_images(method, token, tr_images, ctx, ensure_setup)
                pairs = [(s, r) for s, r in zip(tr_scores, tr_images) if math.isfinite(s)]
                o.train_scores = [s for s, _ in pairs]
                o.train_bad = [bool(x) for x in unacceptable([r.mos for _, r in pairs], self.config.acceptability, [r.mos_lower_better for _, r in pairs])]
        o.status, o.reason = "ok", ""

    def _fit(self, unit: Unit, method: Method, ctx: MethodContext, ensure_setup) -> tuple[str, Callable[[], None]]:
        """Fit (or find the cached fit of) a trainable method. Returns the score-cache token and a
        callable that makes the method ready to score (loading a cached fit only when needed)."""
        samples: list[TrainSample] = []
        hashes = []
        for domain in unit.train:
            for ds in self._domain_sets(domain):
                if ds.error:
                    raise DataError(f"train dataset {ds.name}: {ds.error}")
                train_pos, _ = self._split(ds, unit.seed)
                hashes.append((ds.name, ds.content_hash))
                for r in self._refs(ds, train_pos):
                    if r.key in self.decode_skips:
                        continue
                    samples.append(TrainSample(r.key, r.path, r.mos, r.mos_norm, r.dataset, r.domain, r.group, r.distortion, r.id))
        if not samples:
            raise DataError(f"train set {unit.train_label} has no images")
        key = stable_hash(
            {
                "method": method.cache_token(),
                "train": hashes,
                "seed": unit.seed,
                "test_ratio": self.config.test_ratio,
                "split_column": self.config.use_split_column,
                "normalise": self.config.normalise_mos,
                "diqa_bench": __version__,
                # the device can change the model itself (cross-domain's mode: auto), not only its numerics
                "device": self.device.split(":")[0],
                **({"decoder": self.decoder} if self.decoder != "pil" else {}),
            }
        )
        model_dir = self.cache_dir / "models" / key
        done = model_dir / "DONE"
        token = f"fit:{key}"

        def fit_and_save() -> None:
            ensure_setup()
            data = TrainingData(samples=samples, domains=list(unit.train), _loader=self._training_loader(ctx))
            t0 = time.time()
            method.fit(data, ctx)
            export_model(method, model_dir, f"fitted in {time.time() - t0:.1f}s on {len(samples)} images\n")

        if done.exists():

            @once
            def ready() -> None:  # lazily: a cell whose test scores are all cached never loads the model
                ensure_setup()
                try:
                    method.load(model_dir)
                except Exception as exc:  # noqa: BLE001 - a cache is disposable: a damaged model is fitted again
                    import warnings

                    from diqa_bench.cache import CacheWarning

                    aside = set_aside(model_dir)
                    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                    warnings.warn(f"cached model {model_dir} cannot be loaded ({reason}); moved to {aside.name} and fitted again", CacheWarning, stacklevel=2)
                    fit_and_save()
                    self._copy_model(model_dir, unit)
        else:
            fit_and_save()
            ready = ensure_setup
        self._copy_model(model_dir, unit)
        return token, ready

    def _copy_model(self, model_dir: Path, unit: Unit) -> None:
        dest = self.opts.out / "models" / f"{unit.method.label}@{unit.train_label}" / f"seed{unit.seed}"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(model_dir, dest)

    def _training_loader(self, ctx: MethodContext):
        from diqa_bench.images import iter_batches

        def load(samples, positions, batch_size, size, shuffle, seed):
            def on_error(pos: int, msg: str) -> None:
                if self.config.bad_input == "error":
                    raise DataError(f"training image {msg}")
                # skip policy: the method trains without it; the image is listed as skipped
                sample = samples[pos]
                if sample.key not in self.decode_skips:
                    self.decode_skips[sample.key] = msg
                    self.skips.append(Skip(sample.dataset, sample.id or Path(sample.path).name, msg))

            return iter_batches(
                [s.path for s in samples], [s.key for s in samples], positions, batch_size=batch_size or ctx.batch_size,
                device=ctx.device, workers=ctx.workers, size=size, shuffle=shuffle, seed=seed, on_error=on_error, decoder=ctx.decoder,
            )

        return load

    def _fail_all(self, outcomes: dict[str, CellOutcome], reason: str, status: str) -> list[CellOutcome]:
        for o in outcomes.values():
            o.status, o.reason = status, reason
        return list(outcomes.values())

    def _debug(self, exc: BaseException) -> None:
        if os.environ.get("DIQA_BENCH_DEBUG"):
            traceback.print_exception(exc)

    def _progress_enabled(self) -> bool:
        return sys.stderr.isatty() if self.opts.progress is None else self.opts.progress

    # -- the whole grid -------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        trainable = {m.name: self.registry.method(m.name).trainable for m in self.config.methods}
        return expand(self.config, trainable, self.opts.only)

    def run(self, executor=None, on_unit: Callable[[Unit, list[CellOutcome]], None] | None = None) -> list[CellOutcome]:
        from diqa_bench.executors import LocalExecutor

        self.load_datasets()
        units = self.units()
        executor = executor or LocalExecutor(progress=self._progress_enabled(), log=self.log)
        return executor.run(self, units, on_unit)


DESCRIPTION_FILE = "description.json"  # Method.describe() of a fitted model, saved with it


def export_model(method: Method, model_dir: Path, note: str) -> None:
    """Save a fitted model into the cache atomically: into a temp folder beside ``model_dir``, which
    is renamed into place with its DONE marker only once everything is written. A full disk or a
    crash leaves no half model, and concurrent runs never delete each other's folders (the first
    to finish wins; the same key means the same fit)."""
    import tempfile

    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}.tmp-"))
    try:
        from diqa_bench.results import _umask

        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the model is copied into shareable results
        method.save(tmp)
        description = method.describe() if hasattr(method, "describe") else {}
        if description:
            (tmp / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1, default=str))
        (tmp / "DONE").write_text(note)
        for _ in range(2):
            if (model_dir / "DONE").exists():
                return  # another run saved the same fit first
            if model_dir.exists():  # a half-written folder left by an older version: set aside
                stale = Path(tempfile.mkdtemp(dir=model_dir.parent, prefix=f".{model_dir.name}.stale-"))
                try:
                    os.replace(model_dir, stale / "model")
                except OSError:
                    pass  # someone else moved it
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(tmp, model_dir)
                return
            except OSError:
                continue  # another run renamed its copy in between: look again
        raise OSError(f"cannot save the fitted model to {model_dir}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def set_aside(folder: Path) -> Path:
    """Rename a damaged cache entry to ``<name>.damaged-<time>`` beside it; returns the new path."""
    aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(folder, aside)
    return aside


def run_benchmark(config: Config, registry: Registry, options: RunOptions, log: Callable[[str], None] | None = None, executor=None):
    """Run a whole benchmark and write its results. Returns (outcomes, paths of written files).
    Results are written even when the run is interrupted, with the cells done so far: into
    ``options.out`` when it holds no finished results, else beside it (``<out>.partial``)."""
    from datetime import datetime, timezone

    from diqa_bench import pairs
    from diqa_bench.results import publish_results, results_lock, run_info, staging_folder, write_all

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Checked before any work: the results folder is writable and no other run writes to it.
    final_out = Path(os.path.abspath(options.out))  # "." and ".." have no name to put a sibling beside
    lock = results_lock(final_out)
    try:
        stage = staging_folder(final_out)
        options = dataclasses.replace(options, out=stage)
        runner = Runner(config, registry, options, log)
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
            runner.run(executor, on_unit=lambda unit, result: outcomes.extend(result))
        except KeyboardInterrupt:
            interrupted = True
            runner.log("interrupted: writing the cells finished so far (a re-run resumes from the cache)")
        except RunAborted as exc:
            interrupted = aborted = exc
        pairs.attach(runner, outcomes)
        write_all(stage, {**run_info(config, registry, runner, options, executor, started), "interrupted": bool(interrupted)}, outcomes, config, reports=options.reports)
        where = publish_results(stage, final_out, complete=not interrupted)
    finally:  # a crash leaves the previous results as they were
        shutil.rmtree(stage, ignore_errors=True)
        lock.release()
    if aborted is not None:
        done = sum(o.status == "ok" for o in outcomes)
        raise RunAborted(f"{aborted}; {done} finished cells are written to {where}; run the same command again to resume (finished work is cached)")
    if where != final_out:
        runner.log(f"the finished results in {final_out} are kept; this interrupted run's partial results are in {where}")
    paths = {k: where / p.name for k, p in RESULT_FILES.items()}
    if interrupted:
        raise KeyboardInterrupt
    return outcomes, paths


RESULT_FILES = {name: Path(file) for name, file in (
    ("scores", "scores.csv"), ("metrics", "metrics.csv"), ("metrics_json", "metrics.json"), ("run", "run.json"), ("leaderboard", "LEADERBOARD.md"))}
