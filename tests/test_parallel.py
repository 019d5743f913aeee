"""Zero-shot scoring in one single-threaded process per core (diqa_bench.parallel)."""

import pandas as pd
import pytest

from diqa_bench.testing import run_tiny_benchmark, stub_config

pytestmark = pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")


@pytest.fixture(autouse=True)
def _stop_pools():
    yield
    from diqa_bench import parallel

    parallel.shutdown_pools(wait=True)  # no worker process outlives its test


def _bigger(cfg):
    for specs in cfg["domains"].values():
        specs[0]["options"]["count"] = 60  # more test images than one chunk, so the pool is used
    return cfg


def test_processes_give_the_same_tables_as_one_process(tmp_path):
    from diqa_bench import parallel

    cfg = _bigger(stub_config(methods=[{"name": "stub-noise"}], seeds=[0, 1], train_sets=[]))
    one = run_tiny_benchmark(tmp_path / "one", cfg, processes=1)
    parallel.shutdown_pools()
    two = run_tiny_benchmark(tmp_path / "two", cfg, processes=2)
    assert 2 in parallel.pool_sizes(), "the two-process run did not use the pool"
    assert two.run["protocol"]["processes"] == 2
    cols = ["image", "dataset", "method", "seed", "score"]
    a = one.scores[cols].sort_values(cols[:4]).reset_index(drop=True)
    b = two.scores[cols].sort_values(cols[:4]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(one.metrics, two.metrics)


def test_a_method_error_in_a_worker_fails_its_cells_with_the_reason(tmp_path):
    cfg = _bigger(stub_config(methods=[{"name": "stub-noise", "options": {"fail": True}}], seeds=[0], train_sets=[]))
    res = run_tiny_benchmark(tmp_path, cfg, processes=2)
    assert {c["status"] for c in res.run["cells"]} == {"failed"}
    assert all("stub failure on purpose" in c["reason"] for c in res.run["cells"])


@pytest.mark.parametrize("processes", [1, 2], ids=["in-process", "process-pool"])
@pytest.mark.parametrize("extra", [-1, 1], ids=["n-1", "n+1"])
def test_a_method_returning_the_wrong_number_of_scores_fails_its_cells(tmp_path, processes, extra):
    from diqa_bench import parallel

    cfg = _bigger(stub_config(methods=[{"name": "stub-noise", "options": {"extra_scores": extra}}], seeds=[0], train_sets=[]))
    res = run_tiny_benchmark(tmp_path, cfg, processes=processes)
    assert (2 in parallel.pool_sizes()) == (processes == 2)  # the path under test is the one that ran
    assert res.exit_code == 1
    assert {c["status"] for c in res.run["cells"]} == {"failed"}
    for cell in res.run["cells"]:
        assert "ScoreCountError: stub-noise.score_batch returned" in cell["reason"]
        n = int(cell["reason"].split(" scores for ")[1].split()[0])
        assert f"returned {n + extra} scores for {n} images" in cell["reason"]
    assert res.scores.empty  # no score was stored against the wrong image


def test_recipe_refuses_plugins_a_worker_cannot_import(stub_registry):
    from diqa_bench.methods import MethodContext
    from diqa_bench.session import recipe_for
    from diqa_bench.testing import StubNoise

    ok = recipe_for(StubNoise(), stub_registry, MethodContext(batch_size=16))
    assert ok is not None and ok.plugins.modules == (("stub", "diqa_bench.testing"),) and ok.batch_size == 4
    stub_registry.plugins["stub"].module = "not.a.module"
    assert recipe_for(StubNoise(), stub_registry, MethodContext()) is None


@pytest.mark.parametrize("before", [None, "some-plugin"])
def test_building_a_method_in_a_worker_leaves_the_plugin_selection_as_it_was(monkeypatch, before):
    import os

    from diqa_bench import parallel
    from diqa_bench.session import MethodRecipe
    from diqa_bench.plugins import PluginSources

    if before is None:
        monkeypatch.delenv("DIQA_BENCH_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("DIQA_BENCH_PLUGINS", before)
    monkeypatch.setattr(parallel, "_METHODS", {})
    recipe = MethodRecipe("stub-noise", {}, PluginSources((), (("stub", "diqa_bench.testing"),)), None, 4, 0)
    method, _ = parallel.worker_method(recipe)
    assert method.name == "stub-noise"
    assert os.environ.get("DIQA_BENCH_PLUGINS") == before


def test_chunks_cover_every_image_once_and_a_huge_image_gets_its_own():
    from diqa_bench.parallel import plan_chunks

    assert plan_chunks(40, 2) == [list(range(s, min(s + 5, 40))) for s in range(0, 40, 5)]
    costs = [1.0] * 60
    costs[37] = 1000.0  # one 12-megapixel photo among dermoscopy crops
    chunks = plan_chunks(60, 2, costs)
    assert sorted(i for c in chunks for i in c) == list(range(60))
    assert chunks[0] == [37]  # the costliest work starts first, alone
    assert all(len(c) <= 16 for c in chunks)
