"""Comparing two stored runs: paired and independent deltas, and like-for-like warnings."""

import numpy as np
import pandas as pd
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


def test_compare_aligns_seeds_and_names_the_others(tmp_path):
    """A has seeds 0, 1; B has 1, 2. Both columns and the change describe seed 1 alone."""
    from diqa_bench.report import compare_runs

    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 5, 70)
    noise = {s: np.random.default_rng(100 + s).normal(0, 0.3 + 0.4 * s, 70) for s in (0, 1, 2)}
    a = write_run(tmp_path / "a", {("m", "-", "skin", s): mos + noise[s] for s in (0, 1)}, {"skin": mos})
    b = write_run(tmp_path / "b", {("m", "-", "skin", s): mos + noise[s] for s in (1, 2)}, {"skin": mos})
    df, warnings = compare_runs(a, b)
    srocc = df.set_index("statistic").loc["SROCC"]
    assert srocc["mode"] == "paired" and srocc.seeds == "1"
    assert srocc.value_a == pytest.approx(srocc.value_b) and srocc.delta == pytest.approx(0)  # seed 1 is identical in both
    assert any("split seeds differ (only in A: seed 0; only in B: seed 2)" in w for w in warnings)


def test_compare_resamples_content_groups(tmp_path):
    from diqa_bench.report import compare_runs

    rng = np.random.default_rng(6)
    mos = rng.uniform(1, 5, 80)
    scene = [f"s{i // 10}" for i in range(80)]
    a_scores = {("m", "-", "skin", 0): mos + np.repeat(rng.normal(0, 1.5, 8), 10) + rng.normal(0, 0.3, 80)}
    b_scores = {("m", "-", "skin", 0): mos + np.repeat(rng.normal(0, 1.5, 8), 10) + rng.normal(0, 0.3, 80)}
    widths = []
    for groups in ({"skin": scene}, None):
        a = write_run(tmp_path / f"a{groups is None}", a_scores, {"skin": mos}, groups=groups)
        b = write_run(tmp_path / f"b{groups is None}", b_scores, {"skin": mos}, groups=groups)
        row = compare_runs(a, b)[0].set_index("statistic").loc["SROCC"]
        widths.append(row.ci_high - row.ci_low)
        assert row.groups == (8 if groups else 80)
    assert widths[0] > 1.5 * widths[1]


def test_compare_cli_writes_its_table(tmp_path, capsys):
    from diqa_bench import cli

    a = _handmade(tmp_path / "a", lambda mos, rng: rng.normal(size=70))
    b = _handmade(tmp_path / "b", lambda mos, rng: mos + rng.normal(0, 0.5, 70))
    assert cli.main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp.csv")]) == 0
    table = pd.read_csv(tmp_path / "cmp.csv")
    assert set(table.statistic) == {"SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"} and table.significant.any()
    assert cli.main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp.md")]) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "cmp.md").read_text()
    assert md.startswith("# Run comparison (B - A)") and printed.rstrip().endswith(md.rstrip())
    assert cli.main(["compare", str(a), str(b), "-o", str(tmp_path / "cmp.txt")]) == 2
    assert "use a .csv or .md file name" in capsys.readouterr().err


def test_compare_puts_transfer_verdicts_side_by_side(tmp_path):
    from diqa_bench.report import build_tables, compare_transfer, format_comparison

    rng = np.random.default_rng(9)
    mos = rng.uniform(1, 5, 60)
    cells = {}
    for seed in (0, 1):
        cells[("net", "skin", "skin", seed)] = mos + rng.normal(0, 1.0, 60)
        cells[("net", "skin+natural", "skin", seed)] = mos + rng.normal(0, 0.2, 60)
    a = write_run(tmp_path / "a", cells, {"skin": mos}, train_sets=[["skin"], ["skin", "natural"]])
    cells_b = dict(cells)
    cells_b.update({("net", "skin+natural", "skin", s): cells[("net", "skin", "skin", s)] + rng.normal(0, 0.01, 60) for s in (0, 1)})
    b = write_run(tmp_path / "b", cells_b, {"skin": mos}, train_sets=[["skin"], ["skin", "natural"]])
    for folder in (a, b):
        build_tables(folder)
    table = compare_transfer(a, b)
    row = table.set_index("statistic").loc["SROCC"]
    assert row.verdict_a == "better" and row.verdict_b == "no detectable difference" and row.changed
    assert "## Transfer verdicts (A vs B)" in format_comparison(pd.DataFrame(), [], transfer=table)


