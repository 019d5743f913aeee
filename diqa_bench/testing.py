"""Stub plugins and a tiny-benchmark helper, for diqa-bench's own tests and for plugin authors.

The stubs are real (they load, score and fit), just tiny: images are small generated PNGs whose
labels measure one distortion each, so pick the one your method measures:

- ``stub-dataset``: N noisy gradient images in G content groups, MOS 1-5 (or DMOS with
  ``lower_better: true``) falling with the amount of NOISE added. A noise measure correlates; a
  sharpness measure does not (noise adds edges: it calls the noisiest image the sharpest);
- ``stub-blur``: N stripe and checkerboard images in G content groups, MOS 1-5 falling with the
  amount of Gaussian BLUR (five levels, sharp to very blurred). A sharpness measure (e.g. the
  variance of the Laplacian) correlates positively;
- ``stub-noise``: zero-shot, lower is better: the mean absolute Laplacian (noise energy). Options
  ``fail``, ``nan``, ``unavailable``, ``extra_scores`` (return that many scores more, or fewer
  when negative, than images) and ``min_size`` (fail on images smaller than that, like NIQE
  below 96x96) make it misbehave, for failure-path tests; ``jitter`` adds that much seeded
  noise (a standard normal per image, from its content hash) to every score: a worse method,
  for ablation tests;
- ``stub-linear``: trainable: a least-squares line from noise energy to normalised MOS.

Register them with ``load_plugins(extra=[("stub", diqa_bench.testing)])``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError, MethodUnavailable
from diqa_bench.hookspecs import hookimpl
from diqa_bench.methods import Method
from diqa_bench.files import read_csv


class _GeneratedStub(Dataset):
    """What the stub datasets share: ``count`` images in ``groups`` content groups at five
    distortion levels (image i: group i % groups, level (i // groups) % 5), drawn into the cache
    once; MOS 1-5 falls with the level. A subclass says how one image looks (:meth:`draw`)."""

    options_schema = {
        "count": {"type": "integer", "minimum": 3},
        "groups": {"type": "integer", "minimum": 2},
        "size": {"type": "integer", "minimum": 8},
        "seed": {"type": "integer"},
    }
    folder = prefix = group_prefix = distortion = ""

    def __init__(self, count: int, groups: int, size: int, seed: int, **options) -> None:
        super().__init__(count=count, groups=groups, size=size, seed=seed, **options)
        self.count, self.groups, self.size, self.seed = count, groups, size, seed
        self.mos_range = (1.0, 5.0)
        self.pseudo_mos = True

    def key(self) -> str:
        return f"{self.count}-{self.groups}-{self.size}-{self.seed}"

    def draw(self, group: int, level: int, rng):
        raise NotImplementedError

    def load(self, ctx: DatasetContext) -> list[Record]:
        folder = Path(ctx.cache_dir) / self.folder / self.key()
        folder.mkdir(parents=True, exist_ok=True)
        self.root = folder
        rng = np.random.default_rng(self.seed)
        records = []
        for i in range(self.count):
            g = i % self.groups
            level = (i // self.groups) % 5
            img = self.draw(g, level, rng)  # always drawn: the generator's stream stays the same when cached
            path = folder / f"{self.prefix}{i:04d}.png"
            if not path.exists():
                img.save(path)
            mos = float(np.clip(5 - level - 0.3 * rng.random(), 1, 5))
            if getattr(self, "lower_better", False):
                mos = 6.0 - mos
            records.append(Record(id=path.stem, path=path.name, mos=mos, group=f"{self.group_prefix}{g}", distortion=self.distortion, level=level + 1))
        return records


class StubDataset(_GeneratedStub):
    name = "stub-dataset"
    description = "tiny generated images whose MOS falls with added noise (for tests)"
    options_schema = _GeneratedStub.options_schema | {"lower_better": {"type": "boolean"}, "tag": {"type": "string"}}
    folder, prefix, group_prefix, distortion = "stub", "img", "ref", "noise"

    def __init__(self, count: int = 24, groups: int = 6, size: int = 32, seed: int = 0, lower_better: bool = False, tag: str = "") -> None:
        super().__init__(count, groups, size, seed, lower_better=lower_better, tag=tag)
        self.tag, self.lower_better = tag, lower_better

    def key(self) -> str:
        return f"{super().key()}-{self.tag}"

    def draw(self, group: int, level: int, rng):
        from PIL import Image

        yy, xx = np.mgrid[0 : self.size, 0 : self.size] / self.size
        base = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * (group + 1) + yy))
        noise = rng.normal(0, 0.04 * level + 0.005 * rng.random(), base.shape)
        img = np.clip(np.stack([base, base * 0.9, base * 0.8], -1) + noise[..., None], 0, 1)
        return Image.fromarray((img * 255).round().astype(np.uint8))


class StubBlur(_GeneratedStub):
    name = "stub-blur"
    description = "tiny generated patterns whose MOS falls with added blur (for tests of sharpness methods)"
    options_schema = _GeneratedStub.options_schema | {"size": {"type": "integer", "minimum": 16}}
    folder, prefix, group_prefix, distortion = "stub-blur", "blur", "pattern", "blur"

    def __init__(self, count: int = 30, groups: int = 6, size: int = 48, seed: int = 0) -> None:
        super().__init__(count, groups, size, seed)
        self.synthetic = True

    def draw(self, group: int, level: int, rng):
        from PIL import Image, ImageFilter

        yy, xx = np.indices((self.size, self.size))
        period = 4 + 2 * (group % 3)  # stripes or checks, a few pixels wide: plenty of edges to lose
        pattern = (xx // period) % 2 if group % 2 else ((xx // period) + (yy // period)) % 2
        sharp = Image.fromarray((pattern * 160 + 40).astype(np.uint8)).convert("RGB")
        return sharp.filter(ImageFilter.GaussianBlur(radius=0.8 * level))


def noise_energy(images) -> "Any":
    """The mean absolute Laplacian of each image [B,3,H,W] in [0,1]: stub-noise's score, and the feature
    stub-linear fits on (tests recompute it to check a score)."""
    import torch

    # float64 and rounded: a float32 convolution sums in an order that depends on the thread count,
    # and tests compare tables from processes with different thread counts (Ray, the process pool)
    gray = images.double().mean(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64, device=images.device).view(1, 1, 3, 3)
    energy = torch.nn.functional.conv2d(gray, kernel).abs().mean((1, 2, 3))
    return torch.round(energy * 1e9) / 1e9


class StubNoise(Method):
    name = "stub-noise"
    version = "1"
    description = "noise energy (mean |Laplacian|); lower is better (for tests)"
    lower_better = True
    options_schema = {"fail": {"type": "boolean"}, "nan": {"type": "boolean"}, "unavailable": {"type": "boolean"}, "weights": {"type": ["string", "null"]},
                      "extra_scores": {"type": "integer"}, "min_size": {"type": "integer", "minimum": 1}, "jitter": {"type": "number", "minimum": 0}}

    calls = 0  # images scored by all instances: lets tests prove what the cache saved

    def setup(self, ctx) -> None:
        if self.options.get("unavailable"):
            raise MethodUnavailable("missing weights file stub.pth: put it in the weights folder (DIQA_BENCH_WEIGHTS)")

    def score_batch(self, batch):
        import torch

        if self.options.get("fail"):
            raise RuntimeError("stub failure on purpose")
        height, width = batch.images.shape[-2:]
        if min(height, width) < self.options.get("min_size", 0):
            raise DataError(f"stub-noise needs at least {self.options['min_size']} pixels a side, got {height}x{width}")
        StubNoise.calls += len(batch.keys)
        out = noise_energy(batch.images)
        if self.options.get("jitter"):
            import hashlib

            noise = [np.random.default_rng(int(hashlib.blake2b(k.encode(), digest_size=8).hexdigest(), 16)).standard_normal() for k in batch.keys]
            out = out + self.options["jitter"] * torch.tensor(noise, dtype=out.dtype, device=out.device)
        if self.options.get("nan"):
            out[0] = float("nan")
        extra = self.options.get("extra_scores", 0)
        if extra > 0:
            out = torch.cat([out, out.new_zeros(extra)])
        elif extra < 0:
            out = out[:extra]
        return out


class StubLinear(Method):
    name = "stub-linear"
    version = "1"
    description = "least-squares line from noise energy to normalised MOS (for tests)"
    lower_better = False
    trainable = True
    options_schema = {"slow": {"type": "boolean"}}

    fits = 0

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.coef: list[float] | None = None

    def fit(self, data, ctx) -> None:
        feats = np.zeros(len(data))
        for batch in data.batches():
            feats[batch.indices] = noise_energy(batch.images).cpu().numpy()
        target = np.array([s.mos_norm for s in data.samples])
        self.coef = np.polyfit(feats, target, 1).tolist()
        StubLinear.fits += 1

    def score_batch(self, batch):
        return np.polyval(self.coef, noise_energy(batch.images).cpu().numpy())

    def save(self, folder: Path) -> None:
        (Path(folder) / "linear.json").write_text(json.dumps({"coef": self.coef}))

    def load(self, folder: Path) -> None:
        folder = Path(folder)
        path = folder / "linear.json" if folder.is_dir() else folder
        self.coef = json.loads(path.read_text())["coef"]


@hookimpl
def register_datasets(register):
    register(StubDataset)
    register(StubBlur)


@hookimpl
def register_methods(register):
    register(StubNoise)
    register(StubLinear)


def stub_config(methods: list[dict] | None = None, seeds: list[int] | None = None, **overrides) -> dict[str, Any]:
    """A small two-domain config over stub datasets; override any key."""
    cfg: dict[str, Any] = {
        "name": "stub",
        "domains": {
            "a": [{"dataset": "stub-dataset", "name": "stub-a", "options": {"count": 30, "seed": 1, "tag": "a"}}],
            "b": [{"dataset": "stub-dataset", "name": "stub-b", "options": {"count": 30, "seed": 2, "tag": "b"}}],
        },
        "methods": methods or [{"name": "stub-noise"}, {"name": "stub-linear"}],
        "train_sets": [["a"], ["b"], ["a", "b"]],
        "test_domains": ["a", "b"],
        "splits": {"test_ratio": 0.34, "seeds": seeds or [0, 1]},
        "statistics": {"bootstrap": 200},
    }
    cfg.update(overrides)
    return cfg


@dataclass
class BenchmarkResult:
    out: Path
    exit_code: int  # as the CLI's: 1 when a cell failed; "not run" (e.g. missing weights) is not a failure
    metrics: Any  # pandas DataFrame (tidy)
    scores: Any  # pandas DataFrame
    run: dict[str, Any]
    leaderboard: str

    def value(self, method: str, train: str, test: str, statistic: str = "SROCC", seed: str = "all") -> float:
        m = self.metrics
        row = m[(m.method == method) & (m.train == train) & (m.test == test) & (m.statistic == statistic) & (m.seed.astype(str) == str(seed))]
        if row.empty:
            raise KeyError(f"no {statistic} for {method} @ {train} -> {test} (seed {seed})")
        return float(row.value.iloc[0])


class InterruptOnCall:
    """Wraps a function and raises KeyboardInterrupt (as Ctrl-C would) on its ``n``-th call; the
    other calls go through. For tests of interrupted runs: ``monkeypatch.setattr(Scorer,
    "run_unit", InterruptOnCall(Scorer.run_unit, 2))``."""

    def __init__(self, fn, n: int):
        self.fn, self.n, self.calls = fn, n, 0

    def __call__(self, *args, **kw):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.fn(*args, **kw)


def isolated_registry(plugins: list[tuple[str, Any] | str] | None = None):
    """A registry of the stub plugins plus exactly ``plugins``: (name, module) pairs, or the names
    of installed entry points. No other installed plugin loads, so a plugin's tests give the same
    result whether or not it (or anything else) is installed."""
    from diqa_bench.plugins import load_plugins, only_entry_points  # lazy: loads importlib.metadata (plugin discovery)

    stubs = sys.modules[__name__]

    extra = [p for p in plugins or [] if not isinstance(p, str)]
    entry_points = [p for p in plugins or [] if isinstance(p, str)]
    with only_entry_points(entry_points):
        return load_plugins(extra=[("stub", stubs), *extra])


def run_tiny_benchmark(tmp_path: Path, config: dict[str, Any] | None = None, plugins: list[tuple[str, Any] | str] | None = None,
                       **run_kw) -> BenchmarkResult:
    """Run a benchmark in ``tmp_path`` (config file, cache and results all inside it) on CPU (or
    ``device=``) with the stub plugins plus ``plugins`` (see :func:`isolated_registry`); returns
    its stored tables. Figures and report.html only with ``reports=True`` (they take seconds)."""
    import yaml

    from diqa_bench import config as cfgmod  # lazy: loads yaml, importlib.metadata (plugin discovery)
    from diqa_bench.store import RESULT_FILES, load_results  # lazy: loads filelock
    from diqa_bench.runner import RunOptions, run_benchmark  # lazy: loads scipy, yaml, tabulate

    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg_path = tmp_path / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(config or stub_config()))
    registry = isolated_registry(plugins)
    cfg = cfgmod.parse(cfg_path, registry)
    out = Path(run_kw.pop("out", tmp_path / "results"))
    opts = RunOptions(out=out, cache_dir=Path(run_kw.pop("cache_dir", tmp_path / "cache")), device=run_kw.pop("device", "cpu"), workers=run_kw.pop("workers", 0),
                      batch_size=run_kw.pop("batch_size", 8), progress=False, reports=run_kw.pop("reports", False), **run_kw)
    outcomes, _ = run_benchmark(cfg, registry, opts, log=lambda msg: None)
    metrics, info = load_results(out)
    exit_code = 1 if any(o.status == "failed" for o in outcomes) else 0

    return BenchmarkResult(out, exit_code, metrics, read_csv(out / RESULT_FILES["scores"]), info, (out / RESULT_FILES["leaderboard"]).read_text())
