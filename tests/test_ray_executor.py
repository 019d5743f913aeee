"""The Ray executor on a real local Ray cluster (loopback only): same tables as the local executor,
workers killed mid-run, and a clear error when Ray is not installed.

One cluster serves the whole module (starting Ray costs tens of seconds on 2 cores); its processes
are stopped in the fixture's finalizer, which also checks that none of them survives.
"""

import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

import diqa_bench.testing as stubs
from diqa_bench import config as cfgmod
from diqa_bench.errors import UserError
from diqa_bench.plugins import load_plugins
from diqa_bench.ray_executor import RayExecutor
from diqa_bench.runner import RunOptions, run_benchmark
from diqa_bench.testing import stub_config

pytestmark = pytest.mark.usefixtures("no_entry_point_plugins")

# A test-only plugin whose method kills its worker process: once per marker file, or every time.
CRASH_PLUGIN = '''
import os
from pathlib import Path

from diqa_bench.hookspecs import hookimpl
from diqa_bench.testing import StubNoise


class CrashingNoise(StubNoise):
    name = "stub-crash"
    description = "stub-noise that kills its process (for Ray retry tests)"
    options_schema = {**StubNoise.options_schema, "marker": {"type": "string"}, "always": {"type": "boolean"}}

    def score_batch(self, batch):
        marker = Path(self.options["marker"])
        if self.options.get("always") or not marker.exists():
            marker.touch()
            os._exit(1)
        return super().score_batch(batch)


class RefusedNoise(StubNoise):
    name = "stub-refused"
    description = "stub-noise whose weights file is refused (for the Ray path of a refused file)"

    def setup(self, ctx):
        from diqa_bench.errors import WeightsRefused

        raise WeightsRefused("weights file /nowhere/stub.pth refused: it holds Python objects")


@hookimpl
def register_methods(register):
    register(CrashingNoise)
    register(RefusedNoise)
'''


@pytest.fixture(scope="module")
def plugin_dir():
    folder = Path(tempfile.mkdtemp(prefix="diqa-ray-plugin-"))
    (folder / "diqa_crash_plugin.py").write_text(textwrap.dedent(CRASH_PLUGIN))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("diqa_crash_plugin", None)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(plugin_dir):
    """A local Ray cluster on 127.0.0.1 with two worker slots; the workers import the crash plugin
    through PYTHONPATH, as nodes of a real cluster would from their environment."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray puts Unix sockets in it
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # other tests' helpers are not Ray's
    with pytest.MonkeyPatch.context() as mp:
        # Ray advertises the machine's outward address even when told 127.0.0.1, unless it believes
        # clusters are off (its setting for laptops): then every process listens on loopback only.
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("PYTHONPATH", str(plugin_dir))
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'diqa-bench[ray]')")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    processes = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    try:
        assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
        yield ray
    finally:
        processes += [p for p in psutil.Process().children(recursive=True) if p.pid not in before]  # workers started since
        ray.shutdown()
        _, alive = psutil.wait_procs(processes, timeout=15)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not alive, f"Ray processes still running after shutdown: {[p.pid for p in alive]}"


def _config(methods, seeds, tmp_path):
    cfg = stub_config(methods=methods, seeds=seeds)
    for dom, seed in (("a", 1), ("b", 2)):
        cfg["domains"][dom][0]["options"] = {"count": 24, "groups": 6, "size": 24, "seed": seed, "tag": dom}
    cfg["statistics"] = {"bootstrap": 50}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    registry = load_plugins(extra=[("stub", stubs), ("crash", __import__("diqa_crash_plugin"))])
    return cfgmod.parse(path, registry), registry


def _run(cfg, registry, folder: Path, executor=None):
    opts = RunOptions(out=folder / "results", cache_dir=folder / "cache", device="cpu", workers=0, batch_size=8, progress=False)
    outcomes, _ = run_benchmark(cfg, registry, opts, log=lambda msg: None, executor=executor)
    return outcomes, folder / "results"


def _assert_same_tables(ray_out: Path, local_out: Path):
    assert (ray_out / "metrics.csv").read_text() == (local_out / "metrics.csv").read_text()
    ray_scores, local_scores = pd.read_csv(ray_out / "scores.csv"), pd.read_csv(local_out / "scores.csv")
    assert len(ray_scores) > 0
    # Each run has its own cache folder, where the stub dataset writes its images: compare file names.
    for df in (ray_scores, local_scores):
        df["path"] = df["path"].map(lambda p: Path(p).name)
    pd.testing.assert_frame_equal(ray_scores, local_scores)


@pytest.mark.slow  # starting Ray and its workers takes ~30 s on 2 cores
def test_ray_run_gives_the_local_tables(ray_cluster, tmp_path, plugin_dir):
    cfg, registry = _config([{"name": "stub-noise"}, {"name": "stub-linear"}], [0, 1], tmp_path)
    # shard_size 5: each zero-shot unit's 16 test images are scored by several shard tasks
    ray_outcomes, ray_out = _run(cfg, registry, tmp_path / "ray", RayExecutor(shard_size=5, log=lambda msg: None))
    local_outcomes, local_out = _run(cfg, registry, tmp_path / "local")
    assert [o.status for o in ray_outcomes] == ["ok"] * 16
    assert [(o.method, o.train, o.test, o.seed) for o in ray_outcomes] == [(o.method, o.train, o.test, o.seed) for o in local_outcomes]
    _assert_same_tables(ray_out, local_out)
    # fitted models land in the results folder, as in a local run
    assert sorted(p.relative_to(ray_out) for p in (ray_out / "models").rglob("*")) == sorted(p.relative_to(local_out) for p in (local_out / "models").rglob("*"))


@pytest.mark.slow
def test_ray_and_local_runs_of_a_trained_network_give_the_same_metrics(ray_cluster, tmp_path):
    """The cross-domain model (a frozen backbone, cached features, a trained head) on Ray workers
    that receive the driver's plan: the same images, the same fits, the same numbers as a local run."""
    import diqa_cross_domain

    cfg = stub_config(methods=[{"name": "cross-domain", "options": {"image_size": 64, "epochs": 8, "val_ratio": 0}}], train_sets=[["a", "b"]],
                      seeds=[0])
    for dom, seed in (("a", 1), ("b", 2)):
        cfg["domains"][dom][0]["options"] = {"count": 24, "groups": 6, "size": 64, "seed": seed, "tag": dom}
    cfg["statistics"] = {"bootstrap": 50}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    registry = load_plugins(extra=[("stub", stubs), ("cross", diqa_cross_domain)])
    config = cfgmod.parse(path, registry)
    ray_outcomes, ray_out = _run(config, registry, tmp_path / "ray", RayExecutor(shard_size=None, log=lambda msg: None))
    local_outcomes, local_out = _run(config, registry, tmp_path / "local")
    assert [o.status for o in ray_outcomes] == [o.status for o in local_outcomes] == ["ok", "ok"]
    ray_m, local_m = pd.read_csv(ray_out / "metrics.csv"), pd.read_csv(local_out / "metrics.csv")
    keys = ["method", "train", "test", "seed", "statistic"]
    assert ray_m[keys].equals(local_m[keys]) and len(ray_m) > 0
    assert np.allclose(ray_m["value"], local_m["value"], atol=1e-6, equal_nan=True)
    ray_scores, local_scores = pd.read_csv(ray_out / "scores.csv"), pd.read_csv(local_out / "scores.csv")
    assert ray_scores["image"].tolist() == local_scores["image"].tolist()
    assert np.allclose(ray_scores["score"], local_scores["score"], atol=1e-6)


