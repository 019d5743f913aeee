"""Per-image MOS from raw observer ratings, with ITU-R BT.500 observer screening.

Input: one row per rating, columns ``image``, ``observer``, ``rating``. Output: one row per image
with ``mos``, ``std``, ``n`` (observers kept), ``ci95`` (half-width of the 95% confidence interval,
``1.96 * std / sqrt(n)`` as in BT.500) and ``ci_low`` / ``ci_high``.

Screening follows ITU-R BT.500 (Annex 1, "screening of the observers", the beta_2 test): for each
image, the ratings are called normal when their kurtosis beta_2 = m4 / m2^2 lies in [2, 4]. An
observer's rating counts as high (P) when it is >= mean + k*std and low (Q) when <= mean - k*std,
with k = 2 for normal images and sqrt(20) otherwise. The observer is rejected when
(P + Q) / (images rated) > 0.05 and |P - Q| / (P + Q) < 0.3: many outlying ratings, on both
sides (a consistently severe or lenient rater is kept: their bias is not noise).
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

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rejected"}
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


def compute_mos(ratings: pd.DataFrame, screening: bool = True, label: str = "ratings") -> tuple[pd.DataFrame, ScreeningReport]:
    """Per-image MOS, std and 95% CI from raw ratings (columns image, observer, rating).

    With ``screening`` the BT.500 beta_2 test rejects unreliable observers first; their ratings
    are left out of every image's MOS. Returns (table sorted by image, report). Bad input raises a
    one-line :class:`DataError` naming ``label`` (e.g. the file).
    """
    df = validate_ratings(ratings, label)
    rejected = screen_observers(df) if screening else []
    report = ScreeningReport(
        method="ITU-R BT.500 beta_2 (kurtosis) observer screening" if screening else "none (screening disabled)",
        observers=int(df["observer"].nunique()),
        images=int(df["image"].nunique()),
        ratings=len(df),
        rejected=rejected,
    )
    kept = df[~df["observer"].isin({r.observer for r in rejected})]
    lost = sorted(set(df["image"]) - set(kept["image"]))
    if lost:
        raise DataError(f"image {lost[0]!r} has no ratings left after observer screening ({len(lost)} such images)")
    g = kept.groupby("image")["rating"]
    out = pd.DataFrame({"mos": g.mean(), "std": g.std(ddof=1).fillna(0.0), "n": g.size()})
    out["ci95"] = Z_95 * out["std"] / np.sqrt(out["n"])
    out["ci_low"] = out["mos"] - out["ci95"]
    out["ci_high"] = out["mos"] + out["ci95"]
    out = out.reset_index().sort_values("image", kind="stable").reset_index(drop=True)
    return out, report


def format_report(report: ScreeningReport) -> str:
    """Human-readable summary: what was screened and which observers were rejected, and why."""
    lines = [
        f"{report.ratings} ratings of {report.images} images by {report.observers} observers; screening: {report.method}",
    ]
    if not report.rejected:
        lines.append("no observer rejected")
    else:
        lines.append(f"{len(report.rejected)} observer(s) rejected:")
        lines += [f"  {r.observer}: {r.reason}" for r in report.rejected]
    return "\n".join(lines)