# -- quality gate (acceptability): paired differences of AUC, ACC, RETAKE --------------------------

def _gate_rows(df):
    return df[df.statistic.isin(["AUC", "ACC", "RETAKE"])].set_index("statistic")


def test_gate_at_a_better_threshold_is_significantly_better(tmp_path):
    """Same scores, so the correlations and AUC do not move; B's cut (3.0, the acceptability MOS)
    fits the scores, A's (4.0) rejects many acceptable photos: B is more accurate and asks for fewer
    retakes, and RETAKE's better direction is down."""
    from diqa_bench.report import compare_runs, format_comparison

    same = lambda mos, rng: mos + rng.normal(0, 0.3, 70)
    a = _handmade(tmp_path / "a", same, acceptability=3.0, thresholds={("m", "-", "skin", s): 4.0 for s in (0, 1)})
    b = _handmade(tmp_path / "b", same, acceptability=3.0, thresholds={("m", "-", "skin", s): 3.0 for s in (0, 1)})
    df, warnings = compare_runs(a, b)
    assert warnings == []
    assert (df[df.statistic.isin(["SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"])].delta == 0).all()
    gate = _gate_rows(df)
    assert list(gate.index) == ["AUC", "ACC", "RETAKE"] and (gate["mode"] == "paired").all()
    assert gate.loc["AUC", "delta"] == 0 and gate.loc["AUC", "ci_low"] == 0 == gate.loc["AUC", "ci_high"]
    assert gate.loc["ACC", "delta"] > 0.1 and gate.loc["ACC", "ci_low"] > 0 and gate.loc["ACC", "significant"]
    assert gate.loc["RETAKE", "delta"] < -0.1 and gate.loc["RETAKE", "ci_high"] < 0 and gate.loc["RETAKE", "significant"]
    # The stored per-seed values are the same statistics (all images common).
    assert gate.loc["ACC", "delta"] == pytest.approx(gate.loc["ACC", "value_b"] - gate.loc["ACC", "value_a"])
    text = format_comparison(df, warnings)
    assert "## Quality gate (B - A)" in text
    lines = {line.split("|")[3].strip(): line for line in text.splitlines() if line.startswith("| m @ -") and "Quality" not in line}
    assert "| higher " in lines["ACC"] and "B better *" in lines["ACC"]
    assert "| lower " in lines["RETAKE"] and "B better *" in lines["RETAKE"]  # a negative ΔRETAKE is the improvement
    assert "no detectable difference" in lines["AUC"]


def test_gate_of_an_informative_score_beats_noise(tmp_path):
    from diqa_bench.report import compare_runs, format_comparison

    a = _handmade(tmp_path / "a", lambda mos, rng: rng.normal(size=70), acceptability=3.0)
    b = _handmade(tmp_path / "b", lambda mos, rng: mos + rng.normal(0, 0.5, 70), acceptability=3.0)
    df, warnings = compare_runs(a, b)
    gate = _gate_rows(df)
    assert gate.loc["ACC", "ci_low"] > 0 and gate.loc["AUC", "ci_low"] > 0.2
    assert format_comparison(df, warnings).count("B better *") >= 2


