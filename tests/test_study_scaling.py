"""Bradley-Terry scaling against hand-worked examples, and the adaptive pair choice against a
simulated observer (the true order of 30 stimuli recovered from at most a quarter of all pairs)."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from diqa_bench.study.scaling import JOD, bradley_terry, choose_pair, win_matrix


def test_two_stimuli_by_hand():
    # A preferred 3 times out of 4: the MLE of s_A - s_B is ln(3/1) = ln 3, i.e. exactly 1 JOD
    # (the difference 75% of comparisons prefer), split +-0.5 around the zero mean. Its Fisher
    # information is n p (1 - p) = 4 * 3/4 * 1/4 = 3/4, so var(s_A - s_B) = 4/3 in Bradley-Terry
    # units; each score is +-(s_A - s_B) / 2, so its standard error is sqrt(1/3) / ln 3 JOD.
    scale = bradley_terry(win_matrix(2, [0, 0, 0, 1], [1, 1, 1, 0]))
    assert scale.score == pytest.approx([0.5, -0.5], abs=1e-9)
    se = math.sqrt(1 / 3) / math.log(3)
    assert scale.se == pytest.approx([se, se], abs=1e-9)
    assert scale.low[0] == pytest.approx(0.5 - 1.959964 * se, abs=1e-6)
    assert list(scale.comparisons) == [4, 4]


def test_a_chain_by_hand():
    # A beats B 3:1, B beats C 3:1, A and C never met: each edge is its own 2-stimulus problem,
    # so s_A - s_B = s_B - s_C = 1 JOD and the zero-mean scores are +1, 0, -1.
    wins = np.array([[0, 3, 0], [1, 0, 3], [0, 1, 0]], float)
    scale = bradley_terry(wins)
    assert scale.score == pytest.approx([1.0, 0.0, -1.0], abs=1e-9)
    # the middle stimulus is pinned by both edges: the narrowest interval
    assert scale.se[1] < scale.se[0] == pytest.approx(scale.se[2])


def test_even_record_and_the_prior():
    # 2:2 is no difference; a stimulus that always won has no finite MLE, the prior keeps it finite
    assert bradley_terry(win_matrix(2, [0, 0, 1, 1], [1, 1, 0, 0])).score == pytest.approx([0, 0], abs=1e-12)
    shut_out = bradley_terry(win_matrix(2, [0, 0, 0], [1, 1, 1]), prior=0.5)
    assert np.isfinite(shut_out.score).all() and shut_out.score[0] > 0.5


def _simulate(n, budget, seed, adaptive):
    rng = np.random.default_rng(seed)
    true = rng.permutation(np.linspace(0.0, 6.0, n))  # Thurstone units: each judgement has noise sd 1 per image
    wins = np.zeros((n, n))
    for _ in range(budget):
        i, j = choose_pair(wins, rng) if adaptive else tuple(rng.choice(n, size=2, replace=False))
        if rng.normal(true[i] - true[j], math.sqrt(2.0)) > 0:
            wins[i, j] += 1
        else:
            wins[j, i] += 1
    return spearmanr(bradley_terry(wins, prior=0.3).score, true)[0], wins


@pytest.mark.slow
def test_adaptive_pairs_recover_the_true_order_from_a_quarter_of_all_pairs():
    n = 30
    budget = n * (n - 1) // 2 // 4  # 108 comparisons of 435 pairs
    adaptive = [_simulate(n, budget, seed, True)[0] for seed in range(8)]
    shuffled = [_simulate(n, budget, seed, False)[0] for seed in range(8)]
    assert np.median(adaptive) >= 0.9, adaptive
    assert np.mean(adaptive) > np.mean(shuffled) + 0.02, (adaptive, shuffled)  # the choice of pairs is what helps
    _, wins = _simulate(n, budget, 0, True)
    games = wins + wins.T
    assert wins.sum() == budget and (games.sum(axis=1) >= 6).all()  # every stimulus compared, none left out


def test_choose_pair_prefers_close_stimuli_and_the_least_compared():
    rng = np.random.default_rng(0)
    wins = np.zeros((4, 4))
    # 0 >> 1 >> 2 on the scale, all compared often; 3 never compared: it goes next
    wins[0, 1] = wins[1, 2] = wins[0, 2] = 9
    wins[1, 0] = wins[2, 1] = wins[2, 0] = 1
    for _ in range(5):
        assert 3 in choose_pair(wins, rng)
    wins[3, 1] = wins[1, 3] = 5  # 3 now sits with 1: its next partner is close to it, not far away
    wins[0, 3] = wins[3, 2] = 0
    counts = (wins + wins.T).sum(axis=1)
    assert counts.argmin() == 3
    i, j = choose_pair(wins, rng)
    assert {i, j} != {0, 2}
    assert JOD == pytest.approx(math.log(3))


def test_the_rough_scale_of_the_adaptive_choice_agrees_with_the_full_fit():
    from diqa_bench.study.scaling import rough_scale

    rng = np.random.default_rng(3)
    wins = np.zeros((40, 40))
    for _ in range(200):
        i, j = rng.choice(40, size=2, replace=False)
        wins[i, j] += 1
    full = bradley_terry(wins, prior=0.3).score * JOD
    assert rough_scale(wins, prior=0.3) == pytest.approx(full, abs=1e-3)
