"""Statistics against scipy, the VQEG logistic on a hand-worked case, direction by sign."""

import numpy as np
import pytest
from scipy import stats as sps

from diqa_bench import stats

# the built-in statistics, as the core plugin registers them: the correlations, and the quality gate's
STATISTICS = tuple(n for n, spec in stats.builtin_statistics().items() if not spec.needs_acceptability)
GATE_STATISTICS = tuple(n for n, spec in stats.builtin_statistics().items() if spec.needs_acceptability)


def _data(n=60, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, n)
    if ties:
        mos = np.round(mos)  # integer MOS: many ties, where tau-b differs from tau-a
    score = mos + rng.normal(0, 0.8, n)
    return score, mos


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy(seed, ties):
    score, mos = _data(seed=seed, ties=ties)
    cell = stats.evaluate(score, mos, bootstrap=0)
    assert cell.values["SROCC"] == pytest.approx(sps.spearmanr(score, mos).statistic, abs=1e-12)
    assert cell.values["KRCC"] == pytest.approx(sps.kendalltau(score, mos).statistic, abs=1e-12)
    assert cell.values["PLCC_raw"] == pytest.approx(sps.pearsonr(score, mos).statistic, abs=1e-12)
    assert cell.n == len(score)
    assert cell.ci == {}


@pytest.mark.parametrize("n", [40, 300])  # vectorised pairs for small test sets, scipy per row for larger ones
def test_bootstrap_kendall_matches_scipy_per_resample(n):
    score, mos = _data(n=n, ties=True)
    cell = stats.evaluate(score, mos, bootstrap=5, seed=3)
    idx = np.random.default_rng(3).integers(0, n, size=(5, n))
    expected = [sps.kendalltau(score[i], mos[i]).statistic for i in idx]
    np.testing.assert_allclose(cell.boot["KRCC"], expected, atol=1e-12)


def test_logistic_fit_recovers_known_parameters():
    true = (4.5, 1.2, 0.3, 0.7)  # upper asymptote, lower asymptote, midpoint, slope
    x = np.linspace(-3, 3, 50)
    y = stats.logistic4(x, *true)
    # hand-worked points: at the midpoint the curve is halfway between the asymptotes
    assert stats.logistic4(np.array([0.3]), *true)[0] == pytest.approx((4.5 + 1.2) / 2)
    assert stats.logistic4(np.array([0.3 + 0.7 * np.log(3)]), *true)[0] == pytest.approx(1.2 + 3.3 * 0.75)
    mapping = stats.fit_logistic(x, y)
    assert mapping.kind == "logistic4"
    b1, b2, b3, b4 = mapping.params
    assert (b1, b2, b3, abs(b4)) == pytest.approx(true, abs=1e-4)
    cell = stats.evaluate(x, y, bootstrap=0)
    assert cell.values["PLCC"] == pytest.approx(1.0, abs=1e-9)
    assert cell.values["RMSE"] == pytest.approx(0.0, abs=1e-5)
    # a logistic is not a line: the raw Pearson correlation is visibly below 1
    assert cell.values["PLCC_raw"] < 0.99


def test_mapping_falls_back_to_linear_for_constant_scores():
    mapping = stats.fit_logistic(np.ones(10), np.arange(10.0))
    assert mapping.kind == "linear"
    assert mapping(np.ones(3)) == pytest.approx([4.5] * 3)


def test_lower_better_is_handled_by_sign():
    score, mos = _data(seed=4)
    negated = stats.evaluate(-score, mos, bootstrap=50, seed=1)
    declared = stats.evaluate(score, mos, lower_better=True, bootstrap=50, seed=1)
    for k in STATISTICS:
        assert declared.values[k] == pytest.approx(negated.values[k], abs=1e-9), k
        assert declared.ci[k] == pytest.approx(negated.ci[k], abs=1e-9), k
    # A good lower-is-better method (score falls as MOS rises) reads as a positive correlation.
    good = stats.evaluate(-mos, mos, lower_better=True, bootstrap=0)
    assert good.values["SROCC"] == pytest.approx(1.0)


def test_backwards_method_gets_negative_correlation_not_abs():
    score, mos = _data(seed=5)
    # declared lower-is-better but actually higher-is-better: ranks images backwards
    backwards = stats.evaluate(score, mos, lower_better=True, bootstrap=0)
    forwards = stats.evaluate(score, mos, bootstrap=0)
    assert backwards.values["SROCC"] < -0.5
    assert backwards.values["SROCC"] == pytest.approx(-forwards.values["SROCC"])
    assert backwards.values["KRCC"] == pytest.approx(-forwards.values["KRCC"])
    assert backwards.values["PLCC_raw"] == pytest.approx(-forwards.values["PLCC_raw"])


