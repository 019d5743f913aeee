"""Agreement between predicted scores and MOS: correlations, the VQEG logistic mapping, and
content-group bootstrap intervals (one cell, several split seeds pooled, paired differences).

Direction: a lower-is-better method's scores are negated before anything is computed (and a
DMOS-style label is negated too), so every correlation reads "higher = agrees with humans". The
sign is kept: a method that ranks images backwards gets a negative SROCC. There is no ``abs()``.

Statistics, per cell: registered through the ``register_statistics`` hook (the built-in ones below by
the core plugin :mod:`diqa_bench.core_plugin`, a plugin's beside them), each a
:class:`~diqa_bench.extensions.Statistic` with its direction and its frequency-weighted form;
:func:`statistics_table` is the table a computation uses (a run's: the built-in ones and those its
config names in ``statistics.extra``):
- SROCC, KRCC (tau-b): rank correlations of score and MOS, no mapping needed;
- PLCC_raw: Pearson correlation of the raw (direction-aligned) scores and MOS;
- PLCC, RMSE: after the VQEG 4-parameter logistic mapping of scores onto the MOS scale, fitted once
  on all the cell's images and constrained to be monotonically increasing (upper asymptote above
  the lower one, positive slope), so a method that ranks backwards cannot be "straightened" into a
  high PLCC. The mapping falls back to a linear one (``Mapping.kind``, with the reason) when the
  cell has fewer than :data:`MIN_LOGISTIC_N` images, the scores are constant, the fit fails or is
  flat, or the logistic's correlation would have the opposite sign of the raw one; the linear map
  never has a negative slope, so PLCC then equals PLCC_raw. RMSE is in MOS units.

Resampling unit: the content group (reference image, patient: ``Record.content_group``; a dataset
without groups makes each image its own group). A bootstrap replicate draws as many groups as the
cell has, with replacement, and keeps all images of each drawn group. It is computed exactly and
without copying images: each image gets the weight "how often its group was drawn", and every
statistic has a frequency-weighted form (weighted mid-ranks, weighted Pearson, weighted Kendall
pairs) equal to the statistic on the expanded resample. Groups of unequal size are fine.

Seeds: the estimand of a table value is the mean over split seeds of the per-seed statistic. Each
bootstrap replicate resamples the test groups within every seed (independently per seed, from a
generator seeded by (statistics seed, split seed)), computes the statistic per seed and averages
over the seeds; the interval is the percentile interval of these replicate means. It covers which
test content groups were drawn, not how a model trained on another split would differ: the
spread over seeds is reported next to it for that. Paired comparisons (two methods or train sets
on the same test images of a seed) use the same group draws for both sides in every replicate, so
the noise they share cancels out. The mapping behind PLCC/RMSE is fitted once per cell and not
refitted per replicate.

Acceptability (quality gate), when a cell carries which test images are unacceptable (the
statistics registered with ``needs_acceptability``): AUC, ACC, RETAKE, ACC_ACCEPT_ALL and ACC_GAIN
(= ACC - ACC_ACCEPT_ALL, per image "rejected and unacceptable" minus "rejected and acceptable")
have frequency-weighted forms too, and get their intervals from the same group draws as the
correlations of the cell. The
score cut behind ACC, RETAKE and ACC_GAIN was chosen on the train split, so it is held fixed in
every replicate: the interval covers which test content was drawn, not how the cut would move
with another train split. ACC_GAIN is paired by construction (gate and "accept all" judged on the
same resampled images), so its interval says whether the gate beats accepting every photo.

Many comparisons: a table tests several differences at once (every entry against the best one,
every transfer verdict of a domain). :func:`two_sided_p` turns a paired difference's replicates
into a p-value, :func:`adjust_p` / :func:`adjust_families` adjust the p-values of each family
(Holm, Benjamini-Hochberg or none), and :func:`adjusted_verdict` calls a difference better or
worse only when its interval excludes 0 and its adjusted p is below 1 - confidence.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, stats

from diqa_bench import extensions, core_plugin
from diqa_bench.extensions import Statistic

MIN_LOGISTIC_N = 10  # fewer images than this: 4 parameters overfit (step functions); a linear map is used
MIN_GROUPS, MIN_IMAGES = 10, 30  # per seed; below either, a test domain's intervals and verdicts carry a warning
RESAMPLING = "content groups (all images of a drawn group), within each split seed; replicate = mean over seeds"
VERDICTS = ("better", "worse", "no detectable difference", "not testable")


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG (2000) 4-parameter logistic: b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))."""
    z = np.clip(-(x - b3) / np.abs(b4), -500, 500)
    return b2 + (b1 - b2) / (1.0 + np.exp(z))