def test_identical_gated_runs_change_by_exactly_zero(tmp_path):
    from diqa_bench.report import compare_runs

    same = lambda mos, rng: mos + rng.normal(0, 0.8, 70)
    a = _handmade(tmp_path / "a", same, acceptability=3.0)
    b = _handmade(tmp_path / "b", same, acceptability=3.0)
    gate = _gate_rows(compare_runs(a, b)[0])
    assert len(gate) == 3
    assert (gate.delta == 0).all() and (gate.ci_low == 0).all() and (gate.ci_high == 0).all() and not gate.significant.any()


def test_no_gate_rows_unless_both_runs_declare_acceptability(tmp_path):
    from diqa_bench.report import compare_runs, format_comparison

    same = lambda mos, rng: mos + rng.normal(0, 0.5, 70)
    plain = _handmade(tmp_path / "plain", same)
    gated = _handmade(tmp_path / "gated", same, acceptability=3.0)
    for a, b in ((plain, plain), (plain, gated), (gated, plain)):
        df, warnings = compare_runs(a, b)
        assert set(df.statistic) == {"SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE"}
        assert "Quality gate" not in format_comparison(df, warnings)
    other = _handmade(tmp_path / "other", same, acceptability=3.5)
    assert any(w.startswith("acceptability differs: MOS threshold 3.0 vs 3.5") for w in compare_runs(gated, other)[1])


def test_gate_difference_by_hand_with_each_runs_own_cut(tmp_path):
    """8 images, MOS below 3 unacceptable (the first 4). A: scores = MOS, stored cut 4.25, rejects 6
    (ACC 6/8, RETAKE 6/8). B: a lower-is-better method, scores = -10 MOS, stored cut -30 (accept
    when score <= -30): rejects exactly the 4 unacceptable (ACC 1, RETAKE 4/8). Both rank
    perfectly: AUC 1. Only images 5 and 6 change (A wrongly rejects them), in B's favour, so every
    replicate's ΔACC is >= 0 and ΔRETAKE <= 0."""
    from diqa_bench.report import compare_runs

    mos = np.array([1, 1.5, 2, 2.5, 3.5, 4, 4.5, 5])
    key = ("m", "-", "skin", 0)
    a = write_run(tmp_path / "a", {key: mos}, {"skin": mos}, acceptability=3.0, thresholds={key: 4.25})
    b = write_run(tmp_path / "b", {key: -10 * mos}, {"skin": mos}, acceptability=3.0, thresholds={key: -30.0}, lower_better=("m",))
    gate = _gate_rows(compare_runs(a, b)[0])
    assert gate.loc["ACC", "value_a"] == pytest.approx(6 / 8) and gate.loc["ACC", "value_b"] == pytest.approx(1.0)
    assert gate.loc["ACC", "delta"] == pytest.approx(0.25) and gate.loc["RETAKE", "delta"] == pytest.approx(-0.25)
    assert gate.loc["AUC", "delta"] == 0 and gate.loc["AUC", "value_a"] == 1 == gate.loc["AUC", "value_b"]
    assert gate.loc["ACC", "ci_low"] >= 0 and gate.loc["ACC", "ci_high"] > 0
    assert gate.loc["RETAKE", "ci_high"] <= 0 and gate.loc["RETAKE", "ci_low"] < 0


