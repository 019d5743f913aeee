"""Human agreement: the noise ceiling of SROCC/PLCC and the false-ranking analysis.

Both need the raters' own scores, which only a rated domain (``derm-ratings`` from raw ratings)
keeps: a run stores them in ``ratings.csv`` (dataset, image, observer, rating; the raters the
screening kept, on the dataset's scale). A pseudo-MOS domain has none, and says so.

**Noise ceiling.** Leave one rater out: correlate that rater's scores with the mean of the other
raters over the images both cover, SROCC and (linear) PLCC, and average over raters. It is how
well one human agrees with the panel, so a method whose interval reaches it "performs like one
human rater". Measured against the leave-one-out mean of n-1 raters while the methods are judged
against the mean of all n, it leans slightly low (a conservative ceiling).

**False ranking** (Krasula, Fliegel, Le Callet and Klima, QoMEX 2016). A pair of images differs
significantly when a two-sample (Welch) t-test on their ratings (each image's MOS, std and n)
rejects equal means at the run's confidence; only images of the same dataset are paired (their
ratings share a scale). Over the significantly different pairs: the share the method ranks the
wrong way round, the share it ties (equal scores), C0 (the share ranked the right way), and the
Better/Worse AUC (the score difference better-minus-worse against worse-minus-better). Over all
pairs: the Different/Similar AUC (the absolute score difference separating different pairs
from similar ones). Ties count one half in both AUCs.

Intervals resample content groups with the same draws as the cell's other intervals
(:func:`diqa_bench.stats.group_weights`): an image of weight w_i counts w_i times, a pair
w_i * w_j times.
"""

from __future__ import annotations

import warnings

import numpy as np

from diqa_bench import stats

PAIR_STATISTICS = ("FALSE_RANK", "TIE", "C0", "AUC_BW", "AUC_DS")
CHUNK = 64  # replicates per block in the pair statistics: bounds memory on large test sets


def ratings_matrix(images, ratings) -> np.ndarray:
    """[n images, k raters] of ratings (NaN: not rated) for ``images`` ((dataset, image) pairs)
    from a tidy ratings table (dataset, image, observer, rating); a rater of one dataset is a
    column of their own."""
    index = {key: i for i, key in enumerate(images)}
    sub = ratings[[(d, i) in index for d, i in zip(ratings["dataset"], ratings["image"])]]
    raters = sorted(set(zip(sub["dataset"], sub["observer"])))
    col = {r: j for j, r in enumerate(raters)}
    out = np.full((len(images), len(raters)), np.nan)
    for d, i, o, r in zip(sub["dataset"], sub["image"], sub["observer"], sub["rating"]):
        out[index[(d, i)], col[(d, o)]] = float(r)
    return out