@dataclass
class Mapping:
    kind: str  # "logistic4" or "linear"
    params: list[float]
    reason: str = ""  # why the linear fallback was used

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "logistic4":
            return logistic4(x, *self.params)
        return self.params[0] * x + self.params[1]

    def describe(self) -> str:
        return self.kind if not self.reason else f"{self.kind} ({self.reason})"


def _increasing_logistic(x, low, amplitude, mid, scale):
    return low + amplitude / (1.0 + np.exp(np.clip(-(x - mid) / scale, -500, 500)))


def _linear(score: np.ndarray, mos: np.ndarray, reason: str) -> Mapping:
    """Least-squares line with a slope of at least 0: an increasing map, never a flipped one."""
    if score.std() == 0:
        return Mapping("linear", [0.0, float(mos.mean())], reason)
    slope, intercept = np.polyfit(score, mos, 1)
    if slope <= 0:  # no increasing relation: the best non-decreasing line is the mean
        return Mapping("linear", [0.0, float(mos.mean())], reason)
    return Mapping("linear", [float(slope), float(intercept)], reason)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(_wpearson(np.asarray(x, float), np.asarray(y, float), np.ones((1, len(x))))[0])


def fit_logistic(score: np.ndarray, mos: np.ndarray) -> Mapping:
    """Monotonically increasing VQEG logistic from (direction-aligned) scores to MOS, or the
    linear fallback with its reason (see the module docstring)."""
    score = np.asarray(score, float)
    mos = np.asarray(mos, float)
    sd = score.std()
    if sd == 0:
        return _linear(score, mos, "constant scores")
    if len(score) < MIN_LOGISTIC_N:
        return _linear(score, mos, f"n = {len(score)} < {MIN_LOGISTIC_N}")
    span = float(np.ptp(mos)) or 1.0
    p0 = [float(mos.min()), span, float(np.median(score)), float(sd)]
    bounds = ([-np.inf, 0.0, -np.inf, 1e-3 * sd], [np.inf, np.inf, np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (low, amp, mid, scale), _ = optimize.curve_fit(_increasing_logistic, score, mos, p0=p0, bounds=bounds, maxfev=20000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return _linear(score, mos, "logistic fit did not converge")
    if not np.all(np.isfinite([low, amp, mid, scale])) or amp <= 1e-9 * span:
        return _linear(score, mos, "flat logistic")
    mapping = Mapping("logistic4", [float(low + amp), float(low), float(mid), float(scale)])
    mapped = mapping(score)
    if np.ptp(mapped) <= 1e-12 * span or np.sign(_pearson(mapped, mos)) != np.sign(_pearson(score, mos)):
        return _linear(score, mos, "logistic would change the sign")
    return mapping


# -- frequency-weighted statistics (weights [B, n]: how often each image is in replicate b) --------

def _wpearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson correlation per row; x, y: [n] or [B, n]; NaN where a row is constant."""
    sw = w.sum(1, keepdims=True)
    dx = x - (w * x).sum(1, keepdims=True) / sw
    dy = y - (w * y).sum(1, keepdims=True) / sw
    vx, vy = (w * dx * dx).sum(1), (w * dy * dy).sum(1)
    tol_x = 1e-20 * sw[:, 0] * np.max(np.abs(np.broadcast_to(x, w.shape)), axis=1) ** 2
    tol_y = 1e-20 * sw[:, 0] * np.max(np.abs(np.broadcast_to(y, w.shape)), axis=1) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(1) / np.sqrt(vx * vy)
    r[(vx <= tol_x) | (vy <= tol_y)] = np.nan
    return np.clip(r, -1.0, 1.0)


def weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mid-ranks each image would have in the resample that repeats image i w[b, i] times: the
    data never change between replicates, only the weights, so one sort serves every row."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    block_of = np.cumsum(new) - 1
    blocks = np.add.reduceat(w[:, order], np.flatnonzero(new), axis=1)
    rank = np.cumsum(blocks, axis=1) - blocks + (blocks + 1) / 2
    out = np.empty(w.shape, float)
    out[:, order] = rank[:, block_of]
    return out


KENDALL_PAIRS_MAX = 300  # above this many images, scipy per replicate (O(n log n)) beats the pair matrix
KENDALL_GROUPS_MAX = 400  # up to this many content groups (and 4,000 images) the group-level form is used


def _wkendall(x: np.ndarray, y: np.ndarray, w: np.ndarray, codes: np.ndarray | None = None) -> np.ndarray:
    """Kendall tau-b per row of weights: every pair of distinct images counts w_i * w_j times
    (copies of one image tie in both variables, as in the expanded resample).

    When the weights are constant within content groups (every cluster bootstrap), each sum over
    pairs is a quadratic form q^T M q in the G group counts q, with M summed once over the image
    pairs: a replicate then costs G^2 instead of n^2 or a sort."""
    b, n = w.shape
    if codes is not None and n <= 4000:
        g = int(codes.max()) + 1 if n else 0
        first = np.unique(codes, return_index=True)[1]
        q = w[:, first]
        if g <= KENDALL_GROUPS_MAX and np.array_equal(q[:, codes], w):
            one_hot = np.zeros((n, g))
            one_hot[np.arange(n), codes] = 1.0
            sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
            forms = [one_hot.T @ m @ one_hot for m in (sx * sy, np.abs(sx), np.abs(sy))]
            con, ax, ay = (np.einsum("bg,gh,bh->b", q, m, q) for m in forms)
            with np.errstate(invalid="ignore", divide="ignore"):
                return con / np.sqrt(ax * ay)
    if n > KENDALL_PAIRS_MAX:
        out = np.empty(b)
        for r in range(b):
            idx = np.repeat(np.arange(n), np.round(w[r]).astype(int))
            out[r] = stats.kendalltau(x[idx], y[idx]).statistic
        return out
    i, j = np.triu_indices(n, 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    con, ax, ay = sx * sy, np.abs(sx), np.abs(sy)
    out = np.empty(b)
    step = max(1, 4_000_000 // max(1, len(i)))
    for s in range(0, b, step):
        ww = w[s : s + step, i] * w[s : s + step, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + step] = (ww @ con) / np.sqrt((ww @ ax) * (ww @ ay))
    return out


@dataclass
class Sample:
    """One cell's test images, direction-aligned (higher = better for score and MOS), with its
    content groups as codes 0..G-1 and the mapping fitted once on all of them. With acceptability:
    ``bad`` (which images are unacceptable) and ``cut``, the gate's score threshold chosen on the
    train split, direction-aligned too (reject when score < cut; NaN: no cut)."""

    score: np.ndarray
    mos: np.ndarray
    codes: np.ndarray
    mapping: Mapping
    bad: np.ndarray | None = None
    cut: float = float("nan")
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, score, mos, groups=None, *, lower_better=False, mos_lower_better=False, mapping: Mapping | None = None,
              bad=None, cut: float | None = None) -> "Sample":
        """``cut``: in the method's own units, as :func:`gate_threshold` returns it."""
        score = np.asarray(score, float)
        mos = np.asarray(mos, float)
        s = -score if lower_better else score
        m = -mos if mos_lower_better else mos
        if bad is not None:
            bad = np.asarray(bad, bool)
            if bad.shape != s.shape:
                raise ValueError(f"{bad.size} acceptability labels for {len(s)} images")
        c = float("nan") if cut is None else float(cut)
        return cls(s, m, group_codes(groups, len(s)), mapping or fit_logistic(s, m), bad, -c if lower_better else c)

    @property
    def n(self) -> int:
        return len(self.score)

    @property
    def n_groups(self) -> int:
        return int(self.codes.max()) + 1 if len(self.codes) else 0

    @property
    def mapped(self) -> np.ndarray:
        if "mapped" not in self._cache:
            self._cache["mapped"] = self.mapping(self.score)
        return self._cache["mapped"]


# The built-in statistics in their frequency-weighted form, (sample, weights [B, n]) -> [B]: the
# core plugin registers them by name (diqa_bench.core_plugin).

def srocc(s: Sample, w):
    return _wpearson(weighted_ranks(s.score, w), weighted_ranks(s.mos, w), w)


def krcc(s: Sample, w):
    return _wkendall(s.score, s.mos, w, s.codes)


def plcc(s: Sample, w):
    # a linear map with a non-negative slope leaves Pearson unchanged (and a flat one would make it undefined)
    return _wpearson(s.mapped if s.mapping.kind == "logistic4" else s.score, s.mos, w)


def plcc_raw(s: Sample, w):
    return _wpearson(s.score, s.mos, w)


def rmse(s: Sample, w):
    return np.sqrt((w * (s.mapped - s.mos) ** 2).sum(1) / w.sum(1))


# -- the quality gate, frequency-weighted: score aligned (higher = better), bad = unacceptable -----

def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w * x).sum(1) / w.sum(1)


def _wauc(score: np.ndarray, bad: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC of "low score means unacceptable" per row of weights (ties count one half): the
    Mann-Whitney U of the unacceptable images' mid-ranks in the expanded resample. NaN where a
    row holds only one class."""
    ranks = weighted_ranks(-score, w)
    wb, wg = (w * bad).sum(1), (w * ~bad).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((w * bad * ranks).sum(1) - wb * (wb + 1) / 2) / (wb * wg)
    auc[(wb == 0) | (wg == 0)] = np.nan
    return auc


def gate_statistic(name: str, score: np.ndarray, bad: np.ndarray, cut: float, w: np.ndarray) -> np.ndarray:
    """One of the gate's statistics (AUC, ACC, RETAKE, ACC_ACCEPT_ALL, ACC_GAIN) per row of weights
    [B, n]: ``score`` direction-aligned (higher = better), ``bad`` which images are unacceptable, ``cut`` the aligned score threshold
    (reject when score < cut; NaN: no cut, so only AUC and ACC_ACCEPT_ALL are defined)."""
    bad = np.asarray(bad, bool)
    if name == "AUC":
        return _wauc(score, bad, w)
    if name == "ACC_ACCEPT_ALL":
        return _wmean(~bad, w)
    if not np.isfinite(cut):
        return np.full(w.shape[0], np.nan)
    reject = score < cut
    if name == "ACC":
        return _wmean(reject == bad, w)
    if name == "RETAKE":
        return _wmean(reject, w)
    if name == "ACC_GAIN":  # correct - acceptable, per image: +1 an unacceptable image rejected, -1 an acceptable one
        return _wmean(np.where(bad, reject, -1.0 * reject), w)
    raise KeyError(name)


def _gated(name: str) -> Callable[[Sample, np.ndarray], np.ndarray]:
    def compute(s: Sample, w: np.ndarray) -> np.ndarray:
        if s.bad is None:
            raise ValueError(f"{name} needs acceptability labels (the config declares no acceptability threshold)")
        return gate_statistic(name, s.score, s.bad, s.cut, w)
    return compute


gate_auc, gate_acc, gate_retake, gate_accept_all, gate_gain = (_gated(n) for n in ("AUC", "ACC", "RETAKE", "ACC_ACCEPT_ALL", "ACC_GAIN"))


@lru_cache(maxsize=1)
def builtin_statistics() -> dict[str, Statistic]:
    """The core plugin's statistics (name -> :class:`~diqa_bench.extensions.Statistic`), in its order."""

    return {spec.name: spec for spec in core_plugin.registered("register_statistics")}


def statistics_table() -> dict[str, Statistic]:
    """The statistics in use (a run's, set by :meth:`diqa_bench.plugins.Registry.in_use`), else the
    built-in ones."""
    return extensions.in_use("statistics") or builtin_statistics()


def higher_is_better(name: str, run_info: dict | None = None) -> bool:
    """A statistic's direction: as run.json recorded it, else as registered (unknown: higher)."""
    for fact in (run_info or {}).get("statistics") or []:
        if fact.get("name") == name:
            return bool(fact.get("higher_is_better", True))
    spec = statistics_table().get(name) or builtin_statistics().get(name)
    return spec.higher_is_better if spec is not None else True


def statistic(name: str, sample: Sample, weights: np.ndarray | None = None) -> np.ndarray:
    """``name`` on each row of ``weights`` [B, n] (None: the point estimate, a [1] array)."""
    w = np.ones((1, sample.n)) if weights is None else np.asarray(weights, float)
    table = statistics_table()
    spec = table.get(name) or builtin_statistics().get(name)
    if spec is None:
        raise KeyError(f"statistic {name!r} is not registered (known: {', '.join(table)}); is its plugin loaded?")
    return spec.compute(sample, w)


def group_codes(groups, n: int) -> np.ndarray:
    """Content-group labels as codes 0..G-1 (None or empty labels: each image its own group)."""
    if groups is None:
        return np.arange(n)
    labels = np.asarray([str(g) if g is not None and str(g) not in ("", "nan") else f"\0image{i:012d}" for i, g in enumerate(groups)])
    if len(labels) != n:
        raise ValueError(f"{len(labels)} group labels for {n} images")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def group_weights(codes: np.ndarray, bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """[bootstrap, n] weights of a cluster bootstrap: each row draws G groups with replacement;
    an image's weight is how often its group was drawn. With every image its own group this is
    the ordinary bootstrap over images (same draws as ``rng.integers(0, n, (B, n))``)."""
    g = int(codes.max()) + 1
    draws = rng.integers(0, g, size=(bootstrap, g))
    counts = np.bincount((draws + g * np.arange(bootstrap)[:, None]).ravel(), minlength=bootstrap * g).reshape(bootstrap, g)
    return counts[:, codes].astype(float)


def seed_rng(stats_seed: int, split_seed, *stream: int) -> np.random.Generator:
    """The generator of one split seed's group draws: the same for every method and train set
    scored on that seed's test images, so paired comparisons see identical draws (``stream``
    gives an independent generator, e.g. one per run when two runs share no image)."""
    try:
        key = int(split_seed)
    except (TypeError, ValueError):
        key = zlib.crc32(str(split_seed).encode())
    return np.random.default_rng([int(stats_seed), abs(key), *stream])


SHARED_DRAWS = "cross-validation"


def draw_seed(split_seed, shared: bool = False):
    """What a seed's group draws are keyed by (:func:`seed_rng`): its split seed, or under
    cross-validation one key for every repetition. Every repetition then tests the same images, so
    a replicate must draw the same content groups in all of them: independent draws per
    repetition would average away the very uncertainty the interval is for."""
    return SHARED_DRAWS if shared else split_seed


def quantile_ci(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates dropped)."""
    v = np.asarray(samples, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def two_sided_p(samples) -> float:
    """Bootstrap p-value of "the difference is 0", from the same paired group draws as the
    interval: twice the share of replicates on the smaller side of 0 (replicates equal to 0 count
    on both sides), with one added to the count and to the replicates so that it is never 0 (the
    smallest possible value is 2 / (B + 1)); capped at 1. It inverts the percentile interval:
    p < 1 - confidence where that interval excludes 0, up to the bootstrap's resolution. This is
    what the multiplicity adjustment (:func:`adjust_p`) adjusts."""
    v = np.asarray(samples, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan")
    tail = min((v <= 0).sum(), (v >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (len(v) + 1)))


ADJUSTMENTS = ("holm", "bh", "none")
ADJUSTMENT_NAMES = {"holm": "Holm (family-wise error rate)", "bh": "Benjamini-Hochberg (false discovery rate)", "none": "none"}


def adjust_p(p_values, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values of one family of tests (same order as given).

    ``holm``: Holm's step-down procedure, which controls the family-wise error rate (the chance of
    any false "better", "worse" or † in the family) under any dependence between the tests: the
    k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) p_(j)).
    ``bh``: Benjamini-Hochberg, which controls the expected share of false discoveries among the
    significant tests (independent or positively dependent tests): the k-th smallest becomes
    min over j >= k of min(1, m p_(j) / j). ``none``: unchanged.
    NaN p-values (a comparison that could not be tested) are not members of the family: they stay
    NaN and do not count in m. An adjusted p is never below its raw one."""
    p = np.asarray(p_values, float).reshape(-1)
    if method not in ADJUSTMENTS:
        raise ValueError(f"unknown multiplicity adjustment {method!r}; use one of {', '.join(ADJUSTMENTS)}")
    out = p.copy()
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if method == "none" or m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ps = p[order]
    k = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - k + 1) * ps))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ps / k)[::-1])[::-1]
    out[order] = np.maximum(adj, ps)  # guards rounding: never below the raw p
    return out


