"""Agreement between predicted scores and MOS: correlations, the VQEG logistic mapping, bootstrap
confidence intervals.

Direction: a lower-is-better method's scores are negated before anything is computed (and a
DMOS-style label is negated too), so every correlation reads "higher = agrees with humans". The
sign is kept: a method that ranks images backwards gets a negative SROCC. There is no ``abs()``.

Statistics, per cell:
- SROCC, KRCC (tau-b): rank correlations of score and MOS, no mapping needed;
- PLCC_raw: Pearson correlation of the raw (direction-aligned) scores and MOS;
- PLCC, RMSE: after the VQEG 4-parameter logistic mapping of scores onto the MOS scale, fitted once
  on all the cell's images (falls back to a linear fit, recorded in ``mapping``, when the logistic
  does not converge). RMSE is in MOS units.
Confidence intervals: percentile bootstrap over images (seeded). The mapping is fitted once and not
refitted per resample, so the PLCC/RMSE intervals leave out the uncertainty of the fit itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

STATISTICS = ("SROCC", "KRCC", "PLCC", "PLCC_raw", "RMSE")
HIGHER_IS_BETTER = {"SROCC": True, "KRCC": True, "PLCC": True, "PLCC_raw": True, "RMSE": False, "AUC": True, "ACC": True, "RETAKE": False}


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG (2000) 4-parameter logistic: b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))."""
    z = np.clip(-(x - b3) / np.abs(b4), -500, 500)
    return b2 + (b1 - b2) / (1.0 + np.exp(z))


@dataclass
class Mapping:
    kind: str  # "logistic4" or "linear"
    params: list[float]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "logistic4":
            return logistic4(x, *self.params)
        return self.params[0] * x + self.params[1]


def fit_logistic(score: np.ndarray, mos: np.ndarray) -> Mapping:
    score = np.asarray(score, float)
    mos = np.asarray(mos, float)
    sd = score.std()
    if sd == 0:
        return Mapping("linear", [0.0, float(mos.mean())])
    p0 = [mos.max(), mos.min(), float(np.median(score)), float(sd)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, score, mos, p0=p0, maxfev=20000)
        if np.all(np.isfinite(params)):
            return Mapping("logistic4", [float(p) for p in params])
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        pass
    slope, intercept = np.polyfit(score, mos, 1)
    return Mapping("linear", [float(slope), float(intercept)])


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two [B, n] arrays (NaN where a row is constant)."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(1) / den


def _kendall_rows(x: np.ndarray, y: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Row-wise Kendall tau-b of [B, n] arrays, vectorised over pairs for small test sets. The pair
    arrays grow as n^2 per row, so beyond a couple of hundred images scipy's O(n log n) per row is
    faster and keeps memory flat."""
    b, n = x.shape
    if n > 200:
        return np.array([stats.kendalltau(x[i], y[i]).statistic for i in range(b)])
    chunk = max(1, min(chunk, 4_000_000 // (n * n)))  # at most ~32 MB per pair array
    iu = np.triu_indices(n, 1)
    out = np.empty(b)
    for s in range(0, b, chunk):
        xs, ys = x[s : s + chunk], y[s : s + chunk]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])[:, iu[0], iu[1]]
        dy = np.sign(ys[:, :, None] - ys[:, None, :])[:, iu[0], iu[1]]
        num = (dx * dy).sum(1)
        den = np.sqrt(np.abs(dx).sum(1) * np.abs(dy).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + chunk] = num / den
    return out


def all_stats(score: np.ndarray, mos: np.ndarray, mapped: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic for each row of [B, n] arrays."""
    rs = stats.rankdata(score, axis=1)
    rm = stats.rankdata(mos, axis=1)
    return {
        "SROCC": _pearson_rows(rs, rm),
        "KRCC": _kendall_rows(score, mos),
        "PLCC": _pearson_rows(mapped, mos),
        "PLCC_raw": _pearson_rows(score, mos),
        "RMSE": np.sqrt(((mapped - mos) ** 2).mean(1)),
    }


@dataclass
class CellStats:
    n: int
    values: dict[str, float]
    ci: dict[str, tuple[float, float]]
    mapping: Mapping
    boot: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def evaluate(
    score: np.ndarray,
    mos: np.ndarray,
    *,
    lower_better: bool = False,
    mos_lower_better: bool = False,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> CellStats:
    """All statistics for one cell, with percentile-bootstrap CIs over images."""
    score = np.asarray(score, float)
    mos = np.asarray(mos, float)
    if score.shape != mos.shape or score.ndim != 1:
        raise ValueError("score and mos must be 1-D arrays of the same length")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"{int((~np.isfinite(score)).sum())} non-finite scores")
    n = len(score)
    if n < 3:
        raise ValueError(f"need at least 3 images to compute correlations, got {n}")
    s = -score if lower_better else score
    m = -mos if mos_lower_better else mos
    mapping = fit_logistic(s, m)
    mapped = mapping(s)
    point = {k: float(v[0]) for k, v in all_stats(s[None], m[None], mapped[None]).items()}
    ci: dict[str, tuple[float, float]] = {}
    boot: dict[str, np.ndarray] = {}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(bootstrap, n))
        boot = all_stats(s[idx], m[idx], mapped[idx])
        alpha = (1 - confidence) / 2
        for k, v in boot.items():
            v = v[np.isfinite(v)]
            ci[k] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))) if len(v) else (float("nan"), float("nan"))
    return CellStats(n=n, values=point, ci=ci, mapping=mapping, boot=boot)


