"""Grid time on a local Ray cluster with 1 vs 2 worker processes, next to the local executor.

    python benchmarks/ray_scaling.py [--count 300] [--size 256] [--seeds 0 1 2] [--slots 1 2]

The grid is the stub benchmark (stub-noise zero-shot, stub-linear trained on three train sets) on
two generated domains of ``--count`` images of ``--size`` pixels: decode-bound work, like real
classical methods. Every run starts from an empty score cache (the generated images are made once,
up front, and shared). For Ray, the timed part is the grid alone: the cluster is started and its
worker processes have imported torch before the clock starts (reported separately).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DIQA_BENCH_PLUGINS", "")  # the stubs only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local cluster on loopback only


def _warm_up() -> None:
    import torch  # noqa: F401  (what the first unit of a cold worker pays)

    import diqa_bench.runner  # noqa: F401


def main() -> None:
    import yaml

    import diqa_bench.testing as stubs
    from diqa_bench import config as cfgmod
    from diqa_bench.plugins import load_plugins
    from diqa_bench.ray_executor import RayExecutor
    from diqa_bench.runner import RunOptions, run_benchmark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300, help="images per domain")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 2], help="Ray worker processes (CPUs of the local cluster)")
    ap.add_argument("--shard-size", type=int, default=200)
    args = ap.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="diqa-ray-scaling-"))
    cfg_raw = stubs.stub_config(seeds=args.seeds, statistics={"bootstrap": 100})
    for dom, seed in (("a", 1), ("b", 2)):
        cfg_raw["domains"][dom][0]["options"] = {"count": args.count, "groups": 10, "size": args.size, "seed": seed, "tag": dom}
    (tmp / "bench.yaml").write_text(yaml.safe_dump(cfg_raw))
    registry = load_plugins(extra=[("stub", stubs)])
    config = cfgmod.parse(tmp / "bench.yaml", registry)
    cache = tmp / "cache"  # the generated images stay; each run starts without scores or fitted models

    def run(name: str, executor=None) -> float:
        shutil.rmtree(cache / "models", ignore_errors=True)
        for db in cache.glob("*.sqlite*"):
            db.unlink()
        opts = RunOptions(out=tmp / name, cache_dir=cache, device="cpu", workers=0, batch_size=32, progress=False)
        t0 = time.time()
        outcomes, _ = run_benchmark(config, registry, opts, log=lambda msg: None, executor=executor)
        seconds = time.time() - t0
        failed = [o for o in outcomes if o.status != "ok"]
        assert not failed, failed[0].reason
        return seconds

    run("generate")  # makes the images (and imports torch here) so that no timed run pays for it
    n_units = len(config.seeds) * (1 + len(config.train_sets))
    print(f"grid: {n_units} units ({2 * args.count} images of {args.size}px, seeds {args.seeds}), {os.cpu_count()} CPUs here")
    local = run("local")
    print(f"local executor: {local:6.1f} s")
    reference = (tmp / "local" / "metrics.csv").read_text()
    for slots in args.slots:
        t0 = time.time()
        ray.init(address="local", num_cpus=slots, include_dashboard=False, log_to_driver=False)
        try:
            ray.get([ray.remote(_warm_up).options(num_cpus=1).remote() for _ in range(slots)])
            start = time.time() - t0
            seconds = run(f"ray{slots}", RayExecutor(shard_size=args.shard_size, log=lambda msg: None))
        finally:
            ray.shutdown()
        same = (tmp / f"ray{slots}" / "metrics.csv").read_text() == reference
        print(f"ray, {slots} worker process(es): {seconds:6.1f} s  (cluster start + worker warm-up {start:.1f} s; metrics.csv identical to local: {same})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