def adjust_families(p_values, families, method: str = "holm") -> tuple[np.ndarray, np.ndarray]:
    """(adjusted p, family size) per test, adjusting within each family label separately (e.g.
    one label per test domain and statistic). Any table with a p-value column can call it."""
    p = np.asarray(p_values, float).reshape(-1)
    labels = [str(f) for f in families]
    if len(labels) != len(p):
        raise ValueError(f"{len(labels)} family labels for {len(p)} p-values")
    adj, size = p.copy(), np.zeros(len(p), int)
    for label in dict.fromkeys(labels):
        idx = np.array([i for i, f in enumerate(labels) if f == label], int)
        adj[idx] = adjust_p(p[idx], method)
        size[idx] = int(np.isfinite(p[idx]).sum())
    return adj, size


def adjusted_verdict(ci_low: float, ci_high: float, p_adjusted: float, confidence: float = 0.95) -> str:
    """:func:`verdict` of a difference within a family of tests: "better" or "worse" needs both
    its own interval to exclude 0 and its adjusted p to be below 1 - confidence, so an adjusted
    verdict is never bolder than the unadjusted one (with ``adjust: none`` the p is the raw one,
    which agrees with the interval up to the bootstrap's resolution)."""
    v = verdict(ci_low, ci_high)
    if v in ("better", "worse") and not (np.isfinite(p_adjusted) and p_adjusted < 1 - confidence):
        return "no detectable difference"
    return v


