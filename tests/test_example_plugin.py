"""The example third-party plugin: its own distribution, its entry point, and a benchmark of it
through the pytest fixtures diqa-bench gives plugin authors (what the README walks through)."""

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "plugins" / "example-plugin"


def readme_plugin_test() -> str:
    """The code of the README's "Testing a plugin" section, as a plugin author copies it."""
    section = (REPO / "README.md").read_text().split("### Testing a plugin", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


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


def test_the_readme_plugin_test_passes_verbatim_for_an_installed_plugin(tmp_path):
    """The README's snippet, copied into an author's test file and run by pytest with the
    fixtures the ``pytest11`` entry point provides: no conftest, entry points as installed (the
    example plugin is installed in the project's environment by `make install`)."""
    test_file = tmp_path / "test_from_readme.py"
    test_file.write_text(readme_plugin_test())
    env = {k: v for k, v in os.environ.items() if k not in ("DIQA_BENCH_PLUGINS", "DIQA_BENCH_STRICT_PLUGINS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(PLUGIN_DIR), env.get("PYTHONPATH", "")])
    env["DIQA_BENCH_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    assert "test_my_method_ranks_blur" in test_file.read_text()  # the snippet is the README's test, not an empty block


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