def rater_agreement(matrix: np.ndarray, codes: np.ndarray | None = None, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each rater's SROCC and PLCC with the mean of the other raters, [k raters, B] per row of
    ``weights`` [B, n] (None: point estimates, B = 1), over the images the rater and at least one
    other rater rated; NaN for a rater with fewer than 3 such images."""
    matrix = np.asarray(matrix, float)
    n, k = matrix.shape
    codes = np.arange(n) if codes is None else np.asarray(codes)
    w = np.ones((1, n)) if weights is None else np.asarray(weights, float)
    rated = ~np.isnan(matrix)
    total, count = np.nansum(matrix, 1), rated.sum(1)
    out = {"SROCC": np.full((k, w.shape[0]), np.nan), "PLCC": np.full((k, w.shape[0]), np.nan)}
    for r in range(k):
        others = count - rated[:, r]
        mask = rated[:, r] & (others > 0)
        if mask.sum() < 3:
            continue
        mean_others = (total[mask] - matrix[mask, r]) / others[mask]
        sample = stats.Sample(matrix[mask, r], mean_others, codes[mask], stats.Mapping("linear", [1.0, 0.0]))
        out["SROCC"][r] = stats.statistic("SROCC", sample, w[:, mask])
        out["PLCC"][r] = stats.statistic("PLCC_raw", sample, w[:, mask])
    return out


def noise_ceiling(matrix: np.ndarray, codes: np.ndarray | None = None, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The noise ceiling: :func:`rater_agreement` averaged over raters, SROCC and PLCC per row of
    ``weights`` (None: the point estimate, [1] arrays); NaN where no rater is defined."""
    per = rater_agreement(matrix, codes, weights)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where no rater is defined
        return {name: np.nanmean(v, 0) if len(v) else np.full(v.shape[1], np.nan) for name, v in per.items()}


def significant_pairs(mos, std, n, confidence: float = 0.95, same=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of images (of the same ``same`` label, when given) as (i, j, different):
    ``different`` when Welch's two-sample t-test on the two images' ratings (mean, std, count)
    rejects equal means at ``confidence``. An image with fewer than 2 ratings differs from none;
    two images with no spread differ when their means do."""
    from scipy import stats as sps

    mos, std, n = (np.asarray(x, float) for x in (mos, std, n))
    i, j = np.triu_indices(len(mos), 1)
    if same is not None:
        same = np.asarray(same)
        keep = same[i] == same[j]
        i, j = i[keep], j[keep]
    vi, vj = std[i] ** 2 / n[i], std[j] ** 2 / n[j]
    se2 = vi + vj
    diff = np.abs(mos[i] - mos[j])
    with np.errstate(all="ignore"):
        dof = se2 ** 2 / (vi ** 2 / (n[i] - 1) + vj ** 2 / (n[j] - 1))
        p = 2 * sps.t.sf(diff / np.sqrt(se2), dof)
    p = np.where(se2 > 0, p, np.where(diff > 0, 0.0, 1.0))
    different = (p < 1 - confidence) & (n[i] >= 2) & (n[j] >= 2)
    return i, j, different


def _wauc_sets(pos: np.ndarray, neg: np.ndarray, wpos: np.ndarray, wneg: np.ndarray) -> np.ndarray:
    """P(pos > neg) + P(pos = neg) / 2 per row of weights ([B, len(pos)], [B, len(neg)]); NaN
    where a row weighs one side zero."""
    values, codes = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    codes = codes.reshape(-1)
    cp, cn = codes[: len(pos)], codes[len(pos):]
    out = np.empty(wpos.shape[0])
    for start in range(0, wpos.shape[0], CHUNK):
        wn = wneg[start:start + CHUNK]
        at = np.zeros((wn.shape[0], len(values)))
        np.add.at(at, (slice(None), cn), wn)
        below = np.cumsum(at, 1) - at
        wp = wpos[start:start + CHUNK]
        with np.errstate(all="ignore"):
            out[start:start + CHUNK] = (wp * (below[:, cp] + 0.5 * at[:, cp])).sum(1) / (wp.sum(1) * wn.sum(1))
    return out


def false_ranking(score, mos, i, j, different, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:data:`PAIR_STATISTICS` per row of ``weights`` [B, n] (None: point estimates) for the pairs
    (``i``, ``j``, ``different``) of :func:`significant_pairs`; ``score`` and ``mos`` aligned,
    higher = better. NaN where a statistic has no pair."""
    score, mos = np.asarray(score, float), np.asarray(mos, float)
    w = np.ones((1, len(score))) if weights is None else np.asarray(weights, float)
    different = np.asarray(different, bool)
    # orient the different pairs better-minus-worse (by MOS)
    sign = np.sign(mos[i] - mos[j])
    d = ((score[i] - score[j]) * np.where(sign == 0, 1.0, sign))[different]
    gap = np.abs(score[i] - score[j])
    out = {name: np.full(w.shape[0], np.nan) for name in PAIR_STATISTICS}
    for start in range(0, w.shape[0], CHUNK):  # pair weights are [B, pairs]: a block of replicates at a time
        rows = slice(start, start + CHUNK)
        pw = w[rows][:, i] * w[rows][:, j]
        wd, ws = pw[:, different], pw[:, ~different]
        total = wd.sum(1)
        with np.errstate(all="ignore"):
            out["FALSE_RANK"][rows] = (wd * (d < 0)).sum(1) / total
            out["TIE"][rows] = (wd * (d == 0)).sum(1) / total
            out["C0"][rows] = (wd * (d > 0)).sum(1) / total
        if different.any():
            out["AUC_BW"][rows] = _wauc_sets(d, -d, wd, wd)
            if (~different).any():
                out["AUC_DS"][rows] = _wauc_sets(gap[different], gap[~different], wd, ws)
    return out
