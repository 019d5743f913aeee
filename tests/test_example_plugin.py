"""The example third-party plugin: its own distribution, its entry point, and a benchmark of it
through the pytest fixtures diqa-bench gives plugin authors (what the README walks through)."""

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "example-plugin"


@pytest.fixture
def diqa_example(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    import diqa_example

    return diqa_example


def test_distribution_declares_the_entry_point():
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["diqa_bench"] == {"example": "diqa_example"}
    assert "diqa-bench" in project["dependencies"]


def test_registers_one_dataset_and_one_method(no_entry_point_plugins, diqa_example):
    from diqa_bench.plugins import load_plugins

    reg = load_plugins(extra=[("example", diqa_example)])
    assert reg.plugins["example"].datasets == ["example-blur"]
    assert reg.plugins["example"].methods == ["laplacian-variance"]
    assert reg.methods["laplacian-variance"].plugin == "example"


def test_example_benchmark_through_the_fixture(no_entry_point_plugins, diqa_example, diqa_run_benchmark):
    """The README's plugin test: sharper checkerboards must score higher."""
    result = diqa_run_benchmark(
        config={
            "domains": {"boards": [{"dataset": "example-blur"}]},
            "methods": [{"name": "laplacian-variance"}],
            "test_domains": ["boards"],
            "splits": {"test_ratio": 0.5, "seeds": [0]},
            "statistics": {"bootstrap": 100},
        },
        plugins=[("example", diqa_example)],
    )
    assert result.exit_code == 0
    assert result.value("laplacian-variance", "-", "boards", "SROCC") > 0.8
    assert "laplacian-variance @ -" in result.leaderboard


def test_installed_entry_point_loads_when_installed(monkeypatch):
    """`make install` installs the example distribution; then it loads like any third-party plugin."""
    eps = [ep for ep in metadata.entry_points(group="diqa_bench") if ep.name == "example"]
    if not eps:
        pytest.skip("diqa-bench-example-plugin is not installed (pip install -e plugins/example-plugin)")
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "example")
    from diqa_bench.plugins import load_plugins

    reg = load_plugins(strict=True)
    assert set(reg.plugins) == {"example"}
    assert "example-blur" in reg.datasets and "laplacian-variance" in reg.methods
    assert reg.plugins["example"].version == "0.1.0"


def test_grayscale_option_changes_the_scores_and_the_cache_key(diqa_example):
    import torch

    from diqa_bench.methods import Batch
    from diqa_example.method import LaplacianVariance

    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    images[1, 0] = 0.5  # flat red channel: only the per-channel score notices
    batch = Batch(images=images, keys=["a", "b"], paths=["a", "b"], indices=[0, 1])
    grey, colour = LaplacianVariance(), LaplacianVariance(grayscale=False)
    assert grey.cache_token() != colour.cache_token()
    g, c = grey.score_batch(batch), colour.score_batch(batch)
    assert g.shape == c.shape == (2,)
    assert c[1] < c[0] and not torch.allclose(g, c)
