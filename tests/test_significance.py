"""Paired bootstrap of the SROCC difference against the best entry of each test domain."""

import numpy as np
import pandas as pd
import pytest
from test_report import write_run


def _run(tmp_path, extra=None, lower_better=(), seeds=(0, 1), n=60):
    rng = np.random.default_rng(7)
    mos = rng.uniform(1, 5, n)
    good = mos + rng.normal(0, 0.1, n)
    cells = {}
    for seed in seeds:
        cells[("good", "-", "skin", seed)] = good
        cells[("random", "-", "skin", seed)] = rng.normal(size=n)
        for name, scores in (extra or {}).items():
            cells[(name, "-", "skin", seed)] = scores(good)
    return write_run(tmp_path, cells, {"skin": mos}, lower_better=lower_better)


def test_random_predictions_are_significantly_worse_than_mos_plus_noise(tmp_path):
    from diqa_bench.report.significance import significance

    df = significance(_run(tmp_path))
    pooled = df[(df.seed == "all")].set_index("method")
    assert list(pooled.index) == ["random"]
    row = pooled.loc["random"]
    assert (row.best_method, row.best_train) == ("good", "-")
    assert row.delta > 0.5 and row.ci_low > 0 and row.p_value < 0.01 and bool(row.worse)
    per_seed = df[df.seed != "all"]
    assert sorted(per_seed.seed) == ["0", "1"] and per_seed.worse.all() and (per_seed.n == 60).all()


def test_identical_predictions_give_zero_delta_and_no_significance(tmp_path):
    from diqa_bench.report.significance import significance

    df = significance(_run(tmp_path, extra={"twin": lambda good: good.copy()}))
    twin = df[(df.seed == "all") & (df.method.isin(["twin", "good"]))]
    assert len(twin) == 1  # one of the two is the best, the other is compared with it
    row = twin.iloc[0]
    assert row.delta == 0 and row.ci_low == 0 and row.ci_high == 0
    assert row.p_value == 1 and not row.worse


def test_direction_lower_better_is_negated_not_abs(tmp_path):
    from diqa_bench.report.significance import significance

    flipped = {"inverse-lb": lambda good: -good, "inverse-hb": lambda good: -good}
    df = significance(_run(tmp_path, extra=flipped, lower_better={"inverse-lb"}))
    pooled = df[df.seed == "all"].set_index("method")
    # Declared lower-is-better, the negated scores rank exactly like "good": a tie, not worse.
    assert not pooled.loc[pooled.index.isin(["inverse-lb", "good"])].worse.any()
    # Not declared: it ranks images backwards, SROCC about -1, so the delta is about 2.
    assert pooled.loc["inverse-hb"].delta == pytest.approx(2, abs=0.05) and pooled.loc["inverse-hb"].worse


def test_pairing_resamples_the_same_images_for_both_methods(tmp_path):
    """Two close methods: the paired interval of their SROCC difference is much narrower than the
    one from independent resamples, because the sampling noise both share cancels out."""
    from diqa_bench import stats
    from diqa_bench.report.significance import significance
    from diqa_bench.report.stored import load_run, paired_samples

    rng = np.random.default_rng(11)
    mos = rng.uniform(1, 5, 80)
    shared = mos + rng.normal(0, 1.0, 80)  # errors both methods make: image sampling moves both SROCCs together
    folder = write_run(tmp_path, {("good", "-", "skin", 0): shared, ("close", "-", "skin", 0): shared + rng.normal(0, 0.4, 80)}, {"skin": mos})
    row = significance(folder).query("method == 'close' and seed == 'all'").iloc[0]
    cells = load_run(folder).cells()
    close, best = paired_samples(cells[("close", "-", "skin", "0")], cells[("good", "-", "skin", "0")])
    d = stats.paired_delta({"0": (close, best)}, "SROCC", bootstrap=200, stats_seed=0)
    assert d.n_images == 80 and d.value == pytest.approx(row.delta) and d.ci == pytest.approx((row.ci_low, row.ci_high))
    wa, wb = (stats.group_weights(best.codes, 500, np.random.default_rng(i)) for i in (1, 2))
    independent = stats.statistic("SROCC", best, wa) - stats.statistic("SROCC", close, wb)
    lo_p, hi_p = d.ci
    lo_i, hi_i = stats.quantile_ci(independent, 0.95)
    assert (hi_p - lo_p) < 0.5 * (hi_i - lo_i)
    assert row.worse and lo_p > 0 and lo_i < 0  # paired: significant; independent resamples would miss it