def test_stored_gate_matches_what_the_run_computed(tmp_path, monkeypatch):
    """A real (stub) run with acceptability: rebuilding each cell's unacceptable images and cut
    from the stored files gives back the run's own per-seed AUC, ACC and RETAKE, and comparing the
    run with itself reports those statistics with a zero change."""
    from diqa_bench import stats
    from diqa_bench.report import compare_runs
    from diqa_bench.report.stored import load_run
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")  # the stub plugins alone
    cfg = stub_config(seeds=[0], train_sets=[["a"], ["a", "b"]], acceptability={"threshold": 3.0})
    # b mixes a MOS and a DMOS dataset: each image is unacceptable on its own dataset's scale and direction
    cfg["domains"]["b"].append({"dataset": "stub-dataset", "name": "stub-d", "options": {"count": 30, "seed": 3, "tag": "d", "lower_better": True}})
    res = run_tiny_benchmark(tmp_path, cfg)
    m = res.metrics
    stored = {(r.method, r.train, r.test, str(r.seed), r.statistic): r.value for r in m.itertuples(index=False)}
    cells = load_run(res.out).cells()
    assert cells and any(c.lower_better for c in cells.values())  # a lower-is-better method's cut is aligned too
    assert cells[("stub-linear", "a", "b", "0")].bad.any()
    for key, cell in cells.items():
        assert cell.bad is not None and np.isfinite(cell.cut)
        for name in ("AUC", "ACC", "RETAKE"):
            want = stored[(*key, name)]
            got = float(stats.statistic(name, cell.sample())[0])
            assert got == pytest.approx(want, abs=1e-12) or (np.isnan(got) and np.isnan(want)), (key, name)
    df, _ = compare_runs(res.out, res.out)
    gate = df[df.statistic.isin(["AUC", "ACC", "RETAKE"])]
    assert len(gate) == 3 * len({k[:3] for k in cells}) and (gate.delta.fillna(0) == 0).all()


def test_compare_adjusts_within_each_test_domain_and_statistic(tmp_path):
    """Six entries, each much better in B: raw p = 2/201 everywhere; Holm over the six rows of a
    statistic needs 6 x 2/201 < 0.05 (it is 0.0597), so nothing stays significant with 200
    replicates; adjust none keeps the unadjusted verdicts; -o FILE.csv holds both p-values."""
    from diqa_bench import cli
    from diqa_bench.report import compare_runs, format_comparison

    rng = np.random.default_rng(5)
    mos = rng.uniform(1, 5, 70)
    runs = {}
    for side in "ab":
        cells = {(f"m{i}", "-", "skin", 0): (rng.normal(size=70) if side == "a" else mos + rng.normal(0, 0.3, 70)) for i in range(6)}
        runs[side] = write_run(tmp_path / side, cells, {"skin": mos})
    df, _ = compare_runs(runs["a"], runs["b"])
    srocc = df[df.statistic == "SROCC"]
    assert (srocc.ci_low > 0).all() and (srocc.family_size == 6).all() and (srocc.adjust == "holm").all()
    assert pytest.approx(6 * 2 / 201) == srocc.p_adjusted.to_numpy() and not srocc.significant.any()
    assert "Holm (family-wise error rate)" in format_comparison(df, [])
    raw, _ = compare_runs(runs["a"], runs["b"], adjust="none")
    assert (raw.significant == ((raw.ci_low > 0) | (raw.ci_high < 0))).all() and raw[raw.statistic == "SROCC"].significant.all()
    out = tmp_path / "cmp.csv"
    assert cli.main(["compare", str(runs["a"]), str(runs["b"]), "--adjust", "bh", "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert {"p_value", "p_adjusted", "adjust", "family_size"} <= set(table.columns) and (table.adjust == "bh").all()
    assert table[table.statistic == "SROCC"].significant.all()  # BH on equal p-values: unchanged


def test_compare_names_the_config_changes_and_marks_small_domains(tmp_path, stub_runs):  # noqa: F811 (the imported fixture)
    from diqa_bench.report import compare_runs, format_comparison

    _, warnings = compare_runs(*stub_runs)
    assert any(w.startswith("config differs") and w.endswith(": statistics.bootstrap: 50 vs 60") for w in warnings)
    rng = np.random.default_rng(1)
    mos = rng.uniform(1, 5, 20)  # 20 images, each its own group: too little data
    a = write_run(tmp_path / "a", {("m", "-", "skin", 0): rng.normal(size=20)}, {"skin": mos})
    b = write_run(tmp_path / "b", {("m", "-", "skin", 0): mos + rng.normal(0, 0.3, 20)}, {"skin": mos})
    df, warnings = compare_runs(a, b)
    assert df.warning.str.startswith("too little data").all()
    text = format_comparison(df, warnings)
    assert "| skin ⚠ " in text and "⚠ a test domain with too little data in A or B" in text