def smallest_p(bootstrap: int) -> float:
    """The smallest p-value :func:`two_sided_p` can give with this many replicates."""
    return float(min(1.0, 2 / (bootstrap + 1))) if bootstrap > 0 else float("nan")


def seed_mean(replicates: Sequence[np.ndarray]) -> np.ndarray:
    """Replicate-wise mean over split seeds of per-seed bootstrap replicates (same length each)."""
    if not len(replicates):
        return np.array([])
    # A replicate undefined in one seed (a constant resample; a seed with a single group) is
    # undefined as a whole: averaging the other seeds alone would estimate another quantity.
    return np.vstack([np.asarray(r, float) for r in replicates]).mean(axis=0)


def pooled_ci(samples: list[np.ndarray], confidence: float = 0.95) -> tuple[float, float]:
    """Interval of the mean over split seeds: percentile interval of the replicate-wise means of
    the seeds' bootstrap replicates (see the module docstring)."""
    return quantile_ci(seed_mean(samples), confidence)


def verdict(ci_low: float, ci_high: float) -> str:
    """'better' when the interval of a difference lies above 0, 'worse' below, else no detectable
    difference; 'not testable' without an interval (e.g. a seed with a single content group)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "not testable"
    if ci_low > 0:
        return "better"
    if np.isfinite(ci_high) and ci_high < 0:
        return "worse"
    return "no detectable difference"


def data_warning(n_images: int | float, n_groups: int | float) -> str:
    """A warning when a test domain's seeds hold too few content groups or images for intervals
    and verdicts to be trusted ("" when enough)."""
    if n_images is None or n_groups is None or not (np.isfinite(n_images) and np.isfinite(n_groups)):
        return ""
    if n_groups < MIN_GROUPS or n_images < MIN_IMAGES:
        return (f"too little data: {int(n_groups)} content group{'s' if int(n_groups) != 1 else ''} and {int(n_images)} test images in the smallest split seed "
                f"(intervals need at least {MIN_GROUPS} groups and {MIN_IMAGES} images per seed); treat its intervals, † and verdicts "
                "as unreliable")
    return ""


@dataclass
class CellStats:
    n: int
    values: dict[str, float]
    ci: dict[str, tuple[float, float]]
    mapping: Mapping
    boot: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    n_groups: int = 0


def evaluate(
    score: np.ndarray,
    mos: np.ndarray,
    *,
    groups=None,
    lower_better: bool = False,
    mos_lower_better: bool = False,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    bad=None,
    cut: float | None = None,
) -> CellStats:
    """All statistics for one cell, with percentile-bootstrap CIs over content groups (``groups``:
    one label per image; None: each image its own group). ``rng`` overrides ``seed``. Every
    statistic of :func:`statistics_table`; those that need acceptability only with
    ``bad`` (which test images are unacceptable), at the score
    threshold ``cut`` (method units, chosen on the train split and fixed in every replicate),
    from the same group draws as the correlations."""
    score = np.asarray(score, float)
    mos = np.asarray(mos, float)
    if score.shape != mos.shape or score.ndim != 1:
        raise ValueError("score and mos must be 1-D arrays of the same length")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"{int((~np.isfinite(score)).sum())} non-finite scores")
    n = len(score)
    if n < 3:
        raise ValueError(f"need at least 3 images to compute correlations, got {n}")
    sample = Sample.build(score, mos, groups, lower_better=lower_better, mos_lower_better=mos_lower_better, bad=bad, cut=cut)
    names = [name for name, spec in statistics_table().items() if bad is not None or not spec.needs_acceptability]
    point = {k: float(statistic(k, sample)[0]) for k in names}
    ci: dict[str, tuple[float, float]] = {}
    boot: dict[str, np.ndarray] = {}
    if bootstrap > 0:
        w = group_weights(sample.codes, bootstrap, rng if rng is not None else np.random.default_rng(seed))
        for k in names:
            # one content group: resampling it only repeats the same images, so there is no interval
            boot[k] = statistic(k, sample, w) if sample.n_groups > 1 else np.full(bootstrap, np.nan)
            ci[k] = quantile_ci(boot[k], confidence)
    return CellStats(n=n, values=point, ci=ci, mapping=sample.mapping, boot=boot, n_groups=sample.n_groups)


@dataclass
class PairedDelta:
    """statistic(B) - statistic(A) averaged over the seeds both were scored on."""

    value: float
    ci: tuple[float, float]
    p_value: float
    replicates: np.ndarray
    per_seed: dict
    n_images: float  # mean per seed
    n_groups: float
    seeds: list

    @property
    def verdict(self) -> str:
        return verdict(*self.ci)


def paired_delta(pairs: dict, name: str, *, bootstrap: int = 1000, confidence: float = 0.95, stats_seed: int = 0,
                 shared_draws: bool = False) -> PairedDelta:
    """Paired content-group bootstrap of statistic(B) - statistic(A). ``pairs``: {split seed:
    (sample A, sample B)} where both samples hold the same images in the same order (same
    groups). In every replicate both sides get the same group draws; per-seed deltas are averaged
    over seeds (the estimand), replicate by replicate (the interval). ``shared_draws``: the same
    group draws in every seed (cross-validation repetitions, see :func:`draw_seed`)."""
    reps, per_seed, ns, gs = [], {}, [], []
    for split_seed, (a, b) in pairs.items():
        if a.n != b.n or not np.array_equal(a.codes, b.codes):
            raise ValueError("paired samples must hold the same images")
        if a.n < 3:
            continue
        d = float(statistic(name, b)[0] - statistic(name, a)[0])
        per_seed[split_seed] = d
        ns.append(a.n)
        gs.append(a.n_groups)
        if bootstrap > 0:
            w = group_weights(a.codes, bootstrap, seed_rng(stats_seed, draw_seed(split_seed, shared_draws)))
            reps.append(statistic(name, b, w) - statistic(name, a, w) if a.n_groups > 1 else np.full(bootstrap, np.nan))
    finite = [v for v in per_seed.values() if np.isfinite(v)]
    value = float(np.mean(finite)) if finite else float("nan")
    rep = seed_mean(reps)
    return PairedDelta(value, quantile_ci(rep, confidence), two_sided_p(rep), rep, per_seed,
                       float(np.mean(ns)) if ns else 0.0, float(np.mean(gs)) if gs else 0.0, list(per_seed))


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


def gate_threshold(score_train, bad_train, *, lower_better=False) -> float:
    """The score cut with the best accuracy on the train split, in the method's own units:
    accept an image when its score is at least as good as the cut (>= for higher-is-better
    methods, <= for lower-is-better ones). NaN without train scores."""
    s = -np.asarray(score_train, float) if lower_better else np.asarray(score_train, float)
    bad = np.asarray(bad_train, bool)
    if not len(s):
        return float("nan")
    order = np.argsort(s, kind="stable")
    s_sorted, bad_sorted = s[order], bad[order]
    cands = np.unique(s_sorted)
    below = np.searchsorted(s_sorted, cands, side="left")  # images rejected by each cut (score < cut)
    bad_below = np.r_[0, np.cumsum(bad_sorted)][below]
    correct = bad_below + (len(s) - bad.sum()) - (below - bad_below)
    cut = float(cands[int(np.argmax(correct))])  # the first (lowest) cut among equally accurate ones
    return -cut if lower_better else cut


def gate_statistics(score_train, bad_train, score_test, bad_test, *, lower_better=False) -> dict[str, float]:
    """AUC: ROC AUC of the (direction-aligned) score for detecting unacceptable test images.
    ACC: test accuracy of accept/reject at the score threshold chosen on the train set (the one
    with the best train accuracy, :func:`gate_threshold`). RETAKE: share of test images that
    threshold rejects. Zero-shot methods have no train scores of their own; the caller passes the
    train split's scores, so the threshold is still chosen without looking at the test set.
    The same functions as the bootstrap's (:func:`gate_statistic`), with every weight 1.
    """
    s_te = -np.asarray(score_test, float) if lower_better else np.asarray(score_test, float)
    bad_te = np.asarray(bad_test, bool)
    cut = gate_threshold(score_train, bad_train, lower_better=lower_better)
    if not len(s_te):
        return {"AUC": float("nan"), "ACC": float("nan"), "RETAKE": float("nan")}
    aligned = -cut if lower_better else cut
    ones = np.ones((1, len(s_te)))
    return {k: float(gate_statistic(k, s_te, bad_te, aligned, ones)[0]) for k in ("AUC", "ACC", "RETAKE")}
