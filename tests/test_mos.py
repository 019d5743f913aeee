"""MOS from raw ratings and ITU-R BT.500 observer screening."""

import io

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


def _panel(n_images=40, good=7, bad=None, seed=1):
    """Integer 1-5 ratings from ``good`` attentive raters (noise 0.6) plus one ``bad`` rater."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(1.5, 4.5, n_images)
    rows = []
    for o in range(good):
        r = np.clip(np.round(truth + rng.normal(0, 0.6, n_images)), 1, 5)
        rows += [(f"i{i:02d}", f"good{o}", r[i]) for i in range(n_images)]
    if bad == "inverted":
        r = np.clip(np.round(6 - truth + rng.normal(0, 0.6, n_images)), 1, 5)
    elif bad == "random":
        r = rng.integers(1, 6, n_images).astype(float)
    elif bad == "constant":
        r = np.full(n_images, 3.0)
    if bad:
        rows += [(f"i{i:02d}", "bad", r[i]) for i in range(n_images)]
    return pd.DataFrame(rows, columns=["image", "observer", "rating"])


@pytest.mark.parametrize("good, bad, words", [(7, "inverted", "reversed scale"), (3, "random", "unrelated to the others"), (3, "inverted", "reversed scale"),
                                              (4, "constant", "same rating")])
def test_inverted_random_and_constant_raters_are_rejected(good, bad, words):
    df = _panel(good=good, bad=bad)
    # the kurtosis test alone keeps them: it judges one image at a time
    from diqa_bench.mos import screen_observers

    assert "bad" not in [r.observer for r in screen_observers(df)]
    mos, report = compute_mos(df, scale=(1, 5))
    assert [r.observer for r in report.rejected] == ["bad"]
    assert words in report.rejected[0].reason
    assert (mos["n"] == good).all()
    assert set(report.correlations) == {f"good{o}" for o in range(good)}
    assert all(r > 0.3 for r in report.correlations.values())


def test_attentive_panel_keeps_everyone_and_reports_reliability():
    df = _panel(good=5)
    _, report = compute_mos(df)
    assert report.rejected == []
    rel = report.reliability
    assert 0.6 < rel["ci_low"] <= rel["value"] <= rel["ci_high"] < 1.0
    assert rel["images"] == 40 and "Spearman-Brown" in rel["method"]
    assert "inter-rater reliability" in format_report(report)
    # a noisier panel is less reliable
    noisy = df.copy()
    noisy["rating"] = noisy["rating"] + np.random.default_rng(0).normal(0, 2.0, len(noisy))
    assert compute_mos(noisy, screening=False)[1].reliability["value"] < rel["value"] - 0.2


def test_intervals_are_clipped_to_the_rating_scale():
    rows = [("a", f"o{k}", r) for k, r in enumerate([5, 5, 5, 4])] + [("b", f"o{k}", r) for k, r in enumerate([1, 1, 2, 1])]
    df = pd.DataFrame(rows, columns=["image", "observer", "rating"])
    unclipped, _ = compute_mos(df, screening=False)
    assert unclipped["ci_high"].max() > 5 and unclipped["ci_low"].min() < 1
    mos, _ = compute_mos(df, screening=False, scale=(1, 5))
    assert mos["ci_high"].max() == 5 and mos["ci_low"].min() == 1
    assert mos.loc[mos.image == "a", "ci_low"].item() == pytest.approx(unclipped.loc[unclipped.image == "a", "ci_low"].item())


def test_leaderboard_data_section_reports_raters_and_preprocessing():
    from diqa_bench.leaderboard import data_section

    _, report = compute_mos(_panel(good=3, bad="random"), scale=(1, 5))
    info = {
        "protocol": {"split_protocol": "full"},
        "domains": {"d": {"datasets": [{"name": "spaq", "preprocessing": {"resize_short_side": 448, "method": "PIL bilinear"},
                                        "split_source": "split file spaq_seed123.pkl, split 1", "split_counts": {"train": 8, "val": 1, "test": 2}}]}},
        "screening": {"derm": report.as_dict()},
    }
    text = "\n".join(data_section(info))
    assert text.startswith("## Data and raters")
    assert "Protocol full" in text
    assert "spaq: images resized to a 448-pixel short side" in text and "train 8, val 1, test 2" in text
    assert "Rejected 1: bad (" in text and "Inter-rater reliability of the kept raters" in text
    assert "Raters of derm: 4 raters, 40 images, 160 ratings on the scale 1 to 5;" in text
    assert data_section({"domains": {}}) == []
    _, report = compute_mos(_ten_point_panel(missing=[(3, "r1")]))
    text = "\n".join(data_section({"screening": {"derm": report.as_dict()}}))
    assert "⚠ Rater wide does not fit the others' scale" in text and "1 image(s) have fewer ratings than the usual 5" in text


def _ratings_csv(path, rows):
    pd.DataFrame(rows, columns=["image", "observer", "rating"]).to_csv(path, index=False)
    return str(path)


# Image a is rated near the top of a 1-5 scale and b near the bottom: the unclipped 95% intervals
# run past both ends.
_EDGE = [("a", f"o{k}", r) for k, r in enumerate([5, 5, 5, 4])] + [("b", f"o{k}", r) for k, r in enumerate([1, 1, 2, 1])]


def test_cli_mos_scale_clips_intervals_and_reports_the_scale(tmp_path, capsys):
    from diqa_bench import cli

    path = _ratings_csv(tmp_path / "r.csv", _EDGE)
    assert cli.main(["mos", path, "--no-screening", "-o", str(tmp_path / "plain.csv")]) == 0
    plain = pd.read_csv(tmp_path / "plain.csv")
    assert plain["ci_high"].max() > 5 and plain["ci_low"].min() < 1
    assert "rating scale" not in capsys.readouterr().err
    assert cli.main(["mos", path, "--no-screening", "--scale", "1", "5", "-o", str(tmp_path / "scaled.csv")]) == 0
    scaled = pd.read_csv(tmp_path / "scaled.csv")
    assert scaled["ci_high"].max() == 5 and scaled["ci_low"].min() == 1
    assert list(scaled["mos"]) == pytest.approx(list(plain["mos"]))
    assert "rating scale [1, 5]" in capsys.readouterr().err
    # a scale below zero parses too (argparse must not take "-2" for an option)
    assert cli.main(["mos", path, "--no-screening", "--scale", "-2", "6"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["ci_high"].max() > 5


def test_cli_mos_rating_off_the_scale_is_a_one_line_error(tmp_path, capsys):
    from diqa_bench import cli

    rows = _EDGE + [("c", "o0", 3), ("c", "o1", 7), ("c", "o2", 0)]
    path = _ratings_csv(tmp_path / "r.csv", rows)
    assert cli.main(["mos", path, "--scale", "1", "5", "-o", str(tmp_path / "out.csv")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and captured.out == ""
    assert "rating 7 of image 'c' by observer 'o1' is outside the scale [1, 5]" in err and "2 rating(s)" in err
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("scale", [["5", "1"], ["3", "3"], ["one", "5"], ["1", "inf"]])
def test_cli_mos_scale_needs_two_numbers_low_below_high(tmp_path, capsys, scale):
    from diqa_bench import cli

    path = _ratings_csv(tmp_path / "r.csv", _EDGE)
    assert cli.main(["mos", path, "--scale", *scale]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("diqa-bench: error: --scale LOW HIGH")


def test_compute_mos_rejects_a_bad_scale():
    df = pd.DataFrame(_EDGE, columns=["image", "observer", "rating"])
    with pytest.raises(DataError, match="low < high"):
        compute_mos(df, scale=(5, 1))
    _, report = compute_mos(df, screening=False, scale=(1, 5))
    assert report.as_dict()["scale"] == [1.0, 5.0]
    assert compute_mos(df, screening=False)[1].as_dict()["scale"] is None


def _ten_point_panel(n_images=40, good=4, seed=3, missing=()):
    """``good`` raters on 1-5 and rater "wide" on 0-10, integer ratings of the same images;
    ``missing``: (image index, rater) ratings left out."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(1.5, 4.5, n_images)
    rows = []
    for o in range(good):
        r = np.clip(np.round(truth + rng.normal(0, 0.5, n_images)), 1, 5)
        rows += [(f"i{i:02d}", f"r{o}", r[i]) for i in range(n_images)]
    wide = np.clip(np.round(2.5 * (truth - 1) + rng.normal(0, 1.0, n_images)), 0, 10)
    rows += [(f"i{i:02d}", "wide", wide[i]) for i in range(n_images)]
    rows = [row for row in rows if (int(row[0][1:]), row[1]) not in set(missing)]
    return pd.DataFrame(rows, columns=["image", "observer", "rating"])


