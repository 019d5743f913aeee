"""The scoring session: where methods run, how they are built, and how images get their scores.

Every path that scores images goes through one :class:`ScoringSession`: ``diqa-bench score`` and
the gate (:mod:`diqa_bench.scoring`), ``run``'s scorer (:mod:`diqa_bench.scorer`), the CPU process
pool's workers (:mod:`diqa_bench.parallel`) and Ray's shard tasks (:mod:`diqa_bench.ray_executor`).
It owns

- the method context: device, decoder, batch size, decoding workers, weights folder, cache folder
  (:meth:`ScoringSession.context`; the weights folder is resolved by :func:`resolve_weights_dir`);
- the method built from a registry name and options (:meth:`~ScoringSession.method`), or for
  ``score`` validated with a weights file or saved fit (:meth:`~ScoringSession.prepare`);
- its score-cache token (:meth:`~ScoringSession.token`): configuration, weight files, a loaded fit
  and the decoder;
- the scoring itself (:meth:`~ScoringSession.score`): look the images up in the score cache, ask the
  method's own caches, compute the rest (the one batch loop, or the process pool) and save the
  scores as they come, so a killed run keeps them;
- the recipe a pool worker rebuilds a method from (:class:`MethodRecipe`: its ``build`` goes
  through a session, so :mod:`diqa_bench.parallel` needs no import of this module);
- where a device name is resolved (:func:`resolve_device`) and how a saved fit is checked before it
  is loaded (:func:`model_damage`).

What a score means and which images a cell holds are the callers' business (the scorer's plan,
``score``'s file list).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from diqa_bench.errors import UserError
from diqa_bench.methods import Method, MethodContext
from diqa_bench.plugins import PluginSources
from diqa_bench.batch_loop import once, score_batches

if TYPE_CHECKING:
    from diqa_bench.plugins import Registry


def resolve_device(requested: str | None) -> str:
    """'auto' (or None): cuda, then mps, then cpu. Anything else is passed to torch as given.
    Torch is imported only when the answer needs it: the CPU process pool's parent never runs a
    tensor operation, and importing torch costs it seconds."""
    if requested == "cpu" or (requested in (None, "auto") and not _may_have_accelerator()):
        return "cpu"
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


def _may_have_accelerator() -> bool:
    """False when torch could not find a GPU here: Linux without NVIDIA, ROCm or WSL GPU device
    nodes. Elsewhere (macOS's MPS, Windows) only torch can tell."""
    import glob

    if not sys.platform.startswith("linux"):
        return True
    return any(glob.glob(pattern) for pattern in ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg"))


CHECKSUMS_FILE = "checksums.json"  # sha256 of every file of a fitted model, saved with it


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(folder: Path) -> None:
    """Record the sha256 of every file of a saved model (but DONE), so that a file damaged later
    is found before the model is loaded or exported."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name not in ("DONE", CHECKSUMS_FILE))
    sums = {p.relative_to(folder).as_posix(): _sha256(p) for p in files}
    (Path(folder) / CHECKSUMS_FILE).write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")


def model_damage(folder: Path) -> str | None:
    """Why a saved model's files differ from those it was saved with (one line), or None. A model
    saved without checksums (by an older version) has nothing to be checked against: None."""
    folder = Path(folder)
    try:
        sums = json.loads((folder / CHECKSUMS_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"{CHECKSUMS_FILE} unreadable ({type(exc).__name__})"
    if not isinstance(sums, dict):
        return f"{CHECKSUMS_FILE} is not a table of checksums"
    for name, digest in sorted(sums.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} changed since it was saved ({path.stat().st_size} bytes now)"
    return None


@dataclass(frozen=True)
class MethodRecipe:
    """How a worker rebuilds a zero-shot method: registry name, options, plugins, context."""

    name: str
    options: dict[str, Any]
    plugins: PluginSources  # only the plugin that registered the method
    weights_dir: str | None
    batch_size: int
    seed: int

    def build(self):
        """``(method, context)`` in this process: through a :class:`ScoringSession` of the recipe's
        context (the CPU, one thread, no decoding workers, PIL decoding), not set up yet."""
        session = ScoringSession(self.plugins.load(), device="cpu", batch_size=self.batch_size, workers=0,
                                 weights_dir=Path(self.weights_dir) if self.weights_dir else None)
        return session.method(self.name, self.options), session.context(self.seed)


def recipe_for(method, registry, ctx) -> MethodRecipe | None:
    """A recipe for ``method``, or None when a worker could not rebuild it (a plugin that is not an
    importable module)."""
    from diqa_bench.parallel import CPU_BATCH  # lazy: loads multiprocessing

    entry = registry.methods.get(method.name)
    if entry is None or entry.plugin not in registry.plugins:
        return None
    try:
        plugins = PluginSources.of(registry, [entry.plugin])
    except UserError:
        return None
    # Small batches: on one core a large batch of photos runs slower per image than a small one, its
    # working set no longer fits the caches (benchmarks/PERF.md has the measurement).
    return MethodRecipe(method.name, dict(method.options), plugins, str(ctx.weights_dir) if ctx.weights_dir else None,
                        min(ctx.batch_size, CPU_BATCH), ctx.seed)


def resolve_weights_dir(*candidates: str | Path | None) -> Path | None:
    """The folder of pretrained weight files: the first of ``candidates`` given (a command-line
    option, then a config's ``weights_dir``), else ``$DIQA_BENCH_WEIGHTS``, else none."""
    for c in (*candidates, os.environ.get("DIQA_BENCH_WEIGHTS")):
        if c:
            return Path(c).expanduser()
    return None


def default_workers(device: str) -> int:
    # a GPU eats decoded images faster than a CPU method does: more decode workers by default there
    return min(8 if str(device).startswith("cuda") else 4, os.cpu_count() or 1)


@dataclass
class Prepared:
    """A method built, validated and ready to score, shared by ``diqa-bench score`` and the gate
    (:mod:`diqa_bench.gate`): ``ready()`` sets it up (and loads a trainable method's fit) at most
    once, only when an image needs it."""

    cls: type
    method: Any
    ctx: Any
    weights: str | None
    token: str
    ready: Callable[[], None]
    session: "ScoringSession | None" = None

    @property
    def lower_better(self) -> bool:
        return bool(self.method.lower_better)  # may be known only after setup

    @property
    def better(self) -> str:
        return "lower" if self.lower_better else "higher"


@dataclass
class ScoringSession:
    """One method context and everything scored in it (see the module's docstring). Build it with
    :meth:`open` (resolves the device, decoder, workers and weights folder) or, for a run,
    :meth:`for_run`."""

    registry: Any  # diqa_bench.plugins.Registry (None where no method is built by name)
    device: str = "cpu"  # resolved: "cpu", "cuda", "cuda:1", "mps"
    decoder: str = "pil"  # resolved: "pil" or "nvjpeg"
    batch_size: int = 16
    workers: int = 0
    cache_dir: Path | None = None
    weights_dir: Path | None = None
    progress: bool = False
    processes: int = 1  # CPU only: zero-shot methods score in this many single-threaded processes

    @classmethod
    def open(cls, registry: Registry | None, *, device: str | None = "auto", decode: str | None = "auto", batch_size: int = 16,
             workers: int | None = None, cache_dir: str | Path | None = None, weights_dir: str | Path | None = None,
             progress: bool = False, processes: int | None = 1) -> "ScoringSession":
        """A session with its device, decoder, workers (None: a default for the device) and weights
        folder (:func:`resolve_weights_dir`) resolved; usage errors raise UserError."""
        from diqa_bench.images import resolve_decoder  # lazy: loads numpy, PIL
        dev = resolve_device(device)
        return cls(registry, dev, resolve_decoder(decode, dev), batch_size, default_workers(dev) if workers is None else workers,
                   Path(cache_dir) if cache_dir is not None else None, resolve_weights_dir(weights_dir), progress, max(1, int(processes or 1)))

    @classmethod
    def for_run(cls, registry: Registry, options: Any, config: Any) -> "ScoringSession":
        """The session of a benchmark run: ``options`` a RunOptions, ``config`` its Config (for its
        ``weights_dir`` and pixel limit)."""
        import sys

        from diqa_bench.images import set_image_limits  # lazy: loads numpy, PIL

        if "max_image_pixels" in config.run_options:  # in the environment: decoding workers inherit it
            set_image_limits(config.run_options["max_image_pixels"])
        progress = sys.stderr.isatty() if options.progress is None else bool(options.progress)
        session = cls.open(registry, device=options.device, decode=options.decode, batch_size=options.batch_size, workers=options.workers,
                           cache_dir=Path(options.cache_dir), progress=progress, processes=options.processes)
        session.weights_dir = resolve_weights_dir(options.weights_dir, config.weights_dir)
        session.scores  # opened now: a cache folder that cannot be written is an error before any work
        return session

    # -- the cache -------------------------------------------------------------------------------
    @property
    def scores(self):
        """The score cache of ``cache_dir`` (opened on first use; None without a cache folder)."""
        if self.cache_dir is None:
            return None
        if getattr(self, "_scores", None) is None:
            from diqa_bench.cache import ScoreCache  # lazy: loads numpy, sqlite3

            self._scores = ScoreCache(self.cache_dir)
        return self._scores

    # -- methods ---------------------------------------------------------------------------------
    def context(self, seed: int = 0) -> MethodContext:
        return MethodContext(device=self.device, batch_size=self.batch_size, workers=self.workers, seed=seed, cache_dir=self.cache_dir,
                             weights_dir=self.weights_dir, progress=self.progress, decoder=self.decoder)

    def method(self, name: str, options: dict[str, Any] | None = None) -> Method:
        """Method ``name`` of the registry, built with ``options`` (not set up)."""
        return self.registry.method(name)(**dict(options or {}))

    def token(self, method: Method, fit: str | Path | None = None) -> str:
        """The score-cache token of ``method`` here: its configuration and the content of its weight
        files, plus the content of ``fit`` (a trainable method's saved fit it loads: its scores
        follow those files), plus a non-PIL decoder (nvJPEG's pixels differ slightly from PIL's, so
        they never share cache entries)."""
        from diqa_bench.cache import file_hash, stable_hash, weights_token  # lazy: loads numpy, sqlite3

        token = weights_token(method, self.context(0))
        if method.trainable and fit:
            root = Path(fit)
            files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
            token = "fit-file:" + stable_hash([token, [(str(p.relative_to(root)) if root.is_dir() else p.name, file_hash(p)) for p in files]])
        return token if self.decoder == "pil" else f"{token}|{self.decoder}"

    def prepare(self, name: str, options: dict | None = None, weights: str | None = None) -> Prepared:
        """Build method ``name`` with ``options`` (and ``weights``: a zero-shot method's weights file
        or a trainable method's saved fit) as ``score`` does; usage errors raise UserError."""
        from diqa_bench.config import validate_options  # lazy: loads numpy, yaml

        cls = self.registry.method(name)
        options = dict(options or {})
        if weights and not cls.trainable:
            if "weights" not in cls.options_schema:
                raise UserError(f"method {cls.name!r} takes no weights file")
            options["weights"] = weights
        validate_options(options, cls.options_schema, cls.required_options, f"method {cls.name} options", "score")
        if cls.trainable and not weights:
            raise UserError(f"method {cls.name!r} is trainable: pass --weights with a saved fit (a run saves them under <results>/models/)")
        if cls.trainable and not Path(weights).exists():
            raise UserError(f"--weights {weights}: no such file or folder")
        ctx = self.context(0)
        method = cls(**options)

        def setup() -> None:  # only on the in-process path: pool workers build their own method
            method.setup(ctx)
            if method.trainable:
                damage = model_damage(Path(weights)) if Path(weights).is_dir() else None
                if damage is not None:  # a model folder a run exported, changed since
                    raise UserError(f"--weights {weights}: damaged model ({damage})")
                method.load(Path(weights))

        return Prepared(cls, method, ctx, weights, self.token(method, weights), once(setup), self)

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, method: Method, token: str, keys: Sequence[str], paths: Sequence[str], *, ensure_setup: Callable[[], None],
              on_error: Callable[[str, str], None], cache: Any = "session", ctx: MethodContext | None = None, processes: int | None = None,
              skip_failing: bool = False, costs: Callable[[list[str]], Sequence[float]] | None = None, pool_from: int = 1,
              commit_every: int = 256, on_scores: Callable[[dict[str, float]], None] | None = None) -> dict[str, float]:
        """Scores of the images ``keys`` (content keys; ``paths`` their files, in the same order):
        those the score cache holds (``cache``: a ScoreCache, None for none, default this session's;
        a cached NaN is scored again: it is a skip now, and never trusted), then those the method's
        own caches give without pixels (:meth:`Method.score_from_cache`, asked only of a method
        that has such caches), then the rest computed by :func:`compute_scores` (on ``processes``,
        default the session's; ``costs(paths)``: their work estimate for the pool) and saved to the
        cache as they come. ``on_scores`` sees each lot found, the cached ones first.
        ``ensure_setup()`` runs only when the method itself is needed, so a fully cached list never
        loads a model. Images with no score go to ``on_error(key, reason)`` and are left out."""
        if isinstance(cache, str):
            cache = self.scores
        ctx = ctx or self.context(0)
        keys = list(keys)
        path_of = dict(zip(keys, paths))
        unique = list(dict.fromkeys(keys))
        have = {k: v for k, v in cache.get_many(token, unique).items() if math.isfinite(v)} if cache is not None else {}
        if have and on_scores is not None:
            on_scores(dict(have))

        def commit(found: dict[str, float]) -> None:
            if cache is not None:
                cache.put_many(token, found)
            have.update(found)
            if on_scores is not None:
                on_scores(found)

        todo = [k for k in unique if k not in have]
        if todo and type(method).score_from_cache is not Method.score_from_cache:
            ensure_setup()
            wanted = set(todo)
            early = {k: float(v) for k, v in method.score_from_cache(todo).items() if k in wanted}
            if early:  # scored from the method's own caches (e.g. features): no decoding
                commit(early)
                todo = [k for k in todo if k not in early]
        if todo:
            todo_paths = [path_of[k] for k in todo]
            compute_scores(method, ctx, todo_paths, todo, registry=self.registry, processes=self.processes if processes is None else processes,
                           on_error=lambda pos, msg: on_error(todo[pos], msg), commit=commit, ensure_setup=ensure_setup,
                           skip_failing=skip_failing, costs=costs(todo_paths) if costs is not None else None, pool_from=pool_from,
                           commit_every=commit_every)
        return have


def compute_scores(method: Method, ctx: MethodContext, paths: Sequence[str], keys: Sequence[str], *, registry: Registry | None, processes: int,
                   on_error: Callable[[int, str], None], commit: Callable[[dict[str, float]], None], ensure_setup: Callable[[], None],
                   skip_failing: bool = False, costs: Sequence[float] | None = None, pool_from: int = 1, commit_every: int = 256) -> None:
    """Score images that no cache holds; ``commit`` receives the scores as they come (a killed run
    keeps them). A zero-shot method on the CPU scores in the process pool, one single-threaded
    process per core (when ``processes > 1``, more than ``pool_from`` images, and its plugin is
    importable there; the parent then never builds the method); anything else in this process
    through the one batch loop, after ``ensure_setup()``. ``on_error(position, reason)`` receives
    the images that cannot be decoded, and with ``skip_failing`` those the method fails on."""
    from diqa_bench.parallel import score_in_processes  # lazy: loads multiprocessing

    recipe = None
    if processes > 1 and str(ctx.device) == "cpu" and not method.trainable and len(keys) > pool_from:
        recipe = recipe_for(method, registry, ctx)
    if recipe is not None:
        for done in score_in_processes(recipe, list(paths), list(keys), min(processes, len(keys)), on_error, skip_failing=skip_failing, costs=costs):
            commit(done)
        return
    from diqa_bench.images import iter_batches, iter_numpy_batches  # lazy: loads numpy, PIL

    ensure_setup()
    if method.numpy_pixels() and method.input_size is None and str(ctx.device) == "cpu":
        batches = iter_numpy_batches(paths, keys, range(len(keys)), on_error=on_error)  # no torch in this process
    else:
        batches = iter_batches(paths, keys, range(len(keys)), batch_size=ctx.batch_size, device=ctx.device, workers=ctx.workers,
                               size=method.input_size, on_error=on_error, decoder=ctx.decoder)
    pending: dict[str, float] = {}
    for batch, values in score_batches(method, batches, on_error, skip_failing=skip_failing):
        pending.update(zip(batch.keys, values))
        if len(pending) >= commit_every:
            commit(pending)
            pending = {}
    commit(pending)