def test_dmos_labels_are_negated_too():
    score, mos = _data(seed=6)
    dmos = 6.0 - mos
    plain = stats.evaluate(score, mos, bootstrap=0)
    flipped = stats.evaluate(score, dmos, mos_lower_better=True, bootstrap=0)
    for k in ("SROCC", "KRCC", "PLCC_raw", "PLCC"):
        assert flipped.values[k] == pytest.approx(plain.values[k], abs=1e-6), k


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    score, mos = _data(n=50, seed=7)
    a = stats.evaluate(score, mos, bootstrap=200, seed=11)
    b = stats.evaluate(score, mos, bootstrap=200, seed=11)
    c = stats.evaluate(score, mos, bootstrap=200, seed=12)
    for k in STATISTICS:
        lo, hi = a.ci[k]
        assert lo <= a.values[k] <= hi, k
        assert lo < hi, k
        assert a.ci[k] == b.ci[k], k
    assert any(a.ci[k] != c.ci[k] for k in STATISTICS)
    assert set(a.boot) == set(STATISTICS) and len(a.boot["SROCC"]) == 200


def test_wider_confidence_gives_wider_interval():
    score, mos = _data(n=50, seed=8)
    narrow = stats.evaluate(score, mos, bootstrap=200, confidence=0.5, seed=0).ci["SROCC"]
    wide = stats.evaluate(score, mos, bootstrap=200, confidence=0.99, seed=0).ci["SROCC"]
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_raise(bad):
    score, mos = _data(n=10)
    score[3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        stats.evaluate(score, mos)


def test_bad_shapes_and_tiny_cells_raise():
    with pytest.raises(ValueError, match="same length"):
        stats.evaluate(np.arange(5.0), np.arange(4.0))
    with pytest.raises(ValueError, match="at least 3"):
        stats.evaluate(np.arange(2.0), np.arange(2.0))


def test_pooled_ci_is_the_interval_of_the_mean_over_seeds():
    # Estimand: mean over seeds; replicate b of the pooled interval = mean over seeds of replicate b.
    lo, hi = stats.pooled_ci([np.full(100, 0.2), np.full(100, 0.8)], confidence=0.9)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    a, b = np.linspace(0, 1, 101), np.linspace(1, 0, 101)  # anti-aligned replicates cancel exactly
    assert stats.pooled_ci([a, b]) == pytest.approx((0.5, 0.5))
    assert stats.pooled_ci([a, a]) == pytest.approx(stats.quantile_ci(a))
    assert all(np.isnan(stats.pooled_ci([])))


def test_acceptability_on_a_constructed_case():
    mos_train = np.array([1.0, 1.5, 2.0, 2.5, 3.5, 4.0, 4.5, 5.0])
    mos_test = np.array([1.2, 2.2, 2.8, 3.6, 4.2, 4.8])
    # a perfect higher-is-better score separates unacceptable (MOS < 3) images exactly
    perfect = stats.acceptability(mos_train, mos_train, mos_test, mos_test, 3.0)
    assert perfect["AUC"] == pytest.approx(1.0)
    assert perfect["ACC"] == pytest.approx(1.0)
    assert perfect["RETAKE"] == pytest.approx(3 / 6)
    # a lower-is-better score of the same information gives the same numbers
    lower = stats.acceptability(-mos_train, mos_train, -mos_test, mos_test, 3.0, lower_better=True)
    assert lower == pytest.approx(perfect)
    # a score that ranks backwards detects nothing: AUC 0, not 1
    backwards = stats.acceptability(mos_train, mos_train, -mos_test, mos_test, 3.0)
    assert backwards["AUC"] == pytest.approx(0.0)
    # one swapped pair among 3 x 3 bad/good pairs: AUC 8/9
    swapped = np.array([1.0, 2.0, 4.0, 3.5, 5.0, 6.0])
    assert stats.acceptability([], [], swapped, mos_test, 3.0)["AUC"] == pytest.approx(8 / 9)


def test_acceptability_without_both_classes_has_no_auc():
    out = stats.acceptability([1, 2, 3], [4, 4, 4], [1, 2, 3], [4.0, 4.5, 5.0], 3.0)
    assert np.isnan(out["AUC"])
    assert out["RETAKE"] == pytest.approx(0.0)


# -- content-group resampling -------------------------------------------------------------------

def _expanded_reference(score, mos, groups, draws, lower_better=False):
    """The cluster bootstrap written out by hand: for each replicate, concatenate every image of
    each drawn group (repeats included) and compute the statistics with scipy on that array."""
    mapping = stats.fit_logistic(-score if lower_better else score, mos)
    members = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    labels = sorted(members)
    out = {k: [] for k in STATISTICS}
    for row in draws:
        idx = np.concatenate([members[labels[g]] for g in row])
        s, m = (-score if lower_better else score)[idx], mos[idx]
        mapped = mapping(s)
        out["SROCC"].append(sps.spearmanr(s, m).statistic)
        out["KRCC"].append(sps.kendalltau(s, m).statistic)
        out["PLCC_raw"].append(sps.pearsonr(s, m).statistic)
        out["PLCC"].append(sps.pearsonr(mapped if mapping.kind == "logistic4" else s, m).statistic)
        out["RMSE"].append(np.sqrt(np.mean((mapped - m) ** 2)))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("lower_better", [False, True])
def test_group_bootstrap_matches_a_hand_written_cluster_bootstrap(lower_better):
    """Unequal groups (1 to 9 images), tied MOS: every replicate equals the statistic on the
    explicitly expanded resample."""
    rng = np.random.default_rng(21)
    sizes = [9, 1, 4, 6, 2, 7, 3, 5]
    groups = np.repeat([f"ref{i}" for i in range(len(sizes))], sizes)
    perm = rng.permutation(len(groups))  # groups interleaved, not contiguous
    groups = groups[perm]
    mos = np.round(rng.uniform(1, 5, len(groups)) * 2) / 2
    score = (-1 if lower_better else 1) * (mos + rng.normal(0, 0.7, len(groups)))
    cell = stats.evaluate(score, mos, groups=groups, lower_better=lower_better, bootstrap=40, seed=5)
    draws = np.random.default_rng(5).integers(0, len(sizes), size=(40, len(sizes)))  # group codes follow sorted labels
    expected = _expanded_reference(score, mos, groups, draws, lower_better)
    for k in STATISTICS:
        np.testing.assert_allclose(cell.boot[k], expected[k], atol=1e-10, err_msg=k)
    assert cell.n_groups == len(sizes) and cell.n == sum(sizes)


def test_group_bootstrap_on_a_two_group_case_by_hand():
    """Two groups, A = images 0-2, B = images 3-4. Drawing (A, A) repeats A: its three images
    twice. Values worked out by hand: SROCC of A alone (doubled) is 1 (score and MOS rise
    together within A); drawing (B, B) is -1 (B's two images disagree); (A, B) is the full sample."""
    score = np.array([1.0, 2.0, 3.0, 5.0, 4.0])
    mos = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    sample = stats.Sample.build(score, mos, ["A", "A", "A", "B", "B"])
    w = np.array([[2, 2, 2, 0, 0], [0, 0, 0, 2, 2], [1, 1, 1, 1, 1]], float)
    srocc = stats.statistic("SROCC", sample, w)
    assert srocc[0] == pytest.approx(1.0) and srocc[1] == pytest.approx(-1.0)
    assert srocc[2] == pytest.approx(1 - 6 * 2 / (5 * 24))  # one swapped neighbour pair: 1 - 6 sum(d^2) / (n(n^2-1))
    # the weights the bootstrap uses for those draws
    draws_w = stats.group_weights(sample.codes, 3, np.random.default_rng(0))
    assert set(np.unique(draws_w[:, :3] + 0)) <= {0, 1, 2} and (draws_w.sum(1) > 0).all()
    assert np.array_equal(draws_w[:, 0], draws_w[:, 2]) and np.array_equal(draws_w[:, 3], draws_w[:, 4])


def test_strongly_clustered_data_widen_the_interval():
    """Each of 12 reference scenes has its own bias shared by all its 15 images: the images of a
    scene are not independent, so resampling images alone gives a too-narrow interval."""
    rng = np.random.default_rng(3)
    g, k = 12, 15
    groups = np.repeat(np.arange(g), k)
    mos = rng.uniform(1, 5, g * k)
    score = mos + np.repeat(rng.normal(0, 2.0, g), k) + rng.normal(0, 0.3, g * k)
    by_group = stats.evaluate(score, mos, groups=groups, bootstrap=500, seed=1)
    by_image = stats.evaluate(score, mos, bootstrap=500, seed=1)
    assert by_group.values == by_image.values  # the point estimate does not depend on the resampling unit
    for name in ("SROCC", "PLCC"):
        width_group = np.diff(by_group.ci[name])[0]
        width_image = np.diff(by_image.ci[name])[0]
        assert width_group > 1.5 * width_image, (name, width_group, width_image)


def test_without_groups_each_image_is_its_own_group():
    score, mos = _data(n=30, seed=9)
    plain = stats.evaluate(score, mos, bootstrap=100, seed=4)
    labelled = stats.evaluate(score, mos, groups=[f"g{i:02d}" for i in range(30)], bootstrap=100, seed=4)
    empty = stats.evaluate(score, mos, groups=[""] * 30, bootstrap=100, seed=4)
    for k in STATISTICS:
        np.testing.assert_allclose(labelled.boot[k], plain.boot[k], atol=1e-12)
        np.testing.assert_allclose(empty.boot[k], plain.boot[k], atol=1e-12)


def test_kendall_weighted_pairs_and_scipy_paths_agree(monkeypatch):
    score, mos = _data(n=50, seed=10, ties=True)
    groups = np.arange(50) // 4
    sample = stats.Sample.build(score, mos, groups)
    w = stats.group_weights(sample.codes, 30, np.random.default_rng(2))
    groups_form = stats.statistic("KRCC", sample, w)
    monkeypatch.setattr(stats, "KENDALL_GROUPS_MAX", 0)
    pairs = stats.statistic("KRCC", sample, w)
    monkeypatch.setattr(stats, "KENDALL_PAIRS_MAX", 10)
    per_row = stats.statistic("KRCC", sample, w)
    np.testing.assert_allclose(groups_form, per_row, atol=1e-12)
    np.testing.assert_allclose(pairs, per_row, atol=1e-12)
    assert np.isfinite(per_row).all() and np.ptp(per_row) > 0


def test_paired_delta_uses_the_same_draws_for_both_sides():
    rng = np.random.default_rng(4)
    mos = rng.uniform(1, 5, 80)
    groups = np.arange(80) // 8
    shared = mos + np.repeat(rng.normal(0, 1.5, 10), 8) + rng.normal(0, 0.5, 80)
    a = stats.Sample.build(shared, mos, groups)
    same = stats.paired_delta({0: (a, a), 1: (a, a)}, "SROCC", bootstrap=200)
    assert same.value == 0 and same.ci == (0.0, 0.0) and same.verdict == "no detectable difference"
    better = stats.Sample.build(shared + 0.8 * (mos - shared), mos, groups)
    d = stats.paired_delta({0: (a, better)}, "SROCC", bootstrap=300, stats_seed=2)
    assert d.value == pytest.approx(stats.statistic("SROCC", better)[0] - stats.statistic("SROCC", a)[0])
    # by hand: the same weights applied to both sides, replicate by replicate
    w = stats.group_weights(a.codes, 300, stats.seed_rng(2, 0))
    np.testing.assert_allclose(d.replicates, stats.statistic("SROCC", better, w) - stats.statistic("SROCC", a, w), atol=1e-12)
    assert d.verdict == "better" and d.ci[0] > 0
    worse = stats.paired_delta({0: (better, a)}, "SROCC", bootstrap=300, stats_seed=2)
    assert worse.verdict == "worse" and worse.value == pytest.approx(-d.value)
    assert d.n_groups == 10 and d.n_images == 80 and d.seeds == [0]


def test_seed_pooling_averages_per_seed_statistics_replicate_by_replicate():
    rng = np.random.default_rng(8)
    pairs, expected_reps = {}, []
    for s in (0, 1, 2):
        mos = rng.uniform(1, 5, 40)
        groups = np.arange(40) // 4
        a = stats.Sample.build(mos + rng.normal(0, 1, 40), mos, groups)
        b = stats.Sample.build(mos + rng.normal(0, 0.5, 40), mos, groups)
        pairs[s] = (a, b)
        w = stats.group_weights(a.codes, 100, stats.seed_rng(0, s))
        expected_reps.append(stats.statistic("PLCC", b, w) - stats.statistic("PLCC", a, w))
    d = stats.paired_delta(pairs, "PLCC", bootstrap=100)
    np.testing.assert_allclose(d.replicates, np.mean(expected_reps, axis=0), atol=1e-12)
    assert d.value == pytest.approx(np.mean(list(d.per_seed.values())))
    assert d.ci == stats.quantile_ci(np.mean(expected_reps, axis=0))


def test_a_single_content_group_has_no_interval_and_no_verdict():
    score, mos = _data(n=40, seed=14)
    cell = stats.evaluate(score, mos, groups=["scene"] * 40, bootstrap=100)
    assert np.isfinite(cell.values["SROCC"]) and all(np.isnan(cell.ci["SROCC"]))
    one = stats.Sample.build(score, mos, ["scene"] * 40)
    other = stats.Sample.build(mos, mos, ["scene"] * 40)
    d = stats.paired_delta({0: (one, other)}, "SROCC", bootstrap=100)
    assert d.value > 0 and all(np.isnan(d.ci)) and d.verdict == "not testable"
    # pooled with a seed that has groups, the replicate means stay undefined: no interval from half the data
    many = stats.Sample.build(score, mos, np.arange(40) // 4)
    many_other = stats.Sample.build(mos, mos, np.arange(40) // 4)
    assert stats.paired_delta({0: (one, other), 1: (many, many_other)}, "SROCC", bootstrap=100).verdict == "not testable"


def test_data_warning_thresholds():
    assert stats.data_warning(30, 10) == ""
    assert "9 content groups" in stats.data_warning(100, 9) and "1 content group and" in stats.data_warning(100, 1)
    assert "29 test images" in stats.data_warning(29, 29)


# -- PLCC keeps the sign ---------------------------------------------------------------------------

def test_backwards_ranker_never_gets_a_high_mapped_plcc():
    score, mos = _data(n=60, seed=12)
    backwards = stats.evaluate(score, mos, lower_better=True, bootstrap=100, seed=0)
    assert backwards.values["SROCC"] < -0.5
    assert backwards.values["PLCC"] < 0
    assert backwards.values["PLCC"] == pytest.approx(backwards.values["PLCC_raw"])
    assert backwards.mapping.kind == "linear" and backwards.mapping.reason
    assert backwards.ci["PLCC"][1] < 0.2


def test_tiny_cell_with_an_outlier_is_not_turned_into_a_step():
    """Nine images ranked backwards except one high outlier: an unconstrained 4-parameter
    logistic fits a step at the outlier and reports a high PLCC. The constrained mapping uses a
    linear map below 10 images and keeps the sign."""
    mos = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
    score = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 20.0])
    cell = stats.evaluate(score, mos, bootstrap=50, seed=0)
    assert cell.mapping.kind == "linear" and "n = 9" in cell.mapping.reason
    assert cell.values["PLCC"] == pytest.approx(sps.pearsonr(score, mos).statistic)
    assert cell.values["SROCC"] < 0 and cell.values["PLCC"] < 0.5
    ranker = stats.evaluate(np.arange(9.0), mos, bootstrap=0)  # a good ranker on few images: linear map, PLCC = raw Pearson
    assert ranker.mapping.kind == "linear" and ranker.values["PLCC"] == pytest.approx(1.0)


def test_mapping_is_monotonically_increasing():
    rng = np.random.default_rng(13)
    for seed in range(5):
        score, mos = _data(n=40, seed=seed)
        score = score + rng.normal(0, 2, 40) * (seed % 2)
        mapping = stats.fit_logistic(score, mos)
        xs = np.linspace(score.min() - 1, score.max() + 1, 200)
        assert np.all(np.diff(mapping(xs)) >= -1e-12), (seed, mapping)
        if mapping.kind == "logistic4":
            b1, b2, _, b4 = mapping.params
            assert b1 > b2 and b4 > 0


def test_gate_threshold_is_in_the_methods_units_and_reproduces_the_decisions():
    mos_train = np.array([1.0, 1.5, 2.0, 2.5, 3.5, 4.0, 4.5, 5.0])
    bad = mos_train < 3
    assert stats.gate_threshold(mos_train, bad) == pytest.approx(3.5)  # accept score >= 3.5
    assert stats.gate_threshold(-mos_train, bad, lower_better=True) == pytest.approx(-3.5)  # accept score <= -3.5
    assert np.isnan(stats.gate_threshold([], []))
    rng = np.random.default_rng(0)
    s_tr, s_te = rng.normal(size=50), rng.normal(size=30)
    b_tr, b_te = s_tr + rng.normal(0, 0.5, 50) < 0, rng.random(30) < 0.4
    cut = stats.gate_threshold(s_tr, b_tr)
    out = stats.gate_statistics(s_tr, b_tr, s_te, b_te)
    assert out["RETAKE"] == pytest.approx(np.mean(s_te < cut))
    assert out["ACC"] == pytest.approx(np.mean((s_te < cut) == b_te))
    # the cut is the most accurate on the train split: brute force over every candidate
    accs = [np.mean((s_tr < c) == b_tr) for c in np.unique(s_tr)]
    assert np.mean((s_tr < cut) == b_tr) == pytest.approx(max(accs))


# -- acceptability (quality gate) intervals --------------------------------------------------------

# Three content groups, threshold MOS 3, score cut 2.5 (reject a photo scoring below it):
#   A = images 0-2: scores 1, 4, 2; unacceptable, acceptable, unacceptable -> all judged right
#   B = images 3-4: scores 3, 5;    unacceptable, acceptable               -> the bad one accepted
#   C = images 5-6: scores 2, 6;    acceptable, acceptable                 -> a good one rejected
GATE_SCORE = np.array([1.0, 4.0, 2.0, 3.0, 5.0, 2.0, 6.0])
GATE_MOS = np.array([1.5, 4.0, 2.0, 2.5, 4.5, 3.5, 5.0])
GATE_GROUPS = np.array(["A", "A", "A", "B", "B", "C", "C"])
GATE_CUT = 2.5


def _gate_loop(score, bad, groups, draws, cut):
    """The cluster bootstrap of the gate written out plainly: expand each replicate's drawn groups
    into an image list and compute every statistic on it (sklearn for the AUC)."""
    from sklearn.metrics import roc_auc_score

    labels = sorted(set(groups))
    out = {k: [] for k in GATE_STATISTICS}
    for row in draws:
        idx = np.concatenate([np.flatnonzero(groups == labels[g]) for g in row])
        s, b = score[idx], bad[idx]
        reject = s < cut
        out["AUC"].append(roc_auc_score(b, -s) if 0 < b.sum() < len(b) else np.nan)
        out["ACC"].append(np.mean(reject == b))
        out["RETAKE"].append(np.mean(reject))
        out["ACC_ACCEPT_ALL"].append(np.mean(~b))
        out["ACC_GAIN"].append(np.mean(reject == b) - np.mean(~b))
    return {k: np.array(v) for k, v in out.items()}


def test_gate_statistics_on_three_groups_by_hand():
    bad = stats.unacceptable(GATE_MOS, 3.0)
    assert bad.tolist() == [True, False, True, True, False, False, False]
    sample = stats.Sample.build(GATE_SCORE, GATE_MOS, GATE_GROUPS, bad=bad, cut=GATE_CUT)
    w = np.array([[1, 1, 1, 1, 1, 1, 1],   # the full sample
                  [3, 3, 3, 0, 0, 0, 0],   # draw (A, A, A)
                  [0, 0, 0, 1, 1, 2, 2],   # draw (C, C, B)
                  [0, 0, 0, 0, 0, 3, 3]],  # draw (C, C, C): no unacceptable image
                 float)
    got = {k: stats.statistic(k, sample, w) for k in GATE_STATISTICS}
    # full: 5 of 7 right, 3 rejected, 4 acceptable; AUC: 10.5 of the 12 (bad, good) pairs ordered (one tie 2-2)
    # (A, A, A): bad {1, 2} x3 below good {4} x3; all right; 6 of 9 rejected; 3 acceptable
    # (C, C, B): bad 3 below goods 5, 6, 6 and above 2, 2 -> 3/5; right: 6, 6, 5 -> 3 of 6; rejected 2, 2
    # (C, C, C): no bad image -> no AUC; the three 2s rejected wrongly, the three 6s accepted
    np.testing.assert_allclose(got["AUC"], [10.5 / 12, 1.0, 3 / 5, np.nan])
    np.testing.assert_allclose(got["ACC"], [5 / 7, 1.0, 3 / 6, 3 / 6])
    np.testing.assert_allclose(got["RETAKE"], [3 / 7, 6 / 9, 2 / 6, 3 / 6])
    np.testing.assert_allclose(got["ACC_ACCEPT_ALL"], [4 / 7, 3 / 9, 5 / 6, 1.0])
    np.testing.assert_allclose(got["ACC_GAIN"], [1 / 7, 6 / 9, 3 / 6 - 5 / 6, -0.5])
    # the same gate scored by a lower-is-better method (cut in its own units) gives the same numbers
    lower = stats.Sample.build(-GATE_SCORE, GATE_MOS, GATE_GROUPS, lower_better=True, bad=bad, cut=-GATE_CUT)
    for k in GATE_STATISTICS:
        np.testing.assert_allclose(stats.statistic(k, lower, w), got[k], err_msg=k)
    # the point estimates are gate_statistics' (the function a run reported before intervals existed)
    point = stats.gate_statistics([0.0, 2.5, 3.0], [True, False, False], GATE_SCORE, bad)  # train cut: 2.5
    assert point == pytest.approx({"AUC": 10.5 / 12, "ACC": 5 / 7, "RETAKE": 3 / 7})


@pytest.mark.parametrize("lower_better", [False, True])
def test_gate_bootstrap_matches_a_plain_loop_replicate_by_replicate(lower_better):
    bad = stats.unacceptable(GATE_MOS, 3.0)
    sign = -1 if lower_better else 1
    cell = stats.evaluate(sign * GATE_SCORE, GATE_MOS, groups=GATE_GROUPS, lower_better=lower_better, bootstrap=60, seed=7,
                          bad=bad, cut=sign * GATE_CUT)
    draws = np.random.default_rng(7).integers(0, 3, size=(60, 3))  # group codes follow sorted labels: A, B, C
    expected = _gate_loop(GATE_SCORE, bad, GATE_GROUPS, draws, GATE_CUT)
    for k in GATE_STATISTICS:
        np.testing.assert_allclose(cell.boot[k], expected[k], atol=1e-12, err_msg=k)
        assert cell.ci[k] == pytest.approx(stats.quantile_ci(expected[k]), abs=1e-12)
    assert np.isnan(cell.boot["AUC"]).any()  # e.g. (C, C, C): undefined replicates are dropped, not counted as 0
    assert cell.values["ACC_GAIN"] == pytest.approx(cell.values["ACC"] - cell.values["ACC_ACCEPT_ALL"])
    # the correlations come from the very same draws: adding the gate changes none of their replicates
    plain = stats.evaluate(sign * GATE_SCORE, GATE_MOS, groups=GATE_GROUPS, lower_better=lower_better, bootstrap=60, seed=7)
    for k in STATISTICS:
        np.testing.assert_array_equal(cell.boot[k], plain.boot[k])
    assert set(plain.values) == set(STATISTICS)  # no acceptability labels: no gate statistics


def test_weighted_auc_matches_sklearn_with_ties_and_weights():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    for _ in range(50):
        n = int(rng.integers(4, 40))
        score, bad = np.round(rng.normal(size=n), 1), rng.random(n) < 0.4
        w = rng.integers(0, 4, size=(1, n)).astype(float)
        wb, wg = (w[0] * bad).sum(), (w[0] * ~bad).sum()
        got = stats.gate_statistic("AUC", score, bad, np.nan, w)[0]
        if wb == 0 or wg == 0:
            assert np.isnan(got)
        else:
            assert got == pytest.approx(roc_auc_score(bad, -score, sample_weight=w[0]), abs=1e-12)


def test_clustered_acceptability_widens_the_gate_intervals():
    """Photos of one reference share its quality and the method's bias on it: whole groups are
    mostly acceptable or not, and misjudged together. Resampling single images ignores that and
    gives too-narrow intervals (about 2-4 times narrower here, whatever the data seed)."""
    rng = np.random.default_rng(5)
    g, k = 12, 15
    groups = np.repeat(np.arange(g), k)
    mos = np.repeat(rng.uniform(1.5, 4.5, g), k) + rng.normal(0, 0.4, g * k)
    score = mos + np.repeat(rng.normal(0, 1.0, g), k) + rng.normal(0, 0.3, g * k)
    bad = stats.unacceptable(mos, 3.0)
    by_group = stats.evaluate(score, mos, groups=groups, bootstrap=500, seed=1, bad=bad, cut=3.0)
    by_image = stats.evaluate(score, mos, bootstrap=500, seed=1, bad=bad, cut=3.0)
    assert by_group.values == by_image.values  # the point estimate does not depend on the resampling unit
    for name in GATE_STATISTICS:
        width_group, width_image = np.diff(by_group.ci[name])[0], np.diff(by_image.ci[name])[0]
        assert width_group > 1.5 * width_image, (name, width_group, width_image)
        assert by_group.ci[name][0] <= by_group.values[name] <= by_group.ci[name][1], name


def test_gate_without_a_cut_or_labels():
    bad = stats.unacceptable(GATE_MOS, 3.0)
    no_cut = stats.evaluate(GATE_SCORE, GATE_MOS, groups=GATE_GROUPS, bootstrap=20, bad=bad, cut=float("nan"))
    assert np.isnan(no_cut.values["ACC"]) and all(np.isnan(no_cut.ci["ACC"])) and all(np.isnan(no_cut.ci["ACC_GAIN"]))
    assert no_cut.values["AUC"] == pytest.approx(10.5 / 12) and np.isfinite(no_cut.ci["AUC"]).all()
    assert no_cut.values["ACC_ACCEPT_ALL"] == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="acceptability"):
        stats.statistic("ACC", stats.Sample.build(GATE_SCORE, GATE_MOS, GATE_GROUPS))
    one_group = stats.evaluate(GATE_SCORE, GATE_MOS, groups=["x"] * 7, bootstrap=20, bad=bad, cut=GATE_CUT)
    assert one_group.values["ACC"] == pytest.approx(5 / 7) and all(np.isnan(one_group.ci["ACC"]))