@pytest.mark.slow
def test_killed_worker_is_retried_and_a_cell_that_keeps_killing_it_fails(ray_cluster, tmp_path):
    once, always = str(tmp_path / "crashed-once"), str(tmp_path / "crashed-always")
    methods = [
        {"name": "stub-crash", "label": "crash-once", "options": {"marker": once}},
        {"name": "stub-linear"},
        {"name": "stub-crash", "label": "crash-always", "options": {"marker": always, "always": True}},
    ]
    cfg, registry = _config(methods, [0], tmp_path)
    # no sharding: the unit task itself dies and is retried
    outcomes, ray_out = _run(cfg, registry, tmp_path / "ray", RayExecutor(max_retries=1, shard_size=None, log=lambda msg: None))
    assert Path(once).exists()  # the first attempt did die
    status = {(o.method, o.test): (o.status, o.reason) for o in outcomes}
    assert all(status[("crash-once", t)][0] == "ok" for t in ("a", "b"))
    assert all(o.status == "ok" for o in outcomes if o.method == "stub-linear")
    for t in ("a", "b"):
        state, reason = status[("crash-always", t)]
        assert state == "failed"
        assert "every attempt (2)" in reason and "worker" in reason.lower(), reason

    # The local run of the cells that can finish (the marker now exists: crash-once does not crash).
    cfg_local, registry = _config(methods[:2], [0], tmp_path)
    _, local_out = _run(cfg_local, registry, tmp_path / "local")
    _assert_same_tables(ray_out, local_out)


def test_plugin_the_workers_cannot_import_fails_its_cells_with_a_clear_reason(ray_cluster, tmp_path, monkeypatch):
    driver_only = tmp_path / "driver_only"
    driver_only.mkdir()
    (driver_only / "diqa_driver_only_plugin.py").write_text("# a plugin module that exists on the driver alone\n")
    monkeypatch.syspath_prepend(str(driver_only))
    cfg, registry = _config([{"name": "stub-noise"}], [0], tmp_path)
    registry = load_plugins(extra=[("stub", stubs), ("driver-only", __import__("diqa_driver_only_plugin"))])
    outcomes, _ = _run(cfg, registry, tmp_path / "ray", RayExecutor(shard_size=None, log=lambda msg: None))
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "'diqa_driver_only_plugin' cannot be imported on this Ray node" in outcomes[0].reason


def test_missing_ray_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    cfg = stub_config(seeds=[0])
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    registry = load_plugins(extra=[("stub", stubs)])
    opts = RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", device="cpu", workers=0, progress=False)
    with pytest.raises(UserError, match=r"pip install 'diqa-bench\[ray\]'") as err:
        run_benchmark(cfgmod.parse(path, registry), registry, opts, log=lambda msg: None, executor=RayExecutor())
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_refused_weights_file_on_a_ray_worker_stops_the_run(ray_cluster, tmp_path):
    """As in a local run: a refused file is the user's error (exit 2), not a failed cell (exit 1)."""
    from diqa_bench.errors import RunAborted

    cfg, registry = _config([{"name": "stub-refused"}], [0], tmp_path)
    with pytest.raises(RunAborted, match="refused.*replace or remove the file"):
        _run(cfg, registry, tmp_path / "ray", RayExecutor(shard_size=None, log=lambda msg: None))