def pooled_ci(samples: list[np.ndarray], confidence: float = 0.95) -> tuple[float, float]:
    """CI from the bootstrap samples of several split seeds pooled together: it reflects both the
    image sampling within a split and the variation between splits."""
    v = np.concatenate([np.asarray(s, float) for s in samples]) if samples else np.array([])
    v = v[np.isfinite(v)]
    if not len(v):
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def unacceptable(mos, threshold: float, mos_lower_better=False) -> np.ndarray:
    """Which images a service should reject: MOS below ``threshold`` (above it for DMOS-style
    labels), on each image's own dataset scale."""
    mos = np.asarray(mos, float)
    flip = np.broadcast_to(np.asarray(mos_lower_better, bool), mos.shape)
    return np.where(flip, mos > threshold, mos < threshold)


def acceptability(score_train, mos_train, score_test, mos_test, threshold: float, *, lower_better=False, mos_lower_better=False) -> dict[str, float]:
    """Deployment view of a quality gate: images with MOS below ``threshold`` are unacceptable
    (see :func:`gate_statistics`)."""
    return gate_statistics(score_train, unacceptable(mos_train, threshold, mos_lower_better), score_test,
                           unacceptable(mos_test, threshold, mos_lower_better), lower_better=lower_better)


def gate_statistics(score_train, bad_train, score_test, bad_test, *, lower_better=False) -> dict[str, float]:
    """AUC: ROC AUC of the (direction-aligned) score for detecting unacceptable test images.
    ACC: test accuracy of accept/reject at the score threshold chosen on the train set (the one
    with the best train accuracy). RETAKE: share of test images that threshold rejects.
    Zero-shot methods have no train scores of their own; the caller passes the train split's
    scores, so the threshold is still chosen without looking at the test set.
    """
    from sklearn.metrics import roc_auc_score

    def align(s):
        return -np.asarray(s, float) if lower_better else np.asarray(s, float)

    s_tr, bad_tr = align(score_train), np.asarray(bad_train, bool)
    s_te, bad_te = align(score_test), np.asarray(bad_test, bool)
    out = {"AUC": float("nan"), "ACC": float("nan"), "RETAKE": float("nan")}
    if 0 < bad_te.sum() < len(bad_te):
        out["AUC"] = float(roc_auc_score(bad_te, -s_te))
    if len(s_tr):
        cands = np.unique(s_tr)
        accs = [((s_tr < c) == bad_tr).mean() for c in cands]
        cut = cands[int(np.argmax(accs))]
        reject = s_te < cut
        out["ACC"] = float((reject == bad_te).mean())
        out["RETAKE"] = float(reject.mean())
    return out
