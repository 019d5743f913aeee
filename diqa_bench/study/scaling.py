"""Paired comparisons to a quality scale (Bradley-Terry), and the adaptive choice of the next pair.

Bradley-Terry: P(i preferred to j) = 1 / (1 + exp(-(s_i - s_j))). The scale is fitted by maximum
likelihood (Newton steps), with an optional Gaussian prior of precision ``prior`` on every s_i,
which keeps a stimulus that always won (or lost) finite; ``prior=0`` is the plain MLE. Scores are
reported in JOD (just-objectionable differences): 1 JOD is the difference that 75% of
comparisons prefer, ln 3 in Bradley-Terry units. The gauge is fixed by a zero mean. Intervals
come from the observed Fisher information (the Hessian of the log-likelihood at the optimum,
pseudo-inverted on the zero-mean subspace).

Adaptive choice: a pair says most when its two stimuli are close on the current scale and the
scale there is uncertain. The next pair takes the stimulus compared least so far (ties at random)
and pairs it with the stimulus that maximises p(1-p) (closeness on the fitted scale), divided by
one plus the times that pair was already compared and by the square root of one plus the partner's
own comparisons, so that the ranking is refined where it is
still ambiguous instead of spending comparisons on obvious ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOD = float(np.log(3.0))  # Bradley-Terry units per JOD
Z_95 = 1.959963984540054


@dataclass
class Scale:
    score: np.ndarray  # JOD, mean 0
    se: np.ndarray  # standard error, JOD
    low: np.ndarray  # 95% interval
    high: np.ndarray
    comparisons: np.ndarray  # how many comparisons each stimulus took part in


def win_matrix(n: int, winners, losers) -> np.ndarray:
    w = np.zeros((n, n))
    np.add.at(w, (np.asarray(winners, int), np.asarray(losers, int)), 1.0)
    return w


def bradley_terry(wins: np.ndarray, prior: float = 0.0, iterations: int = 100, tol: float = 1e-10, intervals: bool = True) -> Scale:
    """Fit a scale to ``wins[i, j]`` = times i was preferred to j (``intervals=False``: scores
    only, the standard errors left NaN; what the adaptive choice needs, at a fraction of the cost)."""
    wins = np.asarray(wins, float)
    n = len(wins)
    games = wins + wins.T
    s = np.zeros(n)
    centre = np.eye(n) - 1.0 / n

    def curvature(s):
        p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
        info = games * p * (1.0 - p)
        return p, np.diag(info.sum(axis=1)) - info + prior * np.eye(n)  # minus the Hessian of the log-likelihood

    for _ in range(iterations):
        p, hess = curvature(s)
        grad = (wins - games * p).sum(axis=1) - prior * s
        if prior > 0:
            step = np.linalg.solve(hess, grad)  # positive definite with a prior
        else:  # singular along the constant direction (the gauge): solve on the zero-mean subspace
            step = np.linalg.lstsq(centre @ hess @ centre + np.ones((n, n)) / n, grad, rcond=None)[0]
        s = s + step
        s -= s.mean()
        if np.max(np.abs(step)) < tol:
            break
    score = s / JOD
    if not intervals:
        nan = np.full(n, np.nan)
        return Scale(score, nan, nan, nan, games.sum(axis=1))
    _, hess = curvature(s)
    cov = centre @ np.linalg.pinv(centre @ hess @ centre) @ centre
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) / JOD
    return Scale(score, se, score - Z_95 * se, score + Z_95 * se, games.sum(axis=1))


def rough_scale(wins: np.ndarray, prior: float = 0.3, iterations: int = 60) -> np.ndarray:
    """Bradley-Terry scores (BT units) by diagonal Newton steps: O(n^2) per step instead of the
    O(n^3) of a full Newton step, close enough to rank candidates for the next pair, also with
    hundreds of stimuli while a rater waits."""
    wins = np.asarray(wins, float)
    games = wins + wins.T
    won = wins.sum(axis=1)
    s = np.zeros(len(wins))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
        grad = won - (games * p).sum(axis=1) - prior * s
        curv = (games * p * (1.0 - p)).sum(axis=1) + prior
        step = grad / curv
        s = s + step
        s -= s.mean()
        if np.max(np.abs(step)) < 1e-5:
            break
    return s


def choose_pair(wins: np.ndarray, rng: np.random.Generator, exclude: set[int] | None = None, prior: float = 0.3) -> tuple[int, int]:
    """The next pair to show (indices into the stimuli), from all comparisons so far."""
    n = len(wins)
    games = wins + wins.T
    counts = games.sum(axis=1).astype(float)
    allowed = np.ones(n, bool)
    if exclude:
        allowed[list(exclude)] = False
    if allowed.sum() < 2:
        allowed[:] = True
    if counts.sum() == 0:
        i, j = rng.choice(np.flatnonzero(allowed), size=2, replace=False)
        return int(i), int(j)
    s = rough_scale(wins, prior=prior)
    low = np.flatnonzero(allowed & (counts == counts[allowed].min()))
    i = int(rng.choice(low))
    p = 1.0 / (1.0 + np.exp(-(s[i] - s)))
    gain = p * (1.0 - p) / (1.0 + games[i]) / np.sqrt(1.0 + counts) + 1e-9 * rng.random(n)  # tiny noise: ties broken at random
    gain[i] = -1.0
    gain[~allowed] = -1.0
    j = int(np.argmax(gain))
    return (i, j) if rng.random() < 0.5 else (j, i)
