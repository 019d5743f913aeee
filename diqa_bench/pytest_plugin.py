"""pytest fixtures for plugin authors (loaded automatically through the ``pytest11`` entry point).

- ``diqa_stub_dataset``: the stub dataset class (tiny generated noisy images with MOS);
- ``diqa_stub_method``: the stub zero-shot method class (noise energy, lower is better);
- ``diqa_run_benchmark``: ``diqa_run_benchmark(config=None, plugins=[("mine", my_module)])`` runs a
  tiny benchmark in a temp dir on CPU and returns a :class:`diqa_bench.testing.BenchmarkResult`
  (metrics and scores DataFrames, run.json, LEADERBOARD.md text).

Only entry-point plugins named in DIQA_BENCH_PLUGINS load inside the helper if you set it; set it to
an empty string in your tests to run with the stubs and your own module alone.
"""

import pytest


@pytest.fixture
def diqa_stub_dataset():
    from diqa_bench.testing import StubDataset

    return StubDataset


@pytest.fixture
def diqa_stub_method():
    from diqa_bench.testing import StubNoise

    return StubNoise


@pytest.fixture
def diqa_run_benchmark(tmp_path):
    from diqa_bench.testing import run_tiny_benchmark

    def run(config=None, plugins=None, **kw):
        return run_tiny_benchmark(tmp_path, config, plugins, **kw)

    return run
