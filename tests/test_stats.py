"""Statistics against scipy, the VQEG logistic on a hand-worked case, direction by sign."""

import numpy as np
import pytest
from scipy import stats as sps

from diqa_bench import stats


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
    for k in stats.STATISTICS:
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
    for k in stats.STATISTICS:
        lo, hi = a.ci[k]
        assert lo <= a.values[k] <= hi, k
        assert lo < hi, k
        assert a.ci[k] == b.ci[k], k
    assert any(a.ci[k] != c.ci[k] for k in stats.STATISTICS)
    assert set(a.boot) == set(stats.STATISTICS) and len(a.boot["SROCC"]) == 200


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


def test_pooled_ci_spans_every_seed():
    lo, hi = stats.pooled_ci([np.full(100, 0.2), np.full(100, 0.8)], confidence=0.9)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.8)
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
