"""The IQA method contract.

A method turns a batch of images into one quality score per image. Zero-shot methods (BRISQUE, NIQE,
MUSIQ with its published weights) only score; trainable methods (``trainable = True``) are first
fitted on a training set, then score. The harness (the scorer and :mod:`diqa_bench.images`) owns decoding, batching, devices and caching; a
method only sees tensors.

Minimal example::

    class Sharpness(Method):
        name = "sharpness"
        version = "1"
        lower_better = False

        def score_batch(self, batch):
            gray = batch.images.mean(1)
            return gray.diff(dim=-1).abs().mean((1, 2))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Sequence

from diqa_bench.batch import Batch, FeatureCache  # part of the method contract plugins import from here
from diqa_bench.licences import Licence

if TYPE_CHECKING:  # torch is imported only where a method actually runs
    import torch

    from diqa_bench.licences import Licence


@dataclass
class MethodContext:
    """What the scorer tells a method about where it runs."""

    device: str = "cpu"  # "cpu", "cuda", "cuda:1", "mps"
    batch_size: int = 16
    workers: int = 0
    seed: int = 0
    cache_dir: Path | None = None  # a method may keep its own caches below cache_dir / name
    weights_dir: Path | None = None  # folder of pretrained weight files (config weights_dir / DIQA_BENCH_WEIGHTS)
    progress: bool = False
    decoder: str = "pil"  # "pil", or "nvjpeg" (JPEGs decoded on the GPU): part of every cache key it affects

    def feature_cache(self, namespace: str) -> FeatureCache:
        """A disk cache of per-image feature arrays, shared by every cell of every run. Features of
        nvJPEG-decoded pixels are kept apart from PIL-decoded ones (the pixels differ slightly)."""
        # cache and images import numpy and PIL: `diqa-bench list` imports this module and needs neither
        from diqa_bench.cache import SqliteFeatureCache  # lazy: loads numpy, sqlite3

        if self.decoder != "pil":
            namespace = f"{namespace}|{self.decoder}"

        if self.cache_dir is None:
            from diqa_bench.cache import MemoryFeatureCache  # lazy: loads numpy, sqlite3

            return MemoryFeatureCache()
        return SqliteFeatureCache(Path(self.cache_dir) / "features.sqlite", namespace)


@dataclass
class TrainSample:
    """One training image. ``mos_norm`` is the MOS normalised within its own dataset (0 = worst,
    1 = best, direction already applied), so samples from datasets on different scales can share one
    regression target. Compare raw ``mos`` only between samples of the same ``dataset``."""

    key: str
    path: str
    mos: float
    mos_norm: float
    dataset: str
    domain: str
    group: str
    distortion: str | None = None
    id: str = ""  # the image's id within its dataset


@dataclass
class TrainingData:
    """The training set of one grid cell: samples from one or more domains, plus a decoder."""

    samples: list[TrainSample]
    domains: list[str] = field(default_factory=list)
    # How batches are decoded: callable(samples, positions, batch_size, size, shuffle, seed, loader) -> Iterator[Batch],
    # e.g. diqa_bench.images.training_loader(ctx). Built by from_samples() (the scorer passes on_error: it records
    # undecodable images as skips); a test or benchmark may pass its own.
    loader: Any = None

    @classmethod
    def from_samples(cls, samples: Sequence[TrainSample], ctx: MethodContext | None = None, domains: Sequence[str] | None = None,
                     on_error: Callable[[TrainSample, str], None] | None = None) -> "TrainingData":
        """A training set that decodes its images as scoring does, on ``ctx.device`` (default:
        the CPU): what a plugin's tests hand to ``fit``. An undecodable image raises DataError, or
        with ``on_error(sample, reason)`` is reported there and left out of its batch.
        ``domains`` defaults to the samples' domains, in order of appearance."""
        from diqa_bench.images import training_loader  # lazy: numpy and PIL, only once a training set is built

        samples = list(samples)
        doms = list(domains) if domains is not None else list(dict.fromkeys(s.domain for s in samples))
        return cls(samples=samples, domains=doms, loader=training_loader(ctx or MethodContext(), on_error))

    def __len__(self) -> int:
        return len(self.samples)

    def batches(
        self,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        size: tuple[int, int] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        loader: str = "auto",
    ) -> Iterator[Batch]:
        """Decode the samples (or those at ``indices``) in batches on the context's device.
        ``Batch.indices`` point into ``self.samples``. ``size`` resizes to (H, W). ``loader``:
        "threads" for many short calls (one per training step: a thread pool that outlives the
        call instead of decoding processes started for each), else "auto"."""
        if self.loader is None:
            raise RuntimeError("TrainingData has no image loader: build it with TrainingData.from_samples(samples, ctx)")
        idx = list(range(len(self.samples))) if indices is None else list(indices)
        return self.loader(self.samples, idx, batch_size, size, shuffle, seed, loader)


