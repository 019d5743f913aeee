"""Generation time of the embedded default domains, from a cold cache.

    python benchmarks/generation_time.py [--seed 0] [--progress]

Generates synthetic-skin and skimage-natural with their default options (the ones
benchmarks/cross_domain.yaml uses) into a fresh temporary folder, then loads them again from the
cache, and prints wall time and CPU time per domain (generation is single-process: on a busy
machine wall time grows while CPU time stays put). Target: well under 2 minutes for both on 2 CPU
cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show the generation progress bars")
    args = parser.parse_args()

    from diqa_datasets.embedded import SkimageNaturalDataset, SyntheticSkinDataset

    from diqa_bench.datasets import DatasetContext

    print(f"CPU cores available: {len(os.sched_getaffinity(0))}")
    total = total_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="diqa-gen-") as tmp:
        ctx = DatasetContext(cache_dir=Path(tmp), progress=args.progress)
        for cls in (SyntheticSkinDataset, SkimageNaturalDataset):
            ds = cls(seed=args.seed)
            start, cpu_start = time.perf_counter(), time.process_time()
            records = ds.load(ctx)
            cold, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            start = time.perf_counter()
            cls(seed=args.seed).load(ctx)
            warm = time.perf_counter() - start
            size_mb = sum(p.stat().st_size for p in ds.root.rglob("*.png")) / 1e6
            total, total_cpu = total + cold, total_cpu + cpu
            print(
                f"{cls.name:16s} {len(records):4d} images ({ds.references} references x {len(ds.distortions)} distortions x "
                f"{ds.levels} levels + pristine, {ds.size}x{ds.size}, {size_mb:.0f} MB): "
                f"cold {cold:6.1f} s wall ({cpu:.1f} s CPU), cached reload {warm:.2f} s"
            )
    print(f"total cold generation: {total:.1f} s wall, {total_cpu:.1f} s CPU (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
