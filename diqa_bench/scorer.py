"""The scorer: turns a :class:`~diqa_bench.plan.Plan`'s units into cells of scores.

It owns what happens to a method in a cell: creating it and fitting it (or loading its cached fit),
and the images it skips. Images get their scores through the run's
:class:`~diqa_bench.session.ScoringSession` (score cache, the one batch loop, the CPU process pool),
the same path ``diqa-bench score`` takes without a plan. A failing method fails its cells with the
reason while the rest of the grid goes on. Every executor runs units through a scorer: the local
one in this process, Ray's in each worker, built from the plan the driver ships.

It never decides what a number means (that is :mod:`diqa_bench.stats`) nor how it is shown
(:mod:`diqa_bench.results`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from diqa_bench.batch_loop import ImageSkip, failure_reason, once, without_path
from diqa_bench.errors import DataError, MethodUnavailable, WeightsRefused
from diqa_bench.methods import Method, MethodContext, TrainingData
from diqa_bench.session import (  # noqa: F401 - resolve_device, compute_scores, write_checksums: the names scripts import from here
    CHECKSUMS_FILE, ScoringSession, compute_scores, model_damage, resolve_device, write_checksums)
from diqa_bench.datasets import Skip
from diqa_bench.files import current_umask

if TYPE_CHECKING:
    from diqa_bench.datasets import Skip
    from diqa_bench.grid import Unit
    from diqa_bench.plan import ImageRef, Plan
    from diqa_bench.plugins import Registry


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
    phase: str = "test"  # "validation": fitted without the validation groups, scored on them (diqa_bench.grid)


class Scorer:
    """Runs units of a plan. One per process: the driver's for the local executor, one per Ray
    worker process, each with its own score-cache connection over the shared cache folder."""

    def __init__(self, plan: Plan, registry: Registry, options: RunOptions, log: Callable[[str], None] | None = None,
                 session: ScoringSession | None = None) -> None:
        self.plan = plan
        self.config = plan.config
        self.registry = registry
        self.opts = options
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        # the method context, the methods and the score cache: the runner opens the session before
        # it builds the plan (device and cache are checked before any work)
        self.session = session or ScoringSession.for_run(registry, options, self.config)
        self.scores = self.session.scores
        self.skips: list[Skip] = []  # images found undecodable while scoring or training
        self.decode_skips: dict[str, str] = {}  # image key -> reason
        # (score token, image key) -> why that method has no score for it (too small, NaN): the
        # image stays in every other method's cells
        self.method_skips: dict[tuple[str, str], str] = {}
        self._copies: tuple[int, dict[str, list[tuple[str, str, str]]]] | None = None  # (id of the plan, key -> its images)
        self._pixels_checked: dict[tuple[str, int], str | None] = {}  # (image key, limit) -> why it is over the limit

    # the session's context, as run.json and the executors read it
    device = property(lambda self: self.session.device)
    decoder = property(lambda self: self.session.decoder)
    workers = property(lambda self: self.session.workers)
    processes = property(lambda self: self.session.processes)
    cache_dir = property(lambda self: self.session.cache_dir)
    weights_dir = property(lambda self: self.session.weights_dir)

    # -- images ----------------------------------------------------------------------------------
    def domain_images(self, domain: str, seed: int, side: str, phase: str = "test") -> tuple[list[ImageRef], str | None]:
        """The plan's images of one side of a domain, less those found undecodable in this run."""
        images, why = self.plan.images(domain, seed, side, phase)
        if why:
            return images, why
        images = [r for r in images if r.key not in self.decode_skips]
        return (images, None) if images else ([], f"domain {domain!r} has no {side} images")

    def _skip(self, key: str, dataset: str, image: str, reason: str, path: str | None = None) -> None:
        """Record an image that cannot be used, and every byte-identical copy of it in the plan
        (work is per content key: one decoding failure stands for all of them, and each is listed)."""

        if key in self.decode_skips:
            return
        self.decode_skips[key] = reason
        copies = self._images_of(key)
        if (dataset, image) not in [(d, i) for d, i, _ in copies]:
            copies = [(dataset, image, path or ""), *copies]
        for d, i, p in copies:
            # a copy's reason names its own file, not the one that was decoded
            why = p + reason[len(path):] if path and p and reason.startswith(path) else reason
            self.skips.append(Skip(d, i, why))

    def _images_of(self, key: str) -> list[tuple[str, str, str]]:
        """(dataset, image id, path) of every image of the plan with content ``key``."""
        if self._copies is None or self._copies[0] != id(self.plan):
            index: dict[str, list[tuple[str, str, str]]] = {}
            for ds in self.plan.datasets.values():
                for r in ds.refs:
                    index.setdefault(r.key, []).append((r.dataset, r.id, r.path))
            self._copies = (id(self.plan), index)
        return self._copies[1].get(key, [])

    def _over_pixel_limit(self, refs) -> set[str]:
        """Keys of ``refs`` whose header exceeds the pixel limit, recorded as skipped (or raising,
        with ``bad_input: error``). Checked before any cache is trusted: a score or feature
        cached under a higher limit must not let the image through a lower one."""
        from diqa_bench.images import check_pixel_limit, max_pixels  # lazy: loads numpy, PIL

        limit = max_pixels()
        over: set[str] = set()
        for r in refs:
            if (r.key, limit) not in self._pixels_checked:
                try:
                    check_pixel_limit(r.path)
                    self._pixels_checked[(r.key, limit)] = None
                except DataError as exc:
                    self._pixels_checked[(r.key, limit)] = str(exc)
            why = self._pixels_checked[(r.key, limit)]
            if why is not None:
                if self.config.bad_input == "error":
                    raise DataError(why)
                self._skip(r.key, r.dataset, r.id or Path(r.path).name, why, r.path)
                over.add(r.key)
        return over

    # -- methods ---------------------------------------------------------------------------------
    def method_context(self, seed: int) -> MethodContext:
        return self.session.context(seed)

    def zero_shot_token(self, method: Method) -> str:
        """The score-cache token of a zero-shot method in this run (:meth:`ScoringSession.token`)."""
        return self.session.token(method)

    def new_method(self, unit: Unit) -> Method:
        return self.session.method(unit.method.name, unit.method.options)

    def score_images(self, method: Method, token: str, images: list[ImageRef], ctx: MethodContext, ensure_setup: Callable[[], None]) -> list[float]:
        """Scores for ``images`` through the session (score cache, the method's own caches, then
        computed and saved as they come; ``ensure_setup()`` only when the method is needed).
        Undecodable images get NaN and are recorded as skipped (or raise, with ``bad_input: error``)."""
        over = self._over_pixel_limit(list({r.key: r for r in images}.values()))
        ref_of = {r.key: r for r in images if r.key not in over}

        def on_error(key: str, msg: str) -> None:
            r = ref_of[key]
            if self.config.bad_input == "error":
                raise DataError(f"{method.name}: {r.path}: {without_path(msg, r.path)}" if isinstance(msg, ImageSkip) else msg)
            if isinstance(msg, ImageSkip):  # this method cannot score this image; the others still see it
                if (token, r.key) not in self.method_skips:

                    self.method_skips[(token, r.key)] = str(msg)
                    self.skips.append(Skip(r.dataset, r.id, f"{method.name}: {without_path(str(msg), r.path)}"))
                return
            self._skip(r.key, r.dataset, r.id, msg, r.path)

        # more images than one pool task holds: below that, starting the pool costs more than it saves
        from diqa_bench.parallel import CHUNK  # lazy: loads multiprocessing

        have = self.session.score(method, token, list(ref_of), [r.path for r in ref_of.values()], ensure_setup=ensure_setup, on_error=on_error,
                                  ctx=ctx, pool_from=CHUNK)
        return [have.get(r.key, float("nan")) for r in images]

    # -- units -----------------------------------------------------------------------------------
    def run_unit(self, unit: Unit) -> list[CellOutcome]:
        label, train = unit.method.label, unit.train_label
        outcomes = {t: CellOutcome(label, train, t, unit.seed, "failed", phase=unit.phase) for t in unit.tests}
        ctx = self.method_context(unit.seed)
        try:
            method = self.new_method(unit)
        except Exception as exc:
            return _fail_all(outcomes, f"cannot create method: {type(exc).__name__}: {exc}", "failed")
        ensure_setup = once(lambda: method.setup(ctx))
        try:
            if unit.train is None:
                token, ready = self.zero_shot_token(method), ensure_setup
            else:
                token, ready = self._fit(unit, method, ctx, ensure_setup)
            for test in unit.tests:
                o = outcomes[test]
                o.lower_better = bool(method.lower_better)
                images, why = self.domain_images(test, unit.seed, "test", unit.phase)
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
                    _debug(exc)
        except WeightsRefused:
            raise  # a refused file is the user's error, not a machine without the file: the run stops (exit 2)
        except MethodUnavailable as exc:
            return _fail_all(outcomes, str(exc), "not run")
        except Exception as exc:
            _debug(exc)
            if not outcomes:  # a unit without cells (a deploy fit on all train content): the reason would be lost
                self.log(f"  {unit.describe()}: failed: {failure_reason(exc)}")
            return _fail_all(outcomes, failure_reason(exc), "failed")
        finally:
            try:
                method.teardown()
            except Exception:
                pass
        return list(outcomes.values())

    def _finish(self, o: CellOutcome, images: list[ImageRef], scores: list[float], method: Method, token: str, ctx, ensure_setup) -> None:
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        nan_imgs = [i for i in bad if images[i].key not in self.decode_skips and (token, images[i].key) not in self.method_skips]
        if nan_imgs:  # the method's own failure, not bad input: ranking it on the images left would
            # compare it with other methods on an easier subset
            o.status = "failed"
            o.reason = f"{len(nan_imgs)} of {len(scores)} scores are NaN or infinite (first: {images[nan_imgs[0]].path})"
            return
        dropped = set(bad)
        o.images = [r for i, r in enumerate(images) if i not in dropped]
        o.scores = [s for i, s in enumerate(scores) if i not in dropped]
        # a pair domain needs no correlation: a pair without a score counts as a tie, and its table
        # shows how many there were (a method too small for every crop keeps its row)
        pair_domain = any(ds.evaluation_only for ds in self.plan.domain_sets(o.test))
        if len(o.scores) < 3 and not pair_domain:
            o.status, o.reason = "failed", f"only {len(o.scores)} usable scores (need 3)"
            return
        o.mos_lower_better = self.plan.mos_lower_better(o.test)
        if self.config.acceptability is not None and o.phase != "deploy":  # deploy: the folds' own scores choose the cut
            from diqa_bench.stats import unacceptable  # lazy: scipy: only when a run asks for thresholds

            tr_images, why = self.domain_images(o.test, o.seed, "train", o.phase)
            if not why:
                tr_scores = self.score_images(method, token, tr_images, ctx, ensure_setup)
                pairs = [(s, r) for s, r in zip(tr_scores, tr_images) if math.isfinite(s)]
                o.train_scores = [s for s, _ in pairs]
                o.train_bad = [bool(x) for x in unacceptable([r.mos for _, r in pairs], self.config.acceptability, [r.mos_lower_better for _, r in pairs])]
        o.status, o.reason = "ok", ""

    # -- fits ------------------------------------------------------------------------------------
    def _fit(self, unit: Unit, method: Method, ctx: MethodContext, ensure_setup) -> tuple[str, Callable[[], None]]:
        """Fit (or find the cached fit of) a trainable method. Returns the score-cache token and a
        callable that makes the method ready to score (loading a cached fit only when needed)."""
        samples = self.plan.train_samples(unit)
        over = self._over_pixel_limit(list({s.key: s for s in samples}.values()))  # their features may be cached
        samples = [s for s in samples if s.key not in self.decode_skips and s.key not in over]
        if not samples:
            raise DataError(f"train set {unit.train_label} has no images")
        from diqa_bench.cache import stable_hash, weights_token  # lazy: loads numpy, sqlite3

        token = weights_token(method, ctx)
        if over:  # a fit cached before the limit was lowered learnt from those images too
            token += f"|without:{stable_hash(sorted(over))}"
        key = self.plan.fit_key(unit, token, self.device, self.decoder)
        model_dir = self.cache_dir / "models" / key
        token = f"fit:{key}"

        def fit_and_save() -> None:
            ensure_setup()
            data = TrainingData.from_samples(samples, ctx, domains=list(unit.train), on_error=self._training_image_failed)
            t0 = time.time()
            method.fit(data, ctx)
            export_model(method, model_dir, f"fitted in {time.time() - t0:.1f}s on {len(samples)} images\n")

        def fit_again(reason: str) -> None:  # a cache is disposable: a damaged model is fitted again
            import warnings

            from diqa_bench.cache import CacheWarning, set_aside  # lazy: loads numpy, sqlite3

            aside = set_aside(model_dir)
            warnings.warn(f"cached model {model_dir} cannot be loaded ({reason}); moved to {aside.name} and fitted again", CacheWarning, stacklevel=3)
            fit_and_save()

        damage = model_damage(model_dir) if (model_dir / "DONE").exists() else None
        if damage is not None:  # checked before it is exported, even when every score it gave is cached
            fit_again(f"damaged: {damage}")
            ready = ensure_setup
        elif (model_dir / "DONE").exists():

            @once
            def ready() -> None:  # lazily: a cell whose test scores are all cached never loads the model
                ensure_setup()
                try:
                    method.load(model_dir)
                except Exception as exc:  # noqa: BLE001
                    fit_again(" ".join(str(exc).split())[:200] or type(exc).__name__)
                    self._copy_model(model_dir, unit)

            if not (model_dir / CHECKSUMS_FILE).exists():
                ready()  # saved by an older version, without checksums: loaded now, before it is exported
        else:
            fit_and_save()
            ready = ensure_setup
        self._copy_model(model_dir, unit)
        return token, ready

    def _copy_model(self, model_dir: Path, unit: Unit) -> None:
        from diqa_bench.grid import DEPLOY, DEPLOY_ALL, model_folder  # lazy: loads numpy, yaml

        # a validation-phase model only ranks variants, a deploy fold's only scores its fold: they stay in the cache
        if unit.phase != "test" and not (unit.phase == DEPLOY and unit.seed == DEPLOY_ALL):
            return
        dest = self.opts.out / "models" / model_folder(unit.method.label, unit.train_label) / (DEPLOY if unit.phase == DEPLOY else f"seed{unit.seed}")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(model_dir, dest)

    def _training_image_failed(self, sample, msg: str) -> None:
        if self.config.bad_input == "error":
            raise DataError(f"training image {msg}")
        # skip policy: the method trains without it; the image is listed as skipped
        self._skip(sample.key, sample.dataset, sample.id or Path(sample.path).name, msg, sample.path)

    def progress_enabled(self) -> bool:
        return self.session.progress


def _fail_all(outcomes: dict[str, CellOutcome], reason: str, status: str) -> list[CellOutcome]:
    for o in outcomes.values():
        o.status, o.reason = status, reason
    return list(outcomes.values())


def _debug(exc: BaseException) -> None:
    if os.environ.get("DIQA_BENCH_DEBUG"):
        traceback.print_exception(exc)


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
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; the model is copied into shareable results
        method.save(tmp)
        description = method.describe() if hasattr(method, "describe") else {}
        if description:
            (tmp / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1, default=str))
        write_checksums(tmp)
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
