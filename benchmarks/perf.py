"""Speed of diqa-bench's runner against pyiqa's own loop, on the same images in one run.

    python benchmarks/perf.py                       # all parts, CPU, 64 images per size
    python benchmarks/perf.py --parts metrics --images 1000 --loop-images 150 --device cuda --workers 8 --batch-size 64 \
        --methods piqe brisque niqe musiq cross-domain
    python benchmarks/perf.py --parts grid          # default grid: naive per-unit vs runner, cold and warm
    python benchmarks/perf.py --parts memory        # peak RSS (and GPU memory) for 1,000 and 10,000 images
    python benchmarks/perf.py --parts score         # `diqa-bench score` vs pyiqa's loop on real photos, start-up included

Parts:
1. ``metrics``: generated JPEGs (512x384 and 1024x768). pyiqa's way: ``pyiqa.create_metric`` called
   on one file path at a time (pyiqa decodes each image itself, as its benchmark script does), in
   float32. diqa-bench's way: the runner's DataLoader (worker processes decode, same-size batches)
   feeding the method, in float32 (same precision as pyiqa) and in float64 (what the runner uses
   for the classical metrics). Prints images/s and ratios.
2. ``grid``: the default benchmark's grid (``--config``; by default benchmarks/cross_domain.yaml
   with fewer references so the naive run ends in minutes): (a) naive: every unit from scratch with
   an empty cache (nothing shared between cells), (b) the runner with a cold cache, (c) the runner
   again with the warm cache. The embedded images are generated once beforehand and shared by all
   three, so generation time is in none of them.
3. ``memory``: peak RSS for 1,000 and 10,000 generated images through the full runner (stub
   method; see benchmarks/scale.py), and peak GPU memory on CUDA.
4. ``score``: ``diqa-bench score`` against pyiqa's one-image loop on folders of real photos of
   mixed sizes (``--score-data``: the HAM10000 dermoscopy sample with the healthy-skin phone photos,
   and the 260 artefact crops, of ``../shared/data``; skipped, with the reason, when absent), each a fresh process timed from
   start to exit, start-up included, side by side in one run: what a service calling either on a
   folder of uploads waits. ``score`` runs with an empty cache (and once more warm), in its default
   precision and in pyiqa's float32.

Everything it prints is also appended, with the machine, GPU and versions, to benchmarks/PERF.md
(``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


# -- images ------------------------------------------------------------------------------------
def make_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0, distinct: int = 256) -> list[Path]:
    """``count`` paths to JPEGs of ``size`` (w, h): up to ``distinct`` different files (crops of
    scikit-image's bundled photos with a little noise), then the same files again in order, so
    large counts cost no generation time. Every path is decoded and scored each time."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    photos = [Image.open(data / n).convert("RGB") for n in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = size
    for i in range(min(count, distinct)):
        src = photos[i % len(photos)].resize((w + 32, h + 32), Image.Resampling.BICUBIC)
        x, y = rng.integers(0, 32, 2)
        arr = np.asarray(src.crop((x, y, x + w, y + h)), dtype=np.float32)
        arr = np.clip(arr + rng.normal(0, 2 + 6 * rng.random(), arr.shape), 0, 255).astype(np.uint8)
        p = folder / f"img{i:05d}.jpg"
        Image.fromarray(arr).save(p, quality=int(rng.integers(40, 95)))
        paths.append(p)
    return [paths[i % len(paths)] for i in range(count)]


# -- part 1: metrics ---------------------------------------------------------------------------
PYIQA_WEIGHTS = {"brisque": "brisque_svm_weights.pth", "niqe": "niqe_modelparameters.mat"}


def pyiqa_loop(name: str, paths: list[Path], device: str, weights_dir: Path | None) -> tuple[float, list[float]]:
    import pyiqa
    import torch

    kw = {}
    if name in PYIQA_WEIGHTS and weights_dir:
        kw["pretrained_model_path"] = str(weights_dir / PYIQA_WEIGHTS[name])
    if name.startswith("musiq"):
        kw = {"pretrained": False}  # random weights: speed only
    metric = pyiqa.create_metric(name, device=device, **kw)
    metric(str(paths[0]))  # warm-up
    sync(device)
    t0 = time.perf_counter()
    scores = []
    with torch.inference_mode():
        for p in paths:
            scores.append(float(metric(str(p))))
    sync(device)
    return len(paths) / (time.perf_counter() - t0), scores


def build_method(name: str, device: str, weights_dir: Path | None, float64: bool | None, batch_size: int, workers: int):
    """The method as the runner builds it (MUSIQ and the cross-domain model with random or untrained
    weights: these rows measure speed only). Returns (method, registry, context)."""
    from diqa_bench.methods import MethodContext
    from diqa_bench.plugins import load_plugins

    reg = load_plugins()
    method = reg.method(name)()
    if float64 is not None and hasattr(method, "float64"):
        method.float64 = float64
    ctx = MethodContext(device=device, batch_size=batch_size, workers=workers, weights_dir=weights_dir)
    if name.startswith("musiq"):
        method.build(device, None)  # random weights: speed only
    elif name == "cross-domain":
        method.setup(ctx)
        method.head = method.new_head().eval()  # untrained head: speed only (backbone + head forward)
    else:
        method.setup(ctx)
    return method, reg, ctx


def runner_path(name: str, paths: list[Path], device: str, weights_dir: Path | None, float64: bool | None, batch_size: int, workers: int,
                processes: int = 1, decoder: str = "pil", loader: str = "auto"):
    """Score through the same machinery a benchmark uses: on the CPU with ``processes > 1``, one
    single-threaded process per core (diqa_bench.parallel); otherwise DataLoader workers decode
    (``decoder``: PIL in the workers, or nvJPEG on the GPU) and same-size batches go to the method
    in this process."""
    from diqa_bench.cache import file_hash
    from diqa_bench.images import iter_batches
    from diqa_bench.batch_loop import score_batches

    method, reg, ctx = build_method(name, device, weights_dir, float64, batch_size, workers)
    keys = [file_hash(p) for p in paths]
    strs = [str(p) for p in paths]
    if processes > 1 and device == "cpu" and name not in ("cross-domain",) and not name.startswith("musiq"):
        from diqa_bench.parallel import score_in_processes, warm_up
        from diqa_bench.session import recipe_for

        recipe = recipe_for(method, reg, ctx)
        if float64 is not None:
            recipe = replace(recipe, options={**recipe.options, "precision": "float64" if float64 else "float32"})
        # warm-up: start the processes, build the metric and score one image in each (pyiqa's loop
        # is timed after create_metric and one call too)
        warm_up(recipe, processes, sample=strs[0])
        t0 = time.perf_counter()
        scores = {}
        for done in score_in_processes(recipe, strs, keys, processes, lambda pos, msg: None):
            scores.update(done)
        rate = len(paths) / (time.perf_counter() - t0)
        return rate, [scores[k] for k in keys]

    def batches(n: int, w: int):
        return iter_batches(strs[:n], keys[:n], range(n), batch_size=batch_size, device=device, workers=w, size=method.input_size, decoder=decoder,
                            loader=loader)

    for b in batches(min(batch_size, len(strs)), 0):  # warm-up on one batch (first-call allocations, kernel selection)
        method.score_batch(b)
    sync(device)
    t0 = time.perf_counter()
    scores = {}
    for b, values in score_batches(method, batches(len(strs), workers)):
        scores.update(zip(b.indices, values))
    sync(device)
    rate = len(paths) / (time.perf_counter() - t0)
    return rate, [scores[i] for i in range(len(paths))]


def forward_rate(name: str, paths: list[Path], device: str, weights_dir: Path | None, batch_size: int, workers: int, total: int) -> float:
    """The method alone on one batch already on the device, in the runner's precision: the ceiling
    a data path can at best reach."""
    from diqa_bench.images import iter_batches

    method, _, _ = build_method(name, device, weights_dir, None, batch_size, workers)
    strs = [str(p) for p in paths[:batch_size]]
    batch = next(iter(iter_batches(strs, strs, range(len(strs)), batch_size=batch_size, device=device, size=method.input_size)))
    method.score_batch(batch)
    sync(device)
    repeats = max(2, total // len(batch.keys))
    fresh = [replace(batch, keys=[f"{k}#{r}" for k in batch.keys]) for r in range(repeats)]  # no feature cache hits
    t0 = time.perf_counter()
    for b in fresh:
        method.score_batch(b)
    sync(device)
    return repeats * len(batch.keys) / (time.perf_counter() - t0)


def one_image_loop(name: str, paths: list[Path], device: str, weights_dir: Path | None) -> float:
    """For a method pyiqa does not have (the cross-domain model): the same model called the way
    pyiqa's loop calls a metric, one image at a time, decoded by PIL in this process."""
    import torch

    from diqa_bench.images import decode
    from diqa_bench.methods import Batch

    method, _, _ = build_method(name, device, weights_dir, None, 1, 0)

    def one(p: Path):
        t = torch.from_numpy(decode(p)).permute(2, 0, 1)[None].to(device)
        return method.score_batch(Batch(images=t, keys=[str(p)], paths=[str(p)], indices=[0]))

    one(paths[0])
    sync(device)
    t0 = time.perf_counter()
    for p in paths:
        one(p)
    sync(device)
    return len(paths) / (time.perf_counter() - t0)


def decode_rate(paths: list[Path], device: str, batch_size: int, workers: int, decoder: str, loader: str = "auto") -> float:
    """Images/s from JPEG files to float batches on the device, no method: the runner's data path alone."""
    from diqa_bench.images import iter_batches

    strs = [str(p) for p in paths]
    for _ in iter_batches(strs[:batch_size], strs, range(min(batch_size, len(strs))), batch_size=batch_size, device=device, workers=workers,
                          decoder=decoder, loader=loader):
        pass
    sync(device)
    t0 = time.perf_counter()
    n = 0
    for b in iter_batches(strs, strs, range(len(strs)), batch_size=batch_size, device=device, workers=workers, decoder=decoder, loader=loader):
        n += len(b.keys)
    sync(device)
    return n / (time.perf_counter() - t0)


def raw_decoder_rates(paths: list[Path], device: str, batch_size: int) -> tuple[float, float]:
    """The machine's decode ceilings, files already in memory: nvJPEG on batches of ``batch_size``
    (torchvision), and PIL on one core times the core count (perfect scaling: an upper bound)."""
    import io
    import warnings

    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    blobs = [p.read_bytes() for p in dict.fromkeys(paths)]
    t0 = time.perf_counter()
    for b in blobs[:64]:
        with Image.open(io.BytesIO(b)) as img:
            np.asarray(img.convert("RGB"))
    pil_all_cores = min(64, len(blobs)) / (time.perf_counter() - t0) * (os.cpu_count() or 1)
    nv = float("nan")
    if str(device).startswith("cuda"):
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_jpeg(data[:batch_size], mode=ImageReadMode.RGB, device=device)
            sync(device)
            t0 = time.perf_counter()
            n = 0
            for s in range(0, len(data), batch_size):
                n += len(decode_jpeg(data[s:s + batch_size], mode=ImageReadMode.RGB, device=device))
            sync(device)
        nv = n / (time.perf_counter() - t0)
    return nv, pil_all_cores


def part_metrics_gpu(args, tmp: Path) -> None:
    """Part 1 on a CUDA device: pyiqa's loop, the method's forward ceiling, the machine's decode
    ceilings, and the runner end to end: PIL in DataLoader processes (the default), PIL in a
    thread pool, and nvJPEG (``--decode gpu``, its bytes read in threads)."""
    import torch

    from diqa_bench.images import nvjpeg_available

    on_cuda = str(args.device).startswith("cuda")
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if on_cuda else args.device
    nvjpeg = nvjpeg_available(args.device) if on_cuda else True  # on the CPU (a smoke test of this part): torchvision's libjpeg
    say(f"### 1. Metrics on {gpu}: pyiqa's one-image loop vs the diqa-bench runner")
    say("")
    say(f"{args.images} JPEG paths per size ({min(args.images, 256)} distinct files, repeated), pyiqa's loop on the first {args.loop_images}; "
        f"runner batches of {args.batch_size}, {args.workers} decode threads (or processes). "
        "Forward: the method alone on one batch already on the GPU, in the runner's precision (float64 for the classical metrics, "
        "float32 in pyiqa's loop). Ceiling: the slower of forward and the machine's faster decoder (nvJPEG on in-memory batches, "
        "or PIL on one core times the cores). Default: PIL decoding in worker processes (scores identical to CPU runs); nvJPEG is "
        "`--decode gpu`. MUSIQ has random weights and the cross-domain model an untrained head (speed only); the cross-domain "
        "'pyiqa loop' is the same model called one image at a time.")
    say("")
    say("| size | nvJPEG, in memory | PIL, 1 core x cores | runner path: PIL threads | PIL threads x2 | PIL processes | nvJPEG |")
    say("|---|---|---|---|---|---|---|")
    sets = {}
    for w, h in args.sizes:
        paths = sets[(w, h)] = make_jpegs(tmp / f"{w}x{h}", args.images, (w, h))
        nv_raw, pil_raw = raw_decoder_rates(paths, args.device, args.batch_size)
        rates = [decode_rate(paths, args.device, args.batch_size, args.workers, "pil", "threads"),
                 decode_rate(paths, args.device, args.batch_size, 2 * args.workers, "pil", "threads"),
                 decode_rate(paths, args.device, args.batch_size, args.workers, "pil", "processes"),
                 decode_rate(paths, args.device, args.batch_size, args.workers, "nvjpeg", "threads") if nvjpeg else float("nan")]
        sets[(w, h, "decode")] = max(v for v in (nv_raw, pil_raw) if v == v)
        say(f"| {w}x{h} | {num(nv_raw, '.0f')} | {pil_raw:.0f} | " + " | ".join(num(r, ".0f") for r in rates) + " |")
    say("")
    say("| method | size | pyiqa loop | forward | runner (PIL, threads) | runner (PIL, processes) | runner (nvJPEG) | default (processes) vs pyiqa | best vs pyiqa | best / ceiling | peak GPU MiB |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    for w, h in args.sizes:
        paths = sets[(w, h)]
        for name in args.methods:
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            try:
                few = paths[: args.loop_images]
                if name == "cross-domain":
                    base = one_image_loop(name, few, args.device, args.weights_dir)
                else:
                    base = pyiqa_loop(name, few, args.device, args.weights_dir)[0]
                fwd = forward_rate(name, paths, args.device, args.weights_dir, args.batch_size, args.workers, args.images)
                run = {loader: runner_path(name, paths, args.device, args.weights_dir, None, args.batch_size, args.workers, loader=loader)[0]
                       for loader in ("threads", "processes")}
                r_nv = runner_path(name, paths, args.device, args.weights_dir, None, args.batch_size, args.workers, decoder="nvjpeg")[0] if nvjpeg else float("nan")
            except Exception as exc:  # a benchmark row that cannot run says why
                say(f"| {name} | {w}x{h} | not run: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | | | | | | | |")
                continue
            best = max(v for v in (run["threads"], run["processes"], r_nv) if v == v)
            ceiling = min(fwd, sets[(w, h, "decode")])
            peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else float("nan")
            say(f"| {name} | {w}x{h} | {num(base)} | {num(fwd)} | {num(run['threads'])} | {num(run['processes'])} | {num(r_nv)} | "
                f"{num(run['processes'] / base, '.1f', 'x')} | {num(best / base, '.1f', 'x')} | {num(100 * best / ceiling, '.0f', '%')} | {num(peak, '.0f')} |")
    say("")


def num(v: float, fmt: str = ".1f", suffix: str = "") -> str:
    return "n/a" if v != v else f"{v:{fmt}}{suffix}"


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def part_metrics(args, tmp: Path) -> None:
    say("### 1. Metrics: pyiqa's one-image loop vs the diqa-bench runner")
    say("")
    say(f"{args.images} JPEGs per size; device {args.device}; runner: " + (f"{args.processes} single-threaded processes, batches of 4 (start-up excluded, as pyiqa's create_metric is)" if args.device == "cpu" and args.processes > 1 else f"batch {args.batch_size}, {args.workers} decode workers") + ".")
    say("")
    say("| method | size | pyiqa loop img/s (float32) | runner img/s float32 | ratio | runner img/s float64 | ratio | max abs diff float32 vs pyiqa |")
    say("|---|---|---|---|---|---|---|---|")
    for w, h in args.sizes:
        paths = make_jpegs(tmp / f"{w}x{h}", args.images, (w, h))
        for name in args.methods:
            classical = name in ("brisque", "niqe", "piqe")
            try:
                base, base_scores = pyiqa_loop(name, paths, args.device, args.weights_dir) if name != "cross-domain" else (float("nan"), None)
                r32, s32 = runner_path(name, paths, args.device, args.weights_dir, False if classical else None, args.batch_size, args.workers, args.processes)
                r64, _ = runner_path(name, paths, args.device, args.weights_dir, True, args.batch_size, args.workers, args.processes) if classical else (float("nan"), None)
            except Exception as exc:  # a benchmark row that cannot run says why
                say(f"| {name} | {w}x{h} | not run: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | | | | | |")
                continue
            diff = float(np.max(np.abs(np.array(base_scores) - np.array(s32)))) if base_scores is not None and not name.startswith("musiq") else float("nan")
            say(f"| {name} | {w}x{h} | {num(base)} | {num(r32)} | {num(r32 / base, '.2f', 'x')} | {num(r64)} | "
                f"{num(r64 / base, '.2f', 'x')} | {num(diff, '.3g')} |")
    say("")


# -- part 4: score ----------------------------------------------------------------------------
PYIQA_LOOP = """
import sys
import pyiqa, torch
name, weights, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
metric = pyiqa.create_metric(name, device="cpu", **({"pretrained_model_path": weights} if weights else {}))
with torch.inference_mode():
    for p in paths:
        print(float(metric(p)))
"""

# (label, folders under --score-data, file pattern): phone photos with dermoscopy images, and the
# many small crops of mixed sizes a per-image loop spends most of its time on.
SCORE_SETS = (
    ("photos", ("derm-ham10000-sample70", "derm-healthy-skin-agppga"), "*"),
    ("crops", ("derm-artefacts-ham10000",), "*.png"),
)


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some images skipped, the rest scored
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds, proc


def part_score(args, tmp: Path) -> None:
    import csv

    from PIL import Image
    from scipy.stats import spearmanr

    from diqa_bench.images import list_images

    say("### 4. `diqa-bench score` vs pyiqa's one-image loop (real photos, start-up included)")
    say("")
    missing = [str(args.score_data / f) for _, folders, _ in SCORE_SETS for f in folders if not (args.score_data / f).is_dir()]
    if missing:
        say(f"not run: {', '.join(missing)} not found (--score-data)")
        say("")
        return
    sets = []
    for label, folders, pattern in SCORE_SETS:
        paths = [str(p) for p in list_images([args.score_data / f for f in folders]) if Path(p).match(pattern)]
        sizes = sorted({Image.open(p).size for p in paths}, key=lambda s: s[0] * s[1])
        say(f"- {label}: {len(paths)} images in {len(sizes)} sizes ({sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]}) "
            f"from {', '.join(folders)}" + (f" ({pattern})" if pattern != "*" else ""))
        sets.append((label, paths))
    say("")
    say(f"Each command a fresh process, timed from start to exit; `score` with {args.processes} processes and an empty cache unless "
        "marked warm. pyiqa's loop reads the pixels as stored; `score` turns photos upright by their EXIF orientation first, so "
        "rotated phone photos score differently (the last two columns).")
    say("")
    say("| images | method | pyiqa loop s | score s (default precision) | ratio | score s (float32) | ratio | score s (warm cache) "
        "| SROCC vs pyiqa | max abs diff float32 |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    cli = [sys.executable, "-m", "diqa_bench.cli", "score", "--device", "cpu", "--no-progress", "--processes", str(args.processes)]
    if args.weights_dir:
        cli += ["--weights-dir", str(args.weights_dir)]

    def score(paths: list[str], name: str, cache: str, *extra: str) -> tuple[float, list[float]]:
        out = tmp / f"score-{name}-{cache}.csv"
        seconds, proc = timed(cli + ["-m", name, *extra, "--cache-dir", str(tmp / f"score-cache-{name}-{cache}"), "-o", str(out), *paths])
        if not out.exists():
            raise RuntimeError(f"score wrote no CSV (exit {proc.returncode}): {' | '.join(proc.stderr.strip().splitlines()[-3:])}")
        rows = {r["path"]: r["score"] for r in csv.DictReader(out.open())}
        return seconds, [float(rows[p]) if rows.get(p) else float("nan") for p in paths]

    for label, paths in sets:
        for name in args.score_methods:
            weights = str(args.weights_dir / PYIQA_WEIGHTS[name]) if name in PYIQA_WEIGHTS and args.weights_dir else ""
            try:
                base_s, proc = timed([sys.executable, "-c", PYIQA_LOOP, name, weights, *paths])
                base = [float(v) for v in proc.stdout.split()]
                default_s, default = score(paths, name, f"{label}-default")
                f32_s, f32 = score(paths, name, f"{label}-float32", "--option", "precision=float32")
                warm_s, _ = score(paths, name, f"{label}-default")
            except Exception as exc:
                say(f"| {label} | {name} | not run: {type(exc).__name__}: {str(exc).splitlines()[0][:160]} | | | | | | | |")
                continue
            ok = [i for i in range(len(paths)) if default[i] == default[i] and f32[i] == f32[i] and base[i] == base[i]]
            rho = spearmanr([base[i] for i in ok], [default[i] for i in ok])[0]
            diff = max(abs(base[i] - f32[i]) for i in ok)
            say(f"| {label} | {name} | {base_s:.1f} | {default_s:.1f} | {base_s / default_s:.2f}x | {f32_s:.1f} | {base_s / f32_s:.2f}x | "
                f"{warm_s:.1f} | {rho:.4f} | {diff:.3g} |")
    say("")
    # The first score: one photo, start to exit (what a gate waits for on a single upload).
    one = sets[0][1][0]
    name = args.score_methods[0]
    weights = str(args.weights_dir / PYIQA_WEIGHTS[name]) if name in PYIQA_WEIGHTS and args.weights_dir else ""
    try:
        base_s, _ = timed([sys.executable, "-c", PYIQA_LOOP, name, weights, one])
        first_s, _ = timed(cli + ["-m", name, "--cache-dir", str(tmp / "score-cache-one"), one])
        say(f"One photo ({Path(one).name}), {name}, start to exit: `score` {first_s:.1f} s, pyiqa's loop {base_s:.1f} s. "
            f"Load average at the end (other work on this machine): {os.getloadavg()[0]:.1f}.")
    except Exception as exc:
        say(f"One photo: not run: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    say("")


# -- part 2: grid ------------------------------------------------------------------------------
def reduced_config(src: Path, dst: Path, references: int) -> Path:
    import yaml

    cfg = yaml.safe_load(src.read_text())
    for specs in cfg["domains"].values():
        for s in specs:
            if s["dataset"] in ("synthetic-skin", "skimage-natural", "skin-photos", "natural-photos"):  # the embedded domains
                s.setdefault("options", {})["references"] = references
    cfg["statistics"] = {"bootstrap": 200}
    dst.write_text(yaml.safe_dump(cfg))
    return dst


def part_grid(args, tmp: Path) -> None:
    from diqa_bench import config as cfgmod
    from diqa_bench.plugins import load_plugins
    from diqa_bench.plan import Plan
    from diqa_bench.runner import RunOptions, run_benchmark
    from diqa_bench.scorer import Scorer

    src = Path(args.config)
    cfg_path = reduced_config(src, tmp / "grid.yaml", args.references) if args.references else src
    reg = load_plugins()
    cfg = cfgmod.parse(cfg_path, reg)
    shared = tmp / "shared-datasets"

    def opts(cache: Path, out: Path) -> RunOptions:
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / "datasets").exists():
            (cache / "datasets").symlink_to(shared, target_is_directory=True)
        return RunOptions(out=out, cache_dir=cache, device=args.device, workers=args.workers, batch_size=args.batch_size, progress=False,
                          processes=args.processes, reports=False,
                          weights_dir=str(args.weights_dir) if args.weights_dir else None)

    quiet = lambda msg: None  # noqa: E731
    shared.mkdir(parents=True)
    opts(tmp / "gen-cache", tmp / "gen-out")
    Plan.build(cfg, reg, tmp / "gen-cache", log=quiet)  # generate the datasets once, outside every timing

    t0 = time.perf_counter()
    outcomes, _ = run_benchmark(cfg, reg, opts(tmp / "cache", tmp / "out-cold"), quiet)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_benchmark(cfg, reg, opts(tmp / "cache", tmp / "out-warm"), quiet)
    warm = time.perf_counter() - t0

    # naive: each unit alone, with an empty cache (what a script looping over cells would do)
    t0 = time.perf_counter()
    opts(tmp / "naive-0", tmp / "naive-out")
    plan = Plan.build(cfg, reg, tmp / "naive-0", log=quiet)
    units = plan.units
    for i, unit in enumerate(units):
        Scorer(plan, reg, opts(tmp / f"naive-{i + 1}", tmp / "naive-out"), quiet).run_unit(unit)
    naive = time.perf_counter() - t0

    ok = sum(o.status == "ok" for o in outcomes)
    say("### 2. The grid: naive per-unit runs vs the runner")
    say("")
    say(f"Config `{src}`" + (f" with {args.references} references per embedded domain" if args.references else "") +
        f": {len(units)} units, {len(outcomes)} cells ({ok} with results); device {args.device}.")
    say("")
    say("| run | seconds | vs naive |")
    say("|---|---|---|")
    say(f"| naive (every unit from an empty cache) | {naive:.1f} | 1.00x |")
    say(f"| runner, cold cache | {cold:.1f} | {naive / cold:.2f}x faster |")
    say(f"| runner, warm cache (re-run) | {warm:.1f} | {warm / cold * 100:.1f}% of the cold run |")
    say("")


# -- part 3: memory ----------------------------------------------------------------------------
def part_memory(args, tmp: Path) -> None:
    say("### 3. Peak memory vs dataset size")
    say("")
    out = subprocess.run([sys.executable, str(HERE / "scale.py"), "--sizes", *map(str, args.memory_sizes), "--workers", str(args.workers), "--device", args.device],
                         capture_output=True, text=True, check=True)
    for line in out.stdout.strip().splitlines():
        say(f"    {line}")
    say("")


def machine() -> list[str]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        from importlib.metadata import version

        pyiqa_v = version("pyiqa")
    except Exception:
        pyiqa_v = "?"
    return [
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs; GPU: {gpu}",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, pyiqa {pyiqa_v}",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["metrics", "grid", "memory", "score"], choices=["metrics", "grid", "memory", "score"])
    ap.add_argument("--images", type=int, default=64, help="images per size (part 1)")
    ap.add_argument("--loop-images", type=int, default=None, help="images for pyiqa's one-image loop (default: --images; CUDA part 1 only)")
    ap.add_argument("--sizes", nargs="+", default=["512x384", "1024x768"])
    ap.add_argument("--methods", nargs="+", default=["piqe", "brisque", "niqe"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="CPU scoring processes (the runner's default)")
    ap.add_argument("--weights-dir", type=Path, default=Path(os.environ["DIQA_BENCH_WEIGHTS"]) if os.environ.get("DIQA_BENCH_WEIGHTS") else (REPO.parent / "shared" / "weights"))
    ap.add_argument("--config", default=str(REPO / "benchmarks" / "cross_domain.yaml"))
    ap.add_argument("--references", type=int, default=3, help="references per embedded domain in part 2 (0: as in the config)")
    ap.add_argument("--memory-sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--score-data", type=Path, default=REPO.parent / "shared" / "data", help="folder holding the real photos of part 4")
    ap.add_argument("--score-methods", nargs="+", default=["piqe"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    args.loop_images = min(args.loop_images or args.images, args.images)
    if not args.weights_dir.is_dir():
        args.weights_dir = None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    say(f"## Run: {' '.join(args.parts)} (rename to the next run number)")
    say("")
    say("Command: `python benchmarks/perf.py " + " ".join(sys.argv[1:]) + "`")
    say("")
    LINES.extend(machine())
    print("\n".join(machine()))
    say("")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["DIQA_BENCH_CACHE"] = str(tmp / "default-cache")
        if "metrics" in args.parts:
            (part_metrics_gpu if str(args.device).startswith("cuda") else part_metrics)(args, tmp)
        if "grid" in args.parts:
            part_grid(args, tmp)
        if "memory" in args.parts:
            part_memory(args, tmp)
        if "score" in args.parts:
            part_score(args, tmp)
    if not args.no_write:
        with open(HERE / "PERF.md", "a", encoding="utf-8") as f:
            f.write("\n".join(LINES) + "\n\n")
        print(f"appended to {HERE / 'PERF.md'}")


if __name__ == "__main__":
    main()
