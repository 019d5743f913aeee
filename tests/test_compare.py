"""Comparing two stored runs: paired and independent deltas, and like-for-like warnings."""

import numpy as np
import pytest
from test_report import stub_runs, write_run  # noqa: F401 (stub_runs: a fixture shared with test_report)


def test_compare_two_stored_runs_with_different_configs(stub_runs):  # noqa: F811 (the imported fixture)
    from diqa_bench.report import compare_runs, format_comparison

    df, warnings = compare_runs(*stub_runs)
    assert any(w.startswith("config differs") for w in warnings)
    assert not any(w.startswith(("data differs", "versions differ", "machine differs")) for w in warnings)
    entries = set(zip(df.method, df.train, df.test))
    assert entries == {("stub-noise", "-", t) for t in "ab"} | {("stub-linear", tr, t) for tr in ("a", "a+b") for t in "ab"}
    assert set(df.statistic) == {"SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"}
    # Same images, same scores: every change is exactly 0 and none is significant.
    assert (df["mode"] == "paired").all() and (df.delta == 0).all() and not df.significant.any()
    assert (df.value_a == df.value_b).all()
    text = format_comparison(df, warnings)
    assert "config differs" in text and "| stub-noise @ -" in text and "+0.000 [+0.000, +0.000]" in text


def _handmade(folder, scores_fn, *, other_images=False, **kw):
    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 5, 70)
    cells = {("m", "-", "skin", s): scores_fn(mos, np.random.default_rng(100 + s)) for s in (0, 1)}
    folder = write_run(folder, cells, {"skin": mos}, **kw)
    if other_images:  # no image common to both runs: rename the ids
        path = folder / "scores.csv"
        path.write_text(path.read_text().replace("\nimg", "\nother"))
    return folder


def test_paired_improvement_is_significant(tmp_path):
    from diqa_bench.report import compare_runs

    a = _handmade(tmp_path / "a", lambda mos, rng: rng.normal(size=70))
    b = _handmade(tmp_path / "b", lambda mos, rng: mos + rng.normal(0, 0.5, 70))
    df, warnings = compare_runs(a, b)
    srocc = df.set_index("statistic").loc["SROCC"]
    assert srocc["mode"] == "paired" and srocc.n == 70
    assert srocc.delta > 0.5 and srocc.ci_low > 0 and srocc.significant and srocc.p_value < 0.01
    assert srocc.delta == pytest.approx(srocc.value_b - srocc.value_a)  # all images common: same as the stored means
    rmse = df.set_index("statistic").loc["RMSE"]
    assert rmse.delta < 0 and rmse.significant  # lower RMSE: an improvement shows as a negative delta
    assert warnings == []


def test_no_common_images_falls_back_to_independent_bootstraps(tmp_path):
    from diqa_bench.report import compare_runs

    a = _handmade(tmp_path / "a", lambda mos, rng: mos + rng.normal(0, 0.5, 70))
    b = _handmade(tmp_path / "b", lambda mos, rng: mos + rng.normal(0, 0.5, 70), other_images=True)
    df, _ = compare_runs(a, b)
    srocc = df.set_index("statistic").loc["SROCC"]
    assert srocc["mode"] == "independent" and srocc.n == 0
    assert srocc.delta == pytest.approx(srocc.value_b - srocc.value_a)
    assert srocc.ci_low < 0 < srocc.ci_high and not srocc.significant


def test_warnings_name_data_version_and_machine_differences(tmp_path):
    from diqa_bench.report import compare_runs, format_comparison

    same = lambda mos, rng: mos + rng.normal(0, 0.5, 70)
    a = _handmade(tmp_path / "a", same)
    b = _handmade(tmp_path / "b", same, config_hash="cfg-b",
                  environment={"torch": "2.15.0", "gpu": "NVIDIA H100", "device": "cuda", "git": {"commit": "def", "dirty": True}})
    info = (b / "run.json").read_text().replace('"hash-skin"', '"hash-changed"')
    (b / "run.json").write_text(info)
    df, warnings = compare_runs(a, b)
    text = "\n".join(warnings)
    assert "config differs: hash cfg-a vs cfg-b" in text
    assert "data differs: dataset ds-skin content hash hash-skin vs hash-changed" in text
    assert "versions differ: torch 2.14.1 vs 2.15.0" in text
    assert "machine differs: device cpu vs cuda" in text and "machine differs: gpu None vs NVIDIA H100" in text
    assert "code differs: git commit abc vs def" in text
    assert "versions differ: pyiqa" not in text
    assert format_comparison(df, warnings).count("\n- ") == len(warnings)


def test_entries_in_one_run_only_are_reported(tmp_path):
    from diqa_bench.report import compare_runs

    a = _handmade(tmp_path / "a", lambda mos, rng: mos)
    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 5, 70)
    b = write_run(tmp_path / "b", {("other", "-", "skin", 0): mos}, {"skin": mos})
    df, warnings = compare_runs(a, b)
    assert df.empty
    assert any("only in A" in w for w in warnings) and any("only in B" in w for w in warnings)
