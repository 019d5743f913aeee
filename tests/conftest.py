"""Shared fixtures: tests never touch ~/.cache or a model hub.

Core tests that must see only the stub plugins ask for ``no_entry_point_plugins`` (or
``stub_registry``); tests of the in-tree plugins keep the real entry points.
"""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIQA_BENCH_CACHE", str(tmp_path_factory.mktemp("diqa-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def no_entry_point_plugins(monkeypatch):
    """Load no entry-point plugin: only what a test passes with ``extra=``."""
    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    monkeypatch.delenv("DIQA_BENCH_STRICT_PLUGINS", raising=False)


@pytest.fixture
def stub_registry(no_entry_point_plugins):
    """A registry holding the stub plugins alone."""
    import diqa_bench.testing as stubs
    from diqa_bench.plugins import load_plugins

    return load_plugins(extra=[("stub", stubs)])


@pytest.fixture
def stub_counters():
    """Reset the stub methods' call counters (class attributes shared by every instance)."""
    from diqa_bench.testing import StubLinear, StubNoise

    StubNoise.calls = 0
    StubLinear.fits = 0
    yield StubNoise, StubLinear
    StubNoise.calls = 0
    StubLinear.fits = 0


@pytest.fixture
def no_report_figures(monkeypatch):
    """Runs write tables only: figures and report.html (matplotlib, seconds per run) are tested
    on their own, so harness tests skip them."""
    from diqa_bench import results

    render = results.render_leaderboard
    monkeypatch.setattr(results, "render_leaderboard", lambda out, metrics=None, run_info=None, build_figures=True, cache=None: render(out, metrics, run_info, build_figures=False, cache=cache))
