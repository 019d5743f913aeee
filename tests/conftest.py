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


def _rated_photos(folder, n_patients=12, per_patient=3, raters=5, seed=0, rating_sd=0.5):
    """A derm-ratings set of n_patients x per_patient noisy grey images with raw 1-5 ratings (columns
    image, observer, rating, patient in ratings.csv) that fall with the noise the stub methods
    measure: each rater gives round(4.6 - 3.2 * noise + N(0, rating_sd)), clipped to 1-5."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        for k in range(per_patient):
            name = f"p{p}_{k}.png"
            noise = rng.uniform(0, 1)
            base = np.full((24, 28, 3), 120.0) + rng.normal(0, 60 * noise, (24, 28, 3))
            Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(folder / name)
            rows += [(name, f"r{o}", int(np.clip(round(4.6 - 3.2 * noise + rng.normal(0, rating_sd)), 1, 5)), f"p{p}") for o in range(raters)]
    pd.DataFrame(rows, columns=["image", "observer", "rating", "patient"]).to_csv(folder / "ratings.csv", index=False)
    return folder


@pytest.fixture
def rated_photos():
    """Makes a rated-photo set in a folder: ``rated_photos(folder, n_patients=12, per_patient=3,
    raters=5, seed=0, rating_sd=0.5)`` (see :func:`_rated_photos`); returns the folder."""
    return _rated_photos