def test_a_rater_on_a_ten_point_scale_is_flagged_without_a_scale():
    df = _ten_point_panel()
    # both screening tests keep them: their ratings rank the images like the others'
    mos, report = compute_mos(df)
    assert report.rejected == [] and (mos["n"] == 5).all()
    assert [f["observer"] for f in report.flagged] == ["wide"]
    flag = report.flagged[0]
    assert flag["high"] > 7 and flag["others_high"] == 5 and flag["slope"] > 2 and "another scale?" in flag["reason"]
    text = format_report(report)
    assert "WARNING: observer wide does not fit the other raters' scale" in text and "--drop-rater wide" in text
    assert report.as_dict()["flagged"][0]["observer"] == "wide"  # kept in run.json's screening


def test_lenient_strict_and_attentive_raters_are_not_flagged():
    for df in (_ratings(biased="obs03")[0], _panel(good=5), _ten_point_panel()[lambda d: d.observer != "wide"]):
        assert compute_mos(df)[1].flagged == []


def test_a_rater_on_a_five_point_scale_among_ten_point_raters_is_flagged_too():
    df = _ten_point_panel(good=1)  # r0 on 1-5 ...
    rng = np.random.default_rng(9)
    wide = df[df.observer == "wide"]
    more = [wide.assign(observer=f"w{k}", rating=np.clip(wide.rating + rng.integers(-1, 2, len(wide)), 0, 10)) for k in range(3)]
    flagged = compute_mos(pd.concat([df, *more]))[1].flagged  # ... among four raters on 0-10
    assert [f["observer"] for f in flagged] == ["r0"] and flagged[0]["slope"] < 0.5


