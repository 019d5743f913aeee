"""pytest fixtures for plugin authors (loaded automatically through the ``pytest11`` entry point).

- ``diqa_run_benchmark``: ``diqa_run_benchmark(config=None, plugins=[("mine", my_module)])`` runs a
  tiny benchmark in a temp dir on CPU and returns a :class:`diqa_bench.testing.BenchmarkResult`
  (metrics and scores DataFrames, run.json, LEADERBOARD.md text, ``exit_code`` as the CLI's).
  Only the stub plugins and the ``plugins`` you pass load (a string names an installed entry
  point), so the test gives the same result whether your plugin is installed or not. Figures and
  report.html are built only with ``reports=True``;
- ``diqa_registry``: ``diqa_registry(plugins)``, the isolated registry alone (stubs + ``plugins``);
- ``diqa_no_entry_points``: no installed plugin loads in this test (``DIQA_BENCH_PLUGINS`` set
  empty, restored after), for tests that call :func:`diqa_bench.plugins.load_plugins` themselves;
- ``diqa_stub_dataset``, ``diqa_stub_method``: the stub dataset class (tiny generated noisy images
  with MOS) and the stub zero-shot method class (noise energy, lower is better).
"""

import pytest


@pytest.fixture
def diqa_stub_dataset():
    from diqa_bench.testing import StubDataset  # lazy: loads numpy

    return StubDataset


@pytest.fixture
def diqa_stub_method():
    from diqa_bench.testing import StubNoise  # lazy: loads numpy

    return StubNoise


@pytest.fixture
def diqa_no_entry_points(monkeypatch):
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    monkeypatch.delenv("DIQA_BENCH_STRICT_PLUGINS", raising=False)


@pytest.fixture
def diqa_registry():
    from diqa_bench.testing import isolated_registry  # lazy: loads numpy

    return isolated_registry


@pytest.fixture
def diqa_run_benchmark(tmp_path):
    from diqa_bench.testing import run_tiny_benchmark  # lazy: loads numpy

    def run(config=None, plugins=None, **kw):
        return run_tiny_benchmark(tmp_path, config, plugins, **kw)

    return run
