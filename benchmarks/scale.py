"""Peak memory vs dataset size: score 1,000 and 10,000 small generated images with a stub method.

    python benchmarks/scale.py [--sizes 1000 10000] [--workers 2] [--device cuda]

Each size runs in a fresh process (so one size's memory cannot hide another's) through the full
runner: dataset load, hashing, batched decoding, scoring, statistics and result files. Prints
wall time, images/s and peak RSS (resource.getrusage of that process), and on CUDA the peak GPU
memory torch allocated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from diqa_bench.testing import run_tiny_benchmark, stub_config
n, workers, tmp, device = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
cfg = stub_config(methods=[{"name": "stub-noise"}], seeds=[0], train_sets=[],
                  domains={"a": [{"dataset": "stub-dataset", "options": {"count": n, "groups": max(2, n // 20), "size": 32}}]},
                  test_domains=["a"], statistics={"bootstrap": 100}, splits={"test_ratio": 0.9, "seeds": [0]})
t0 = time.time()
res = run_tiny_benchmark(tmp, cfg, workers=workers, batch_size=64, device=device)
wall = time.time() - t0
gpu = None
if device.startswith("cuda"):
    import torch
    gpu = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps({"images": n, "scored": int(res.scores.shape[0]), "seconds": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_gpu_mb": gpu}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            env = {"DIQA_BENCH_PLUGINS": ""}
            import os

            out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.workers), tmp, args.device], capture_output=True, text=True,
                                 env={**os.environ, **env}, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['images']:>6} images ({r['scored']} in the test split, scored): {r['seconds']:6.1f} s (generation + hashing + scoring + stats), peak RSS {r['peak_rss_mb']:.0f} MB"
              + (f", peak GPU memory {r['peak_gpu_mb']:.0f} MiB" if r.get("peak_gpu_mb") is not None else ""))
    if len(rows) >= 2:
        print(f"peak RSS ratio {rows[-1]['images']} vs {rows[0]['images']} images: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}")
        if rows[0].get("peak_gpu_mb"):
            print(f"peak GPU memory ratio: {rows[-1]['peak_gpu_mb'] / rows[0]['peak_gpu_mb']:.2f}")


if __name__ == "__main__":
    main()