class Method:
    """Base class of every IQA method. Subclass it and register the subclass through the
    ``register_methods`` hook.

    Class attributes a subclass sets:

    - ``name``: unique, used in configs (``methods: [{name: ...}]``) and tables;
    - ``version``: bump it when scores change; it is part of every cache key;
    - ``lower_better``: True when a lower score means better quality (BRISQUE, NIQE). May be set per
      instance in ``__init__`` or ``setup`` (e.g. from a wrapped library's metadata);
    - ``trainable``: True for methods fitted on a train set (then implement fit/save/load);
    - ``input_size``: (height, width) the image loader resizes to, or None to score images at native size;
    - ``options_schema``: JSON-schema ``properties`` of the options the method accepts; any other
      option is a config error;
    - ``score_range``: (low, high) of the scores, when known (used for tolerances and reports).

    And :meth:`licences`: what is known of the licences it depends on (default: unknown).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    description: ClassVar[str] = ""
    lower_better: bool = False
    trainable: ClassVar[bool] = False
    input_size: tuple[int, int] | None = None
    score_range: tuple[float, float] | None = None
    options_schema: ClassVar[dict[str, Any]] = {}
    required_options: ClassVar[list[str]] = []

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        """Load weights and move to ``ctx.device``. Raise
        :class:`diqa_bench.errors.MethodUnavailable` with a one-line reason (which file is missing
        and where to put it) when the method cannot run here."""

    def score_batch(self, batch: Batch) -> "torch.Tensor | Sequence[float]":
        """Return one score per image of ``batch`` (a tensor or a sequence of floats)."""
        raise NotImplementedError

    def numpy_pixels(self) -> bool:
        """True when this method, as set up, scores batches of numpy pixels (see :class:`Batch`):
        then the runner decodes images of native size in this process without importing torch
        (start-up seconds, and a float32 copy of each image, saved). Default: False (tensors)."""
        return False

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        """Scores for those of ``keys`` (image content hashes) this method can give without the
        pixels, e.g. from per-image features it cached earlier; the scorer decodes only the rest.
        Must equal what :meth:`score_batch` would return. The default gives none."""
        return {}

    def teardown(self) -> None:
        """Release memory (GPU) after a cell. The default does nothing."""

    # -- trainable methods ---------------------------------------------------------------------
    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        raise NotImplementedError(f"{self.name} is not trainable")

    def save(self, folder: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be saved")

    def load(self, folder: Path) -> None:
        raise NotImplementedError(f"{self.name} cannot be loaded")

    # -- identity --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What this instance runs as once fitted or loaded, when its options do not say it alone
        (e.g. ``mode: auto`` choosing a frozen-backbone head on CPU and full fine-tuning on CUDA).
        Saved beside each fitted model as ``description.json`` and reported in run.json and the
        leaderboard's protocol, so one row name never hides two different models. Default: none."""
        return {}

    def weight_files(self, ctx: MethodContext) -> list[Path]:
        """The pretrained weight files ``setup(ctx)`` would load, found as setup finds them but
        without loading anything (a missing one is left out: setup reports it). Their content is
        part of every score-cache and fit key (:func:`diqa_bench.cache.weights_token`) and run.json
        lists them, so other weights never get the cached scores of the old ones. Default: none."""
        return []

    def cache_token(self, options: dict[str, Any] | None = None) -> str:
        """Everything the scores depend on but the weight files: name, version and ``options``
        (default: this instance's) as a stable hash."""
        blob = json.dumps({"name": self.name, "version": self.version, "options": self.options if options is None else options},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def licences(cls, options: dict[str, Any] | None = None) -> "list[Licence]":
        """What is known of the licences of the code, weights and parameter files this method
        runs on (``options``: a configuration's, when they change it), each with its source: see
        :mod:`diqa_bench.licences`. Must be cheap and import nothing heavy (``diqa-bench list``
        shows it): read distribution metadata with :func:`diqa_bench.licences.from_distribution`.
        The default: the method's code, licence unknown."""

        return [Licence("code", f"method {cls.name}")]

    @classmethod
    def kind(cls) -> str:
        return "trainable" if cls.trainable else "zero-shot"


REQUIRED_METHOD_ATTRS = ("name", "version", "lower_better")


def options_table(schema: dict[str, Any], defaults: dict[str, Any]) -> str:
    """A Markdown table (option, default, meaning) of an options schema: the README's option tables
    are this function's output, and a test keeps them equal, so they cannot drift from the code."""

    def shown(value: Any) -> str:
        if value is None:
            return "none"
        if isinstance(value, bool):
            return str(value).lower()
        return f"`{value}`" if isinstance(value, str) else str(value)

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for name, spec in schema.items():
        rows.append(f"| `{name}` | {shown(defaults.get(name))} | {spec.get('description', '')} |")
    return "\n".join(rows) + "\n"
