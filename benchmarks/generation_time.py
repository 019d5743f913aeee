"""Generation time of the embedded default domains, from a cold cache.

    python benchmarks/generation_time.py [--config benchmarks/cross_domain.yaml] [--progress]

Generates every embedded dataset of the config (by default the default benchmark, with its
options) into a fresh temporary folder, then loads each again from the cache, and prints wall and
CPU time per dataset, with the machine's load average (the machine may be shared: wall time then
grows while CPU time stays put). References are generated in a process pool, one process per core,
so the parent's CPU time is small; the children's is reported separately. Target: well under
2 minutes for all of them on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "benchmarks" / "cross_domain.yaml")
    parser.add_argument("--progress", action="store_true", help="show the generation progress bars")
    args = parser.parse_args()

    from diqa_datasets.embedded import EmbeddedDataset

    from diqa_bench import config
    from diqa_bench.datasets import DatasetContext
    from diqa_bench.plugins import load_plugins

    registry = load_plugins()
    cfg = config.parse(args.config, registry)
    print(f"CPU cores available: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.1f}")
    total = 0.0
    groups_by_domain: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="diqa-gen-") as tmp:
        ctx = DatasetContext(cache_dir=Path(tmp), progress=args.progress)
        for domain, specs in cfg.domains.items():
            for spec in specs:
                cls = registry.dataset(spec.type)
                if not issubclass(cls, EmbeddedDataset):
                    continue
                ds = cls(**spec.options)
                start, cpu0 = time.perf_counter(), time.process_time()
                kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                records = ds.load(ctx)
                cold, cpu = time.perf_counter() - start, time.process_time() - cpu0
                kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                kids = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
                start = time.perf_counter()
                cls(**spec.options).load(ctx)
                warm = time.perf_counter() - start
                size_mb = sum(p.stat().st_size for p in ds.root.rglob("*.png")) / 1e6
                groups = len({r.group for r in records})
                groups_by_domain[domain] = groups_by_domain.get(domain, 0) + groups
                total += cold
                print(
                    f"{domain:8s} {spec.name:15s} {len(records):4d} images ({groups} references: {ds.references_note}; "
                    f"{len(ds.distortions)} distortions x levels {ds.levels} + pristine, {ds.size}x{ds.size}, {size_mb:.0f} MB): "
                    f"cold {cold:5.1f} s wall ({cpu:.1f} s CPU here + {kids:.1f} s in workers), cached reload {warm:.2f} s"
                )
    print(f"content groups per domain: {groups_by_domain}")
    print(f"total cold generation: {total:.1f} s wall (load average after: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