# Benjamini & Hochberg (1995), section 4.2: 15 p-values from a study of myocardial infarction.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.000]


def test_holm_on_the_textbook_list_by_hand():
    adj = stats.adjust_p(BH_1995, "holm")
    # (m - k + 1) p_(k), made non-decreasing: 15 x 0.0001, 14 x 0.0004, 13 x 0.0019, 12 x 0.0095, 11 x 0.0201, 10 x 0.0278, then
    # 9 x 0.0298 = 0.2682 and 8 x 0.0344 = 0.2752 are raised to 0.278, 7 x 0.0459, and 6 x 0.3240 > 1 is capped
    hand = [0.0015, 0.0056, 0.0247, 0.114, 0.2211, 0.278, 0.278, 0.278, 0.3213] + [1.0] * 6
    assert adj == pytest.approx(hand, abs=1e-12)
    assert (adj < 0.05).sum() == 3  # the paper: Bonferroni-type procedures reject the three smallest


def test_benjamini_hochberg_on_the_textbook_list_by_hand_and_against_scipy():
    from scipy.stats import false_discovery_control

    adj = stats.adjust_p(BH_1995, "bh")
    # m p_(k) / k, then the running minimum from the largest down: 15 x 0.0095 / 4 = 0.035625; 15 x 0.0201 / 5 = 0.0603;
    # 15 x 0.0278 / 6 = 0.0695 is lowered to 15 x 0.0298 / 7 = 0.063857...
    assert adj[:9] == pytest.approx([0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0298 * 15 / 7, 0.0298 * 15 / 7, 0.0645, 0.0765], abs=1e-12)
    assert (adj < 0.05).sum() == 4  # the paper rejects the four smallest at q = 0.05
    assert adj == pytest.approx(false_discovery_control(BH_1995), abs=1e-12)
    shuffled = np.random.default_rng(0).permutation(BH_1995)
    assert stats.adjust_p(shuffled, "bh") == pytest.approx(false_discovery_control(shuffled), abs=1e-12)  # order is kept