def test_significance_resamples_content_groups_and_warns_on_little_data(tmp_path):
    """Same scores, two group structures: 80 images in 4 scenes whose shared bias moves both
    methods differently, against 80 independent images. Only 4 groups: the warning is set."""
    from diqa_bench.report.significance import significance

    rng = np.random.default_rng(2)
    mos = rng.uniform(1, 5, 80)
    scene = np.arange(80) // 20
    a = mos + np.repeat(rng.normal(0, 1.5, 4), 20)[np.argsort(np.argsort(scene))] + rng.normal(0, 0.3, 80)
    b = mos + np.repeat(rng.normal(0, 1.5, 4), 20) + rng.normal(0, 0.3, 80)
    cells = {("a", "-", "skin", 0): a, ("b", "-", "skin", 0): b}
    grouped = significance(write_run(tmp_path / "g", cells, {"skin": mos}, groups={"skin": [f"scene{g}" for g in scene]}))
    single = significance(write_run(tmp_path / "i", cells, {"skin": mos}))
    g, i = (df[df.seed == "all"].iloc[0] for df in (grouped, single))
    assert g.delta == pytest.approx(i.delta)
    assert (g.ci_high - g.ci_low) > 1.5 * (i.ci_high - i.ci_low)
    assert g.groups == 4 and "4 content groups" in g.warning
    assert i.groups == 80 and i.warning == ""  # 80 single-image groups: enough data, no warning


def test_significance_is_seeded(tmp_path):
    from diqa_bench.report.significance import significance

    folder = _run(tmp_path)
    pd.testing.assert_frame_equal(significance(folder), significance(folder))
    assert not significance(folder, seed=1).equals(significance(folder, seed=2))


def test_significance_marks_for_the_leaderboard(tmp_path):
    from diqa_bench.report.significance import WORSE_MARK, significance_marks

    marks = significance_marks(_run(tmp_path, extra={"twin": lambda good: good.copy()}))
    assert marks[("random", "-", "skin")] == WORSE_MARK
    assert [marks.get(("twin", "-", "skin")), marks.get(("good", "-", "skin"))].count("") == 1  # the best is not in the dict


def _many_worse(tmp_path, k=6):
    """The best entry and ``k`` random ones, 200 replicates: every raw p is the smallest possible,
    2 / 201, and every interval lies above 0."""
    return _run(tmp_path, extra={f"random{i}": (lambda good, i=i: np.random.default_rng(50 + i).normal(size=len(good))) for i in range(k)})


def test_holm_adjusts_the_dagger_over_the_comparisons_with_the_best(tmp_path):
    from diqa_bench.report.significance import significance

    folder = _many_worse(tmp_path)
    holm = significance(folder)
    pooled = holm[holm.seed == "all"]
    assert len(pooled) == 7 and (pooled.family_size == 7).all() and (pooled.adjust == "holm").all()
    assert (pooled.ci_low > 0).all() and pytest.approx(2 / 201) == pooled.p_value.to_numpy()
    # 7 x 2/201 = 0.0697: with 200 replicates no entry of a family of 7 can be called worse
    assert pytest.approx(7 * 2 / 201) == pooled.p_adjusted.to_numpy() and not pooled.worse.any()
    assert (holm.p_adjusted >= holm.p_value).all()
    per_seed = holm[holm.seed == "0"]
    assert (per_seed.family_size == 7).all()  # each seed's comparisons are a family of their own
    # Benjamini-Hochberg on equal p-values leaves them as they are: all 7 worse
    assert significance(folder, adjust="bh").query("seed == 'all'").worse.all()


def test_adjust_none_gives_the_unadjusted_verdicts(tmp_path):
    from diqa_bench.report.significance import significance

    df = significance(_many_worse(tmp_path), adjust="none")
    assert (df.p_adjusted == df.p_value).all() and (df.worse == (df.ci_low > 0)).all() and df.worse.all()


def test_the_run_protocol_chooses_the_adjustment(tmp_path):
    import json

    from diqa_bench.report.significance import significance

    folder = _many_worse(tmp_path)
    info = json.loads((folder / "run.json").read_text())
    info["protocol"]["adjust"] = "none"
    (folder / "run.json").write_text(json.dumps(info))
    assert significance(folder).query("seed == 'all'").worse.all()
