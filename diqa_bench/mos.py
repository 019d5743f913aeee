"""Per-image MOS from raw observer ratings, with ITU-R BT.500 observer screening.

Input: one row per rating, columns ``image``, ``observer``, ``rating``. Output: one row per image
with ``mos``, ``std``, ``n`` (observers kept), ``ci95`` (half-width of the 95% confidence interval,
``1.96 * std / sqrt(n)`` as in BT.500) and ``ci_low`` / ``ci_high`` (clipped to the rating scale
when it is given: a MOS cannot lie outside it; a rating off the given scale is an error).

Screening follows ITU-R BT.500 (Annex 1, "screening of the observers", the beta_2 test): for each
image, the ratings are called normal when their kurtosis beta_2 = m4 / m2^2 lies in [2, 4]. An
observer's rating counts as high (P) when it is >= mean + k*std and low (Q) when <= mean - k*std,
with k = 2 for normal images and sqrt(20) otherwise. The observer is rejected when
(P + Q) / (images rated) > 0.05 and |P - Q| / (P + Q) < 0.3: many outlying ratings, on both
sides (a consistently severe or lenient rater is kept: their bias is not noise).

The kurtosis test looks at one image at a time, so a rater who answers at random or reverses the
scale can pass it (with few observers the image's own spread hides them). A second test looks at
each rater across images: the Pearson correlation of their ratings with the mean of the other
raters on the same images (leave-one-out). A rater whose correlation is below
``MIN_RATER_CORRELATION`` is rejected, worst first, recomputing the others' means after each
rejection; a rater who gives every image the same rating is rejected too (no information).

Scale check (with or without a declared scale): a rater who used another scale (0-10 among 1-5
raters) passes both tests above, since their ratings still rank the images like the others'. Such
a rater is *flagged* (reported, kept) when their ratings reach beyond the range all the other
raters used by more than ``SCALE_RANGE_EXCESS`` of that range, or when their ratings grow with the
others' mean at a slope of ``SCALE_SLOPE_LIMIT`` or more (or 1 / that or less) over at least
``MIN_COMMON_IMAGES`` shared images; a rater who is merely lenient or severe keeps a slope near 1.
On request one rater can be dropped, or rescaled linearly from the scale they used onto the
declared one, before anything else is computed. Images rated by fewer raters than most are
reported (their MOS rests on fewer opinions).

Inter-rater reliability (split-half): each image's raters are split into two random halves, the
two half-means are correlated across images (Pearson) and Spearman-Brown corrected to the full
panel, averaged over random splits; the interval is a bootstrap over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from diqa_bench.errors import DataError

RATING_COLUMNS = ("image", "observer", "rating")
OUTSIDE_RATIO_LIMIT = 0.05
ASYMMETRY_LIMIT = 0.3
Z_95 = 1.96
MIN_RATER_CORRELATION = 0.3  # random raters sit near 0, reversed ones near -1, attentive ones well above
MIN_COMMON_IMAGES = 10  # fewer shared images make a rater's correlation too noisy to judge
SCALE_RANGE_EXCESS = 0.25  # beyond the others' range by more than this share of it: another scale (a lenient rater overshoots less)
SCALE_SLOPE_LIMIT = 2.0  # 0-10 against 1-5 gives a slope of 2.5; a biased but attentive rater stays near 1


@dataclass
class RejectedObserver:
    observer: str
    images_rated: int
    high: int  # P: ratings above the image's mean + k * std
    low: int  # Q: ratings below the image's mean - k * std
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScreeningReport:
    """What the BT.500 screening did: kept in run.json so a reader can audit the labels."""

    method: str
    observers: int
    images: int
    ratings: int
    rejected: list[RejectedObserver] = field(default_factory=list)
    correlations: dict[str, float | None] = field(default_factory=dict)  # rater -> r with the leave-one-out mean (final panel)
    reliability: dict[str, Any] = field(default_factory=dict)  # split-half, Spearman-Brown corrected, with its interval
    scale: list[float] | None = None  # [low, high] the ratings were checked against and the intervals clipped to
    flagged: list[dict[str, Any]] = field(default_factory=list)  # raters whose range or spread does not fit the others' (kept)
    dropped: list[str] = field(default_factory=list)  # raters left out on request
    rescaled: dict[str, list[float]] = field(default_factory=dict)  # rater -> [low, high] of the scale they used, mapped onto ``scale``
    fewer_ratings: dict[str, Any] = field(default_factory=dict)  # images with fewer ratings than most: {typical, count, images: {id: n}}
    kept: Any = field(default=None, repr=False, compare=False)  # the ratings behind the MOS (not in as_dict: run.json stays small)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("rejected", "kept")}
        out["rejected"] = [r.as_dict() for r in self.rejected]
        return out


def read_ratings(path: str) -> pd.DataFrame:
    """Read a raw ratings CSV and check its columns and values (one-line DataError otherwise)."""
    try:
        df = pd.read_csv(path, dtype={"image": str, "observer": str})
    except FileNotFoundError:
        raise DataError(f"{path}: ratings file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ratings CSV ({exc})") from None
    return validate_ratings(df, str(path))


def validate_ratings(df: pd.DataFrame, label: str = "ratings") -> pd.DataFrame:
    missing = [c for c in RATING_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{label}: missing column(s) {', '.join(missing)}; expected {', '.join(RATING_COLUMNS)}, found {', '.join(map(str, df.columns))}")
    df = df[list(RATING_COLUMNS)].copy()
    if df.empty:
        raise DataError(f"{label}: no ratings")
    ratings = pd.to_numeric(df["rating"], errors="coerce")
    bad = df.loc[ratings.isna(), "rating"]
    if len(bad):
        row = bad.index[0]
        value = df.at[row, "rating"]
        shown = "(blank)" if pd.isna(value) else repr(str(value))
        raise DataError(f"{label}: rating {shown} of image {df.at[row, 'image']!r} by observer {df.at[row, 'observer']!r} is blank or not a number")
    if df["image"].isna().any() or df["observer"].isna().any():
        raise DataError(f"{label}: a row has a blank image or observer")
    df["rating"] = ratings.astype(float)
    df["image"] = df["image"].astype(str)
    df["observer"] = df["observer"].astype(str)
    dup = df.duplicated(["image", "observer"])
    if dup.any():
        row = df[dup].iloc[0]
        raise DataError(f"{label}: observer {row['observer']!r} rated image {row['image']!r} more than once")
    return df


def _scale_numbers(scale) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise DataError(f"rating scale must be two numbers [low, high], got {scale!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise DataError(f"rating scale must be two finite numbers with low < high, got [{low:g}, {high:g}]")
    return low, high


def check_scale(df: pd.DataFrame, scale: tuple[float, float], label: str = "ratings") -> tuple[float, float]:
    """Check the rating scale (two finite numbers, low < high) and that every rating lies on it;
    a rating off the scale is a data-entry error, not something to clip away silently. Returns
    (low, high); a one-line :class:`DataError` names the first offending row otherwise, and which
    raters the off-scale ratings come from."""
    low, high = _scale_numbers(scale)
    outside = df[(df["rating"] < low) | (df["rating"] > high)]
    if len(outside):
        r = outside.iloc[0]
        raise DataError(f"{label}: rating {r['rating']:g} of image {r['image']!r} by observer {r['observer']!r} is outside the scale "
                        f"[{low:g}, {high:g}] ({len(outside)} rating(s) off the scale{_by_rater(df, outside)})")
    return low, high


def _by_rater(df: pd.DataFrame, outside: pd.DataFrame) -> str:
    """Which raters the off-scale ratings come from, with how to fix a rater on another scale."""
    counts = outside["observer"].value_counts()
    if len(counts) == 1:
        who = str(counts.index[0])
        own = df.loc[df["observer"] == who, "rating"]
        return (f", all by observer {who!r}, whose {len(own)} ratings span {own.min():g} to {own.max():g}: another scale? leave them out "
                f"with --drop-rater {who} or map them with --rescale-rater {who} LOW HIGH (a derm-ratings dataset: drop_raters, rescale_raters)")
    shown = ", ".join(f"{o!r} {n}" for o, n in counts.head(5).items())
    return f"; by observer: {shown}" + (f" and {len(counts) - 5} more" if len(counts) > 5 else "")


def scale_misfits(df: pd.DataFrame, range_excess: float = SCALE_RANGE_EXCESS, slope_limit: float = SCALE_SLOPE_LIMIT,
                  min_common: int = MIN_COMMON_IMAGES) -> list[dict[str, Any]]:
    """Raters whose ratings do not fit the scale the others used (see the module docstring), each
    as {observer, low, high, others_low, others_high, slope, images, reason}; needs 3 raters."""
    if df["observer"].nunique() < 3:
        return []
    m = _matrix(df)
    values = m.to_numpy(dtype=float)
    have = ~np.isnan(values)
    total = np.where(have, values, 0.0).sum(axis=1)
    count = have.sum(axis=1)
    out = []
    for j, observer in enumerate(m.columns):
        own_all = values[have[:, j], j]
        others = np.delete(values, j, axis=1)
        o_low, o_high = float(np.nanmin(others)), float(np.nanmax(others))
        width = o_high - o_low
        low, high = float(own_all.min()), float(own_all.max())
        reasons = []
        if width > 0 and max(o_low - low, high - o_high) > range_excess * width:
            reasons.append(f"ratings span {low:g} to {high:g}, the other raters' {o_low:g} to {o_high:g}")
        rows = have[:, j] & (count > 1)
        slope = None
        if rows.sum() >= min_common:
            own = values[rows, j]
            mean_others = (total[rows] - own) / (count[rows] - 1)
            if np.std(mean_others) > 0 and np.std(own) > 0 and np.corrcoef(own, mean_others)[0, 1] >= MIN_RATER_CORRELATION:
                slope = float(np.polyfit(mean_others, own, 1)[0])
                if slope >= slope_limit or slope <= 1 / slope_limit:
                    reasons.append(f"ratings move {slope:.2f} points per point of the others' mean over {int(rows.sum())} images")
        if reasons:
            out.append(dict(observer=str(observer), low=low, high=high, others_low=o_low, others_high=o_high,
                            slope=None if slope is None else round(slope, 3), images=int(have[:, j].sum()),
                            reason="; ".join(reasons) + ": another scale?"))
    return out


def apply_rater_fixes(df: pd.DataFrame, drop=(), rescale: dict | None = None, scale: tuple[float, float] | None = None,
                      label: str = "ratings") -> pd.DataFrame:
    """Leave out the raters in ``drop`` and map each rater in ``rescale`` ({rater: (low, high)},
    the scale they used) linearly onto ``scale``. A rater that is not in the file, or a rescale
    without a target scale, is a one-line :class:`DataError`."""
    rescale = dict(rescale or {})
    known = set(df["observer"])
    for who in list(drop) + list(rescale):
        if str(who) not in known:
            raise DataError(f"{label}: no observer {str(who)!r} (observers: {', '.join(sorted(known)[:10])}{', ...' if len(known) > 10 else ''})")
    both = set(map(str, drop)) & set(map(str, rescale))
    if both:
        raise DataError(f"{label}: observer {sorted(both)[0]!r} is both dropped and rescaled")
    out = df[~df["observer"].isin({str(d) for d in drop})].copy()
    if rescale and scale is None:
        raise DataError(f"{label}: rescaling a rater needs the scale to map onto (--scale LOW HIGH)")
    for who, (src_low, src_high) in rescale.items():
        if not (math.isfinite(src_low) and math.isfinite(src_high) and src_low < src_high):
            raise DataError(f"{label}: the scale of observer {who!r} must be two finite numbers with low < high, got [{src_low:g}, {src_high:g}]")
        rows = out["observer"] == str(who)
        own = out.loc[rows, "rating"]
        if own.min() < src_low or own.max() > src_high:
            raise DataError(f"{label}: observer {who!r} has ratings from {own.min():g} to {own.max():g}, outside the scale [{src_low:g}, {src_high:g}] given for them")
        out.loc[rows, "rating"] = scale[0] + (own - src_low) * (scale[1] - scale[0]) / (src_high - src_low)
    if out.empty:
        raise DataError(f"{label}: no ratings left after dropping {', '.join(map(str, drop))}")
    return out


def fewer_ratings(df: pd.DataFrame, shown: int = 10) -> dict[str, Any]:
    """Images rated by fewer raters than the most common count ({} when none)."""
    n = df.groupby("image")["observer"].nunique()
    typical = int(n.mode().max())
    short = n[n < typical].sort_values(kind="stable")
    if not len(short):
        return {}
    return {"typical": typical, "count": int(len(short)), "images": {str(k): int(v) for k, v in short.head(shown).items()}}


def screen_observers(df: pd.DataFrame) -> list[RejectedObserver]:
    """BT.500 beta_2 screening over a validated ratings table; returns the rejected observers."""
    by_image = df.groupby("image")["rating"]
    mean = by_image.transform("mean")
    std = by_image.transform(lambda r: r.std(ddof=1) if len(r) > 1 else 0.0)
    m2 = by_image.transform(lambda r: ((r - r.mean()) ** 2).mean())
    m4 = by_image.transform(lambda r: ((r - r.mean()) ** 4).mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        beta2 = np.where(m2 > 0, m4 / m2**2, np.nan)
    normal = (beta2 >= 2) & (beta2 <= 4)
    k = np.where(normal, 2.0, math.sqrt(20.0))
    # An image everyone rated alike (std 0) has no outliers.
    high = (std > 0) & (df["rating"] >= mean + k * std)
    low = (std > 0) & (df["rating"] <= mean - k * std)
    counts = pd.DataFrame({"observer": df["observer"], "high": high, "low": low}).groupby("observer").agg(
        n=("high", "size"), high=("high", "sum"), low=("low", "sum")
    )
    rejected = []
    for observer, row in counts.sort_index().iterrows():
        outside = int(row.high + row.low)
        if outside == 0:
            continue
        ratio = outside / row.n
        asym = abs(int(row.high) - int(row.low)) / outside
        if ratio > OUTSIDE_RATIO_LIMIT and asym < ASYMMETRY_LIMIT:
            reason = (
                f"{outside} of {int(row.n)} ratings ({ratio:.0%}) outside the BT.500 limits "
                f"({int(row.high)} high, {int(row.low)} low; > {OUTSIDE_RATIO_LIMIT:.0%} and balanced, |P-Q|/(P+Q) = {asym:.2f} < {ASYMMETRY_LIMIT})"
            )
            rejected.append(RejectedObserver(str(observer), int(row.n), int(row.high), int(row.low), reason))
    return rejected


def _matrix(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot(index="image", columns="observer", values="rating")


def rater_correlations(df: pd.DataFrame) -> dict[str, tuple[float | None, int]]:
    """Per rater: (Pearson r of their ratings with the mean of the other raters on the same images,
    images shared). r is None when it cannot be computed (fewer than 3 shared images, or no spread
    in the others' means); NaN when the rater gave every image the same rating."""
    m = _matrix(df)
    values = m.to_numpy(dtype=float)
    have = ~np.isnan(values)
    total = np.where(have, values, 0.0).sum(axis=1)
    count = have.sum(axis=1)
    out: dict[str, tuple[float | None, int]] = {}
    for j, observer in enumerate(m.columns):
        rows = have[:, j] & (count > 1)
        own = values[rows, j]
        others = (total[rows] - own) / (count[rows] - 1)
        n = int(rows.sum())
        if n < 3 or np.std(others) == 0:
            out[str(observer)] = (None, n)
        elif np.std(own) == 0:
            out[str(observer)] = (float("nan"), n)
        else:
            out[str(observer)] = (float(np.corrcoef(own, others)[0, 1]), n)
    return out


def screen_by_correlation(df: pd.DataFrame, min_correlation: float = MIN_RATER_CORRELATION, min_common: int = MIN_COMMON_IMAGES) -> tuple[list[RejectedObserver], dict[str, float | None]]:
    """Reject raters whose ratings do not follow the others' (random, reversed or constant raters),
    worst first, recomputing after each rejection. Returns (rejected, final correlations)."""
    rejected: list[RejectedObserver] = []
    kept = df
    while kept["observer"].nunique() > 2:
        corr = rater_correlations(kept)
        judged = {o: (r, n) for o, (r, n) in corr.items() if r is not None and n >= min_common}
        if not judged:
            break
        worst, (r, n) = min(judged.items(), key=lambda kv: -2.0 if math.isnan(kv[1][0]) else kv[1][0])
        if not math.isnan(r) and r >= min_correlation:
            break
        if math.isnan(r):
            reason = f"gave the same rating to all {n} images they shared with other raters (no information)"
        else:
            reason = (f"ratings correlate at r = {r:.2f} with the other raters' mean over {n} images "
                      f"(< {min_correlation}: {'reversed scale' if r < -min_correlation else 'unrelated to the others'})")
        rejected.append(RejectedObserver(worst, int((kept["observer"] == worst).sum()), 0, 0, reason))
        kept = kept[kept["observer"] != worst]
    final = {o: (None if r is None or math.isnan(r) else round(r, 4)) for o, (r, _) in rater_correlations(kept).items()}
    return rejected, final


def split_half_reliability(df: pd.DataFrame, splits: int = 50, bootstrap: int = 300, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Split-half inter-rater reliability with the Spearman-Brown correction (see the module
    docstring), and a percentile bootstrap interval over images."""
    m = _matrix(df)
    values = m.to_numpy(dtype=float)
    have = ~np.isnan(values)
    rows = have.sum(axis=1) >= 2
    values, have = values[rows], have[rows]
    n_img = int(rows.sum())
    method = f"split-half: random halves of each image's raters, Pearson r of the half-means, Spearman-Brown corrected, mean of {splits} splits"
    if n_img < 3:
        return {"method": method, "value": None, "images": n_img, "note": "fewer than 3 images rated by two or more raters"}
    rng = np.random.default_rng(seed)
    counts = have.sum(axis=1)
    half = (counts // 2)[:, None]
    a_means, b_means = [], []
    filled = np.where(have, values, 0.0)
    for _ in range(splits):
        keys = np.where(have, rng.random(values.shape), np.inf)
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)
        in_a = have & (rank < half)
        in_b = have & ~in_a
        a_means.append((filled * in_a).sum(axis=1) / in_a.sum(axis=1))
        b_means.append((filled * in_b).sum(axis=1) / in_b.sum(axis=1))
    a, b = np.array(a_means), np.array(b_means)

    def corrected(ia: np.ndarray, ib: np.ndarray) -> float:
        xa = ia - ia.mean(axis=1, keepdims=True)
        xb = ib - ib.mean(axis=1, keepdims=True)
        den = np.sqrt((xa**2).sum(axis=1) * (xb**2).sum(axis=1))
        r = np.where(den > 0, (xa * xb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
        sb = 2 * r / (1 + r)
        return float(np.nanmean(sb)) if np.isfinite(sb).any() else float("nan")

    value = corrected(a, b)
    boots = []
    for _ in range(bootstrap):
        idx = rng.integers(0, n_img, n_img)
        boots.append(corrected(a[:, idx], b[:, idx]))
    boots = np.array([v for v in boots if math.isfinite(v)])
    alpha = (1 - confidence) / 2
    low, high = (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))) if len(boots) else (None, None)
    return {"method": method, "value": None if math.isnan(value) else round(value, 4), "ci_low": None if low is None else round(low, 4),
            "ci_high": None if high is None else round(high, 4), "confidence": confidence, "images": n_img, "bootstrap": bootstrap}


def compute_mos(
    ratings: pd.DataFrame,
    screening: bool = True,
    label: str = "ratings",
    scale: tuple[float, float] | None = None,
    min_correlation: float = MIN_RATER_CORRELATION,
    drop_raters=(),
    rescale_raters: dict | None = None,
) -> tuple[pd.DataFrame, ScreeningReport]:
    """Per-image MOS, std and 95% CI from raw ratings (columns image, observer, rating).

    With ``screening`` the BT.500 beta_2 test, then the rater-correlation test, reject unreliable
    observers first; their ratings are left out of every image's MOS. ``scale`` (low, high) is the
    rating scale: every rating must lie on it (see :func:`check_scale`) and the intervals are
    clipped to it. ``drop_raters`` and ``rescale_raters`` ({rater: (low, high) of the scale they
    used}) fix raters on request before anything else (:func:`apply_rater_fixes`). Raters whose
    range or spread does not fit the others' are flagged in the report (kept), as are images with
    fewer ratings than most. Returns (table sorted by image, report). Bad input raises a
    one-line :class:`DataError` naming ``label`` (e.g. the file).
    """
    df = validate_ratings(ratings, label)
    if scale is not None:
        scale = _scale_numbers(scale)
    df = apply_rater_fixes(df, drop_raters, rescale_raters, scale, label) if drop_raters or rescale_raters else df
    if scale is not None:
        scale = check_scale(df, scale, label)
    rejected = screen_observers(df) if screening else []
    correlations: dict[str, float | None] = {}
    if screening:
        more, correlations = screen_by_correlation(df[~df["observer"].isin({r.observer for r in rejected})], min_correlation)
        rejected += more
    report = ScreeningReport(
        method=(f"ITU-R BT.500 beta_2 (kurtosis) observer screening, then rater-vs-others correlation (leave-one-out mean, reject r < {min_correlation})"
                if screening else "none (screening disabled)"),
        observers=int(df["observer"].nunique()),
        images=int(df["image"].nunique()),
        ratings=len(df),
        rejected=rejected,
        correlations=correlations,
        scale=None if scale is None else [scale[0], scale[1]],
        flagged=scale_misfits(df),
        dropped=[str(d) for d in drop_raters],
        rescaled={str(k): [float(v[0]), float(v[1])] for k, v in (rescale_raters or {}).items()},
    )
    kept = df[~df["observer"].isin({r.observer for r in rejected})]
    lost = sorted(set(df["image"]) - set(kept["image"]))
    if lost:
        raise DataError(f"image {lost[0]!r} has no ratings left after observer screening ({len(lost)} such images)")
    report.kept = kept  # what diqa_bench.agreement needs: each kept rater's own scores
    report.reliability = split_half_reliability(kept)
    report.fewer_ratings = fewer_ratings(kept)
    g = kept.groupby("image")["rating"]
    out = pd.DataFrame({"mos": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.size()})
    out["ci95"] = Z_95 * out["std"] / np.sqrt(out["n"])
    out["ci_low"] = out["mos"] - out["ci95"]
    out["ci_high"] = out["mos"] + out["ci95"]
    if scale is not None:
        out["ci_low"] = out["ci_low"].clip(lower=scale[0])
        out["ci_high"] = out["ci_high"].clip(upper=scale[1])
    out = out.reset_index().sort_values("image", kind="stable").reset_index(drop=True)
    return out, report


def format_report(report: ScreeningReport) -> str:
    """Human-readable summary: what was screened and which observers were rejected, and why."""
    lines = [
        f"{report.ratings} ratings of {report.images} images by {report.observers} observers; screening: {report.method}",
    ]
    if report.scale is not None:
        lines.append(f"rating scale [{report.scale[0]:g}, {report.scale[1]:g}]: every rating checked to lie on it, 95% intervals clipped to it")
    if report.dropped:
        lines.append(f"left out on request: observer {', '.join(report.dropped)}")
    lines += [f"rescaled on request: observer {who} from [{lo:g}, {hi:g}] onto the scale" for who, (lo, hi) in report.rescaled.items()]
    for f in report.flagged:
        lines.append(f"WARNING: observer {f['observer']} does not fit the other raters' scale ({f['reason']}); kept: leave them out with "
                     f"--drop-rater {f['observer']} or map them with --rescale-rater {f['observer']} LOW HIGH")
    short = report.fewer_ratings
    if short:
        shown = ", ".join(f"{k} ({v})" for k, v in short["images"].items())
        lines.append(f"{short['count']} image(s) have fewer ratings than the usual {short['typical']} (their MOS rests on fewer opinions): "
                     f"{shown}{', ...' if short['count'] > len(short['images']) else ''}")
    if not report.rejected:
        lines.append("no observer rejected")
    else:
        lines.append(f"{len(report.rejected)} observer(s) rejected:")
        lines += [f"  {r.observer}: {r.reason}" for r in report.rejected]
    rel = report.reliability or {}
    if rel.get("value") is not None:
        interval = (f"{rel['confidence']:.0%} interval {rel['ci_low']:.3f} to {rel['ci_high']:.3f}"
                    if rel.get("ci_low") is not None and rel.get("ci_high") is not None else "no bootstrap interval")
        lines.append(f"inter-rater reliability {rel['value']:.3f} ({interval}; {rel['method']})")
    return "\n".join(lines)