def test_holm_against_its_definition_written_out():
    # Holm (1979): sort ascending; the j-th smallest (1-based) is multiplied by m - j + 1, then made
    # monotone by a running maximum and capped at 1. Written as a plain loop, per family of 25.
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, 25)
        order = np.argsort(p)
        expected, running = np.empty(len(p)), 0.0
        for j, i in enumerate(order, start=1):
            running = max(running, min(1.0, (len(p) - j + 1) * p[i]))
            expected[i] = running
        assert stats.adjust_p(p, "holm") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("method", stats.ADJUSTMENTS)
def test_an_adjusted_p_is_never_below_the_raw_one(method):
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = rng.uniform(0, 1, rng.integers(1, 30)) ** 3
        p[rng.uniform(size=len(p)) < 0.1] = np.nan  # an untestable comparison is no member of the family
        adj = stats.adjust_p(p, method)
        ok = np.isfinite(p)
        assert np.array_equal(np.isnan(adj), ~ok)
        assert (adj[ok] >= p[ok]).all() and (adj[ok] <= 1).all()
        order = np.argsort(p[ok])  # and the order of the raw p-values is kept
        assert (np.diff(adj[ok][order]) >= -1e-15).all()
    assert stats.adjust_p([0.01, 0.04], "none").tolist() == [0.01, 0.04]
    with pytest.raises(ValueError, match="holm, bh, none"):
        stats.adjust_p([0.1], "bonferroni")


