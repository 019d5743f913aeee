"""Human agreement (diqa_bench.agreement, diqa_bench.report.agreement): the noise ceiling, the
false-ranking shares and Krasula's AUCs, and the table of a rated run."""

import numpy as np
import pytest

from diqa_bench import agreement as ag
from diqa_bench import stats


def test_a_rater_who_is_the_mean_of_the_others_agrees_perfectly():
    rng = np.random.default_rng(0)
    others = rng.normal(size=(40, 3))
    panel = np.column_stack([others.mean(1), others])
    per = ag.rater_agreement(panel)
    assert per["SROCC"][0, 0] == pytest.approx(1.0) and per["PLCC"][0, 0] == pytest.approx(1.0)
    assert (per["SROCC"][1:, 0] < 0.99).all()  # the others are not the mean of the rest
    # a panel of raters who all follow one truth on their own scale: every rater is (an increasing
    # map of) the mean of the others, so the ceiling is 1
    truth = rng.normal(size=30)
    panel = np.column_stack([truth, 2 * truth + 1, 0.5 * truth - 3, 3 * truth])
    ceiling = ag.noise_ceiling(panel)
    assert ceiling["SROCC"][0] == pytest.approx(1.0) and ceiling["PLCC"][0] == pytest.approx(1.0)


def test_independent_raters_have_a_ceiling_near_zero_and_missing_ratings_are_skipped():
    rng = np.random.default_rng(1)
    panel = rng.normal(size=(400, 6))
    ceiling = ag.noise_ceiling(panel)
    assert abs(ceiling["SROCC"][0]) < 0.06 and abs(ceiling["PLCC"][0]) < 0.06
    # a rater who rated only 2 images counts nowhere; NaN elsewhere is "not rated"
    truth = rng.normal(size=20)
    panel = np.column_stack([truth, truth, np.where(np.arange(20) < 2, truth, np.nan)])
    per = ag.rater_agreement(panel)
    assert np.isnan(per["SROCC"][2, 0]) and ag.noise_ceiling(panel)["SROCC"][0] == pytest.approx(1.0)
    # with content-group weights, every replicate of a perfect panel is 1
    w = stats.group_weights(np.arange(20) // 4, 50, np.random.default_rng(0))
    assert ag.noise_ceiling(panel, np.arange(20) // 4, w)["SROCC"] == pytest.approx(np.ones(50))


def _worked_example():
    """Four images, MOS 1, 2, 3, 4 from 5 ratings each; std 0.1, except image 3 (std 2).
    Welch's t: |1-4| / sqrt(0.01/5 + 4/5) = 3.35 on ~4 df, p ~ 0.03 (different); |2-4|: t = 2.24,
    p ~ 0.09 and |3-4|: t = 1.12 (similar); the pairs among images 0-2 differ by far."""
    mos, std, n = np.array([1.0, 2, 3, 4]), np.array([0.1, 0.1, 0.1, 2]), np.array([5, 5, 5, 5])
    return mos, std, n


def test_significant_pairs_by_welch_t_test():
    mos, std, n = _worked_example()
    i, j, different = ag.significant_pairs(mos, std, n, 0.95)
    assert list(zip(i, j, different)) == [(0, 1, True), (0, 2, True), (0, 3, True), (1, 2, True), (1, 3, False), (2, 3, False)]
    # at 99% the (0, 3) pair is no longer significant; an image with one rating differs from none
    assert not ag.significant_pairs(mos, std, n, 0.99)[2][2]
    assert not ag.significant_pairs(mos, std, np.array([5, 5, 5, 1]), 0.95)[2][[2, 4, 5]].any()
    # images of different datasets are never paired
    assert len(ag.significant_pairs(mos, std, n, same=["a", "a", "b", "b"])[0]) == 2


def test_false_ranking_shares_and_krasula_aucs_by_hand():
    """Scores 1, 3, 2, 1 on the worked example. Different pairs, oriented better - worse:
    (0,1): 3-1 = 2 right; (0,2): 2-1 = 1 right; (0,3): 1-1 = 0 tie; (1,2): 2-3 = -1 wrong, so
    false ranking 1/4, ties 1/4, C0 2/4.
    Better/Worse AUC, Mann-Whitney with ties one half, of d = [2, 1, 0, -1] against -d = [-2, -1,
    0, 1]: 2 beats all 4 (4); 1 beats 3 and ties 1 (3.5); 0 beats 2, ties 1 (2.5); -1 beats 1,
    ties 1 (1.5): 11.5 / 16.
    Different/Similar AUC of |d| over the different pairs [2, 1, 0, 1] against the similar pairs'
    [|3-1|, |2-1|] = [2, 1]: 2 beats 1, ties 2 (1.5); each 1 ties 1 (0.5 + 0.5); 0 nothing: 2.5 / 8.
    These follow the authors' public MATLAB code (Metrics_performance.m, read, not run: no MATLAB
    here): D / S = absolute score differences of different / similar pairs, B = the differences
    oriented better-minus-worse and W = -B, each AUC by DeLong's (Mann-Whitney, mid-ranks) and
    CC_0 = (#(B > 0) + #(W < 0)) / (|B| + |W|), so a tie is never a correct classification."""
    mos, std, n = _worked_example()
    i, j, different = ag.significant_pairs(mos, std, n)
    out = ag.false_ranking(np.array([1.0, 3, 2, 1]), mos, i, j, different)
    assert {k: float(v[0]) for k, v in out.items()} == pytest.approx(
        {"FALSE_RANK": 0.25, "TIE": 0.25, "C0": 0.5, "AUC_BW": 11.5 / 16, "AUC_DS": 2.5 / 8})
    # a method that ranks by MOS is perfect on the different pairs
    perfect = ag.false_ranking(mos * 10, mos, i, j, different)
    assert (perfect["FALSE_RANK"][0], perfect["C0"][0], perfect["AUC_BW"][0]) == (0.0, 1.0, 1.0)
    # all-ones weights give the point estimates; a replicate drawing image 1 twice and image 2
    # never weighs pair (0,1) twice and drops (0,2) and (1,2): 1 right of 2 pairs ((0,3) tied)
    w = np.array([[1.0, 1, 1, 1], [1.0, 2, 0, 1]])
    rep = ag.false_ranking(np.array([1.0, 3, 2, 1]), mos, i, j, different, w)
    assert rep["C0"][0] == pytest.approx(0.5) and rep["C0"][1] == pytest.approx(2 / 3) and rep["TIE"][1] == pytest.approx(1 / 3)


def test_a_rated_run_shows_the_ceiling_and_false_ranking_and_a_pseudo_mos_domain_says_so(tmp_path, rated_photos):
    import pandas as pd

    import diqa_datasets
    from diqa_bench.report.agreement import NO_RATER_DATA, read_agreement
    from diqa_bench.testing import run_tiny_benchmark, stub_config

    photos = rated_photos(tmp_path / "photos")
    cfg = stub_config(methods=[{"name": "stub-noise"}], seeds=[0, 1], train_sets=[], test_domains=["a", "derm"])
    cfg["domains"]["derm"] = [{"dataset": "derm-ratings", "options": {"root": str(photos), "ratings": "ratings.csv", "patient_column": "patient"}}]
    cfg["splits"] = {"test_ratio": 0.5, "seeds": [0, 1]}
    cfg["statistics"] = {"bootstrap": 200}
    res = run_tiny_benchmark(tmp_path / "run", cfg, plugins=[("datasets", diqa_datasets)], reports=True)
    assert res.exit_code == 0
    stored = pd.read_csv(res.out / "ratings.csv")
    assert len(stored) == 12 * 3 * 5 and set(stored.dataset) == {"derm-ratings"}
    table = read_agreement(res.out)
    assert set(table.test) == {"derm"}  # the pseudo-MOS domain has no rows
    by = table.set_index("statistic")
    ceiling = by.loc["CEILING_SROCC"]
    assert 0.5 < ceiling.value < 1 and ceiling.ci_low < ceiling.value < ceiling.ci_high
    assert by.loc["DIST_SROCC", "value"] == pytest.approx(ceiling.value - by.loc["SROCC", "value"])
    assert by.loc["FALSE_RANK", "value"] + by.loc["TIE", "value"] + by.loc["C0", "value"] == pytest.approx(1.0)
    assert ceiling.raters == 5 and ceiling.pairs_different > 0
    # the entry's SROCC is the leaderboard's, from the same draws
    m = res.metrics
    board = m[(m.test == "derm") & (m.statistic == "SROCC") & (m.seed.astype(str) == "all")].iloc[0]
    assert by.loc["SROCC", "value"] == pytest.approx(board.value)
    assert (by.loc["SROCC", "ci_low"], by.loc["SROCC", "ci_high"]) == pytest.approx((board.ci_low, board.ci_high))
    like = by.loc["SROCC", "ci_high"] >= ceiling.value
    assert bool(by.loc["SROCC", "like_one_rater"]) == like
    lb = res.leaderboard
    assert "### Human agreement on derm" in lb and "Noise ceiling" in lb and "False ranking" in lb
    assert f"Human agreement on a: {NO_RATER_DATA} (pseudo-MOS labels)" in lb
    html = (res.out / "report.html").read_text()
    assert 'id="agreement-derm"' in html and f"a: {NO_RATER_DATA}" in html