def test_dropping_or_rescaling_the_rater_fixes_the_panel():
    df = _ten_point_panel()
    _, kept = compute_mos(df)
    mos, dropped = compute_mos(df, drop_raters=["wide"])
    assert dropped.flagged == [] and dropped.dropped == ["wide"] and (mos["n"] == 4).all() and dropped.observers == 4
    mos, rescaled = compute_mos(df, scale=(1, 5), rescale_raters={"wide": (0, 10)})
    assert rescaled.flagged == [] and rescaled.rescaled == {"wide": [0.0, 10.0]} and (mos["n"] == 5).all()
    assert mos["mos"].between(1, 5).all()
    assert rescaled.reliability["value"] > kept.reliability["value"]
    with pytest.raises(DataError, match="no observer 'nobody'"):
        compute_mos(df, drop_raters=["nobody"])
    with pytest.raises(DataError, match="needs the scale to map onto"):
        compute_mos(df, rescale_raters={"wide": (0, 10)})
    with pytest.raises(DataError, match="outside the scale \\[0, 5\\] given for them"):
        compute_mos(df, scale=(1, 5), rescale_raters={"wide": (0, 5)})


def test_images_with_fewer_ratings_are_reported():
    df = _ten_point_panel(missing=[(3, "r1"), (7, "r2"), (7, "r3")])
    mos, report = compute_mos(df, drop_raters=["wide"])
    assert report.fewer_ratings == {"typical": 4, "count": 2, "images": {"i07": 2, "i03": 3}}
    assert mos.set_index("image").loc["i03", "n"] == 3
    assert "2 image(s) have fewer ratings than the usual 4" in format_report(report) and "i07 (2)" in format_report(report)
    assert compute_mos(_ten_point_panel(), drop_raters=["wide"])[1].fewer_ratings == {}


def test_cli_off_scale_errors_are_grouped_by_rater_and_the_fixes_work(tmp_path, capsys):
    from diqa_bench import cli

    df = _ten_point_panel()
    path = tmp_path / "r.csv"
    df.to_csv(path, index=False)
    assert cli.main(["mos", str(path), "--scale", "1", "5"]) == 2
    err = capsys.readouterr().err.strip()
    off = int((df.rating > 5).sum() + (df.rating < 1).sum())
    w = df[df.observer == "wide"].rating
    assert "\n" not in err and f"({off} rating(s) off the scale, all by observer 'wide', whose 40 ratings span {w.min():g} to {w.max():g}" in err
    assert "--drop-rater wide" in err
    assert cli.main(["mos", str(path)]) == 0  # no scale: kept, but flagged
    assert "WARNING: observer wide" in capsys.readouterr().err
    out = tmp_path / "mos.csv"
    assert cli.main(["mos", str(path), "--scale", "1", "5", "--rescale-rater", "wide", "0", "10", "-o", str(out)]) == 0
    assert "rescaled on request: observer wide from [0, 10]" in capsys.readouterr().err and (pd.read_csv(out)["n"] == 5).all()
    assert cli.main(["mos", str(path), "--drop-rater", "wide", "-o", str(out)]) == 0
    assert "WARNING" not in capsys.readouterr().err and (pd.read_csv(out)["n"] == 4).all()
    assert cli.main(["mos", str(path), "--drop-rater", "nobody"]) == 2
    assert "no observer 'nobody'" in capsys.readouterr().err
