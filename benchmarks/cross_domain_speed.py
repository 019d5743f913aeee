"""Throughput of the cross-domain model: training (head and finetune modes) and inference, in
images per second, at batch sizes 1, 32 and 128, on CUDA when available (else CPU).

    .venv/bin/python benchmarks/cross_domain_speed.py                 # ~2 min on 2 idle CPU cores
    .venv/bin/python benchmarks/cross_domain_speed.py --images 512 --device cuda
    .venv/bin/python benchmarks/cross_domain_speed.py --threads 1     # a CPU shared with other jobs

Training numbers come from ``CrossDomain.fit`` itself on generated 256x256 PNG files (decoding
included, one epoch, no validation split); inference from ``score_batch`` on in-memory batches;
the hand-crafted quality features (``handcrafted: nss`` / ``full``) alone on in-memory batches.
``--cell-images`` also times one head-mode cell of the default benchmark with default options:
cold (features extracted) and warm (features from the cache, as every later cell sees them).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from diqa_cross_domain.method import CrossDomain
from PIL import Image

from diqa_bench.images import training_loader
from diqa_bench.methods import Batch, MethodContext, TrainingData, TrainSample


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[TrainSample]:
    """n synthetic noisy-gradient images in two domains, with a synthetic pseudo-MOS (noise level)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None] * np.ones((size, 1, 3))
    samples = []
    for i in range(n):
        level = i % 5
        img = np.clip(ramp * rng.uniform(0.3, 1.0, 3) + rng.normal(0, 0.04 * level, ramp.shape), 0, 1)
        path = folder / f"img{i:05d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(path)
        domain = "skin" if i % 3 == 0 else "natural"
        samples.append(TrainSample(key=f"bench-{size}-{i}", path=str(path), mos=5.0 - level, mos_norm=(4 - level) / 4,
                                   dataset=f"synthetic-{domain}", domain=domain, group=f"ref{i // 5}"))
    return samples


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_fit(samples, ctx, **options) -> tuple[CrossDomain, float]:
    method = CrossDomain(**options)
    method.setup(ctx)
    data = TrainingData(samples=samples, loader=training_loader(ctx))
    start = time.perf_counter()
    method.fit(data, ctx)
    sync(ctx.device)
    return method, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images per measurement (default 64)")
    parser.add_argument("--size", type=int, default=256, help="side of the generated square images")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--cell-images", type=int, default=0, help="also time one default head-mode cell on this many images")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    where = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"cross-domain speed: backbone {args.backbone}, {args.size}x{args.size} images, device {device} ({where})")
    print(f"torch {torch.__version__}; bf16 autocast + channels_last on CUDA only")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = make_images(tmp, args.images, args.size)
        common = {"backbone": args.backbone, "epochs": 1, "val_ratio": 0}

        def ctx(bs: int, cache: str) -> MethodContext:
            return MethodContext(device=device, batch_size=bs, cache_dir=tmp / cache)

        # Warm-up: first-call costs (allocator, kernels, lazy imports) stay out of the numbers.
        timed_fit(samples[:4], ctx(4, "warmup"), mode="finetune", batch_size=4, **common)

        rows: dict[str, list[str]] = {}

        def row(label: str, bs: int, value: float, fmt: str) -> None:
            rows.setdefault(label, []).append(f"{value:12{fmt}}")
            print(f"  {label}, bs={bs}: {value:{fmt}} images/s", flush=True)  # as it comes: a time limit keeps what was measured

        for bs in args.batch_sizes:
            method, seconds = timed_fit(samples, ctx(bs, f"cold{bs}"), mode="head", batch_size=max(bs, 2), **common)
            row("head fit, cold cache (extract + train)", bs, len(samples) / seconds, ".1f")
            epochs = 20
            _, seconds = timed_fit(samples, ctx(bs, f"cold{bs}"), mode="head", **{**common, "epochs": epochs}, batch_size=max(bs, 2))
            row(f"head fit, warm cache ({epochs} epochs)", bs, len(samples) * epochs / seconds, ".0f")
            method, seconds = timed_fit(samples, ctx(bs, "finetune"), mode="finetune", batch_size=max(bs, 2), **common)
            row("finetune fit (1 epoch)", bs, len(samples) / seconds, ".1f")
            row("inference (score_batch)", bs, inference_rate(method, args, bs, device), ".1f")
        print(f"\n{'measure':<40}" + "".join(f"{'bs=' + str(b):>12}" for b in args.batch_sizes))
        for label, cells in rows.items():
            print(f"{label:<40}" + "".join(cells))
        print(f"(images/s; fit batches hold at most --images={len(samples)} images; head fit at bs=1 trains "
              "with batches of 2, the smallest a ranking loss can use)")

        from diqa_cross_domain import handcrafted

        images = torch.rand(32, 3, args.size, args.size, device=device)
        for kind in ("nss", "full"):
            handcrafted.features(images[:2], kind)  # warm-up
            sync(device)
            start = time.perf_counter()
            handcrafted.features(images, kind)
            sync(device)
            print(f"hand-crafted features ({kind}, bs=32): {len(images) / (time.perf_counter() - start):.1f} images/s")

        if args.cell_images:
            cell = make_images(tmp, args.cell_images, args.size, seed=1)
            cell_ctx = MethodContext(device=device, batch_size=32, cache_dir=tmp / "cell")
            _, cold = timed_fit(cell, cell_ctx, mode="head", backbone=args.backbone)
            method, warm = timed_fit(cell, cell_ctx, mode="head", backbone=args.backbone)
            info = method.training_info
            print(f"\none default head-mode cell, {len(cell)} images: {cold:.1f} s cold (features extracted), "
                  f"{warm:.1f} s warm (cached features; {info['epochs_run']} epochs, early stopping)")


def inference_rate(method: CrossDomain, args, bs: int, device: str) -> float:
    """Scores/s of a fitted finetune-mode model on in-memory batches (no decoding, no cache)."""
    n_batches = max(1, args.images // bs)
    images = torch.rand(bs, 3, args.size, args.size, device=device)
    batch = Batch(images=images, keys=[f"x{i}" for i in range(bs)], paths=[""] * bs, indices=list(range(bs)))
    method.score_batch(batch)
    sync(device)
    start = time.perf_counter()
    for _ in range(n_batches):
        method.score_batch(batch)
    sync(device)
    return n_batches * bs / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
