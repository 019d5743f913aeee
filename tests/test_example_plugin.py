"""The example third-party plugin: its own distribution, its entry point, and a benchmark of it
through the pytest fixtures diqa-bench gives plugin authors (what the README walks through)."""

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "plugins" / "example-plugin"


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


def test_exit_code_agrees_with_the_cli(diqa_run_benchmark):
    """A method that cannot run here is "not run", which the CLI does not count as a failure;
    a method that crashes is."""
    from diqa_bench.testing import stub_config

    unavailable = stub_config(methods=[{"name": "stub-noise", "options": {"unavailable": True}}], seeds=[0], train_sets=[])
    res = diqa_run_benchmark(config=unavailable)
    assert {c["status"] for c in res.run["cells"]} == {"not run"} and res.exit_code == 0
    failing = stub_config(methods=[{"name": "stub-noise", "options": {"fail": True}}], seeds=[0], train_sets=[])
    assert diqa_run_benchmark(config=failing).exit_code == 1


def test_reports_are_opt_in(diqa_run_benchmark):
    from diqa_bench.testing import stub_config

    cfg = stub_config(methods=[{"name": "stub-noise"}], seeds=[0], train_sets=[])
    plain = diqa_run_benchmark(config=cfg)
    assert (plain.out / "LEADERBOARD.md").exists() and not (plain.out / "report.html").exists()
    full = diqa_run_benchmark(config=cfg, reports=True, out=plain.out.parent / "with-reports")
    assert (full.out / "report.html").exists()


def test_training_data_from_samples_feeds_fit_outside_a_run(tmp_path):
    """What a trainable plugin's own tests do: build a training set, fit, score."""
    import numpy as np

    from diqa_bench.datasets import DatasetContext
    from diqa_bench.methods import MethodContext, TrainingData, TrainSample
    from diqa_bench.testing import StubDataset, StubLinear

    ds = StubDataset(count=12, groups=3)
    records = ds.load(DatasetContext(cache_dir=tmp_path))
    samples = [TrainSample(r.id, str(ds.root / r.path), r.mos, (r.mos - 1) / 4, "stub", "a", r.group) for r in records]
    data = TrainingData.from_samples(samples, MethodContext(batch_size=5))
    assert data.domains == ["a"] and len(data) == 12
    seen = sorted(i for b in data.batches() for i in b.indices)
    assert seen == list(range(12))
    method = StubLinear()
    method.fit(data, MethodContext())
    assert method.coef is not None and method.coef[0] < 0  # more noise energy, lower MOS
    preds = np.concatenate([np.atleast_1d(method.score_batch(b)) for b in data.batches(indices=[0, 11], batch_size=1)])
    assert preds.shape == (2,)


def test_the_example_statistic_and_figure_reach_every_table(no_entry_point_plugins, diqa_example, tmp_path, monkeypatch, capsys):
    """WORST_RECALL (a statistic) and worst-recall (a figure) come from the plugin alone: metrics.csv
    and .json hold the statistic with its content-group interval, LEADERBOARD.md has its column,
    `compare` tests its change, report.html shows the figure."""
    import json

    from diqa_bench import cli
    from diqa_bench.files import read_csv
    from diqa_bench.testing import isolated_registry, run_tiny_benchmark

    def config(grayscale):
        return {"domains": {"boards": [{"dataset": "example-blur", "options": {"patterns": 12}}]},
                "methods": [{"name": "laplacian-variance", "options": {"grayscale": grayscale}}], "test_domains": ["boards"],
                "splits": {"test_ratio": 0.5, "seeds": [0, 1]}, "statistics": {"bootstrap": 200, "extra": ["WORST_RECALL"]}}

    plugins = [("example", diqa_example)]
    a = run_tiny_benchmark(tmp_path / "a", config(True), plugins=plugins, reports=True)
    b = run_tiny_benchmark(tmp_path / "b", config(False), plugins=plugins)
    stored = read_csv(a.out / "metrics.csv", dtype={"seed": str})
    row = stored[(stored.statistic == "WORST_RECALL") & (stored.seed == "all")].iloc[0]
    assert row.ci_low < row.ci_high and row.ci_low <= row.value <= row.ci_high  # an interval from the group draws
    assert list(dict.fromkeys(stored.statistic)) == ["SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE", "WORST_RECALL"]  # built-ins first, as before
    assert any(r["statistic"] == "WORST_RECALL" for r in json.loads((a.out / "metrics.json").read_text()))
    header = next(line for line in a.leaderboard.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.strip("|").split("|")][1:6] == ["SROCC ↑", "PLCC ↑", "KRCC ↑", "RMSE ↓", "WORST_RECALL ↑"]
    assert f"{row.value:.3f}" in a.leaderboard and f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" in a.leaderboard
    (fact,) = [f for f in a.run["statistics"] if f["name"] == "WORST_RECALL"]
    assert fact["plugin"] == "example" and fact["higher_is_better"] is True
    assert (a.out / "figures" / "worst-recall.png").is_file()
    assert "WORST_RECALL of each method @ train set on each test domain" in (a.out / "report.html").read_text()
    assert "figures/worst-recall.png" in a.leaderboard

    monkeypatch.setattr(cli, "REGISTRY", isolated_registry(plugins))
    assert cli.main(["compare", str(a.out), str(b.out)]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "| WORST_RECALL" in x]
    assert "laplacian-variance @ -" in line and "paired" in line
    monkeypatch.setattr(cli, "REGISTRY", isolated_registry())  # the plugin not loaded: said, not guessed
    assert cli.main(["compare", str(a.out), str(b.out)]) == 0
    out = capsys.readouterr().out
    assert "| WORST_RECALL" not in out and "not compared: WORST_RECALL (plugin 'example')" in out


def test_stub_blur_is_the_stub_a_sharpness_method_passes(no_entry_point_plugins, diqa_example, diqa_run_benchmark):
    """What the README's table of stub datasets says: the noise-labelled stub ranks a sharpness
    measure backwards (noise adds edges), the blur-labelled one ranks it right; the noise measure
    is the other way round."""
    result = diqa_run_benchmark(
        config={"domains": {"blur": [{"dataset": "stub-blur"}], "noise": [{"dataset": "stub-dataset"}]},
                "methods": [{"name": "laplacian-variance"}, {"name": "stub-noise"}], "test_domains": ["blur", "noise"],
                "splits": {"test_ratio": 0.5, "seeds": [0]}, "statistics": {"bootstrap": 0}},
        plugins=[("example", diqa_example)],
    )
    assert result.value("laplacian-variance", "-", "blur") > 0.8
    assert result.value("laplacian-variance", "-", "noise") < -0.8
    assert result.value("stub-noise", "-", "noise") > 0.8 and result.value("stub-noise", "-", "blur") < -0.8