def test_families_are_adjusted_separately():
    adj, size = stats.adjust_families([0.01, 0.02, 0.01, np.nan], ["skin", "skin", "natural", "natural"], "holm")
    assert adj[:3].tolist() == [0.02, 0.02, 0.01] and np.isnan(adj[3]) and size.tolist() == [2, 2, 1, 1]


def test_adjusted_verdict_needs_the_interval_and_the_adjusted_p():
    assert stats.adjusted_verdict(0.01, 0.2, 0.01) == "better" and stats.adjusted_verdict(-0.2, -0.01, 0.04) == "worse"
    assert stats.adjusted_verdict(0.01, 0.2, 0.06) == "no detectable difference"  # the interval alone no longer suffices
    assert stats.adjusted_verdict(-0.01, 0.2, 0.001) == "no detectable difference"  # never bolder than the interval
    assert stats.adjusted_verdict(np.nan, np.nan, np.nan) == "not testable"


def test_the_bootstrap_p_agrees_with_the_percentile_interval():
    """The p that is adjusted comes from the same replicates as the interval: below 0.05 exactly
    where the 95% interval excludes 0, except within the bootstrap's resolution."""
    rng = np.random.default_rng(4)
    disagree = 0
    for shift in np.linspace(0, 4, 81):
        reps = rng.normal(shift, 1, 2000)
        lo, hi = stats.quantile_ci(reps, 0.95)
        excludes = lo > 0 or hi < 0
        p = stats.two_sided_p(reps)
        disagree += excludes != (p < 0.05)
        assert not excludes or p < 0.06
    assert disagree <= 3
