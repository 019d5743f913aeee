"""MOS from raw ratings and ITU-R BT.500 observer screening."""

import numpy as np
import pandas as pd
import pytest

from diqa_bench.errors import DataError
from diqa_bench.mos import compute_mos, format_report


def _ratings(n_images=30, n_observers=15, seed=0, outlier=None, biased=None):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(1.5, 4.5, n_images)
    rows = []
    for o in range(n_observers):
        name = f"obs{o:02d}"
        for i, t in enumerate(truth):
            if name == outlier:  # careless rater: ratings unrelated to the image, both sides
                r = 1.0 if i % 2 else 5.0
            elif name == biased:  # lenient but consistent rater
                r = t + 1.0 + rng.normal(0, 0.1)
            else:
                r = t + rng.normal(0, 0.25)
            rows.append((f"img{i:03d}.png", name, float(r)))
    return pd.DataFrame(rows, columns=["image", "observer", "rating"]), truth


def test_outlier_observer_is_rejected_and_others_kept():
    df, truth = _ratings(outlier="obs07")
    mos, report = compute_mos(df)
    assert [r.observer for r in report.rejected] == ["obs07"]
    assert report.rejected[0].high > 0 and report.rejected[0].low > 0
    assert (mos["n"] == 14).all()
    # Without the careless rater the MOS tracks the truth closely.
    assert np.abs(mos["mos"].to_numpy() - truth).max() < 0.3
    text = format_report(report)
    assert "obs07" in text and "rejected" in text


def test_consistently_biased_observer_is_kept():
    df, _ = _ratings(biased="obs03")
    _, report = compute_mos(df)
    assert report.rejected == []
    assert "no observer rejected" in format_report(report)


def test_screening_off_keeps_everyone_and_ci_matches_formula():
    df, _ = _ratings(outlier="obs07")
    mos, report = compute_mos(df, screening=False)
    assert report.rejected == [] and (mos["n"] == 15).all()
    one = df[df.image == "img000.png"]["rating"]
    row = mos[mos.image == "img000.png"].iloc[0]
    assert row["mos"] == pytest.approx(one.mean())
    assert row["std"] == pytest.approx(one.std(ddof=1))
    assert row["ci95"] == pytest.approx(1.96 * one.std(ddof=1) / np.sqrt(15))
    assert row["ci_low"] < row["mos"] < row["ci_high"]


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"image": ["a"], "rating": [3.0]}), "missing column"),
        (pd.DataFrame({"image": ["a"], "observer": ["o"], "rating": [None]}), "blank or not a number"),
        (pd.DataFrame({"image": ["a"], "observer": ["o"], "rating": ["good"]}), "blank or not a number"),
        (pd.DataFrame({"image": ["a", "a"], "observer": ["o", "o"], "rating": [3, 4]}), "more than once"),
        (pd.DataFrame({"image": [], "observer": [], "rating": []}), "no ratings"),
    ],
)
def test_bad_ratings_give_one_line_errors(frame, message):
    with pytest.raises(DataError, match=message) as info:
        compute_mos(frame)
    assert "\n" not in str(info.value)
