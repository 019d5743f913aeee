"""Dermatology ratings: images rated by several observers (how a database like
Legit.Health-DIQA-Artificial is collected).

Either raw ratings (``ratings:`` CSV with columns image, observer, rating) -> per-image MOS, std
and 95% CI through :mod:`diqa_bench.mos` with ITU-R BT.500 observer screening, or a precomputed
MOS table (``mos:`` CSV with columns image, mos[, std]). The content group (patient) comes from a
``patient_column`` (or ``group_column``) in the ratings/MOS CSV or from a ``metadata`` CSV whose
image column is named by ``image_column`` (HAM10000's ``image_id``, say; names match with or without
the file extension). ``root`` falls back to $DIQA_DERM_RATINGS_ROOT; CSV names that are not found
as given are looked up in the root.
After :meth:`load`, ``screening`` holds the screening report (a dict: rejected raters, each rater's
correlation with the others, split-half reliability) for run.json and the leaderboard.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError

from .tabular import METADATA_SCHEMA, RANGE_SCHEMA, parse_number, read_table, require_columns


class DermRatingsDataset(Dataset):
    name = "derm-ratings"
    description = "Dermatology photos with per-observer ratings (MOS + BT.500 screening) or a precomputed MOS CSV"
    options_schema: ClassVar[dict[str, Any]] = {
        "root": {"type": ["string", "null"], "description": "image folder (else $DIQA_DERM_RATINGS_ROOT); image names in the CSVs are relative to it"},
        "ratings": {"type": ["string", "null"], "description": "raw ratings CSV: image, observer, rating"},
        "mos": {"type": ["string", "null"], "description": "precomputed MOS CSV: image, mos[, std]"},
        "metadata": {"type": ["string", "null"], "description": "CSV with an image column and the patient column"},
        "image_column": {"type": "string", "description": "the metadata CSV's image column (default image)"},
        "patient_column": {"type": ["string", "null"], "description": "column naming the patient (content group), in the metadata or ratings/MOS CSV"},
        "group_column": {"type": ["string", "null"], "description": "same as patient_column"},
        "min_rater_correlation": {"type": "number", "minimum": -1, "maximum": 1, "description": "reject raters correlating less with the others' mean (default 0.3)"},
        "scale": RANGE_SCHEMA | {"description": "rating scale [low, high], default [1, 5]"},
        "lower_better": {"type": "boolean"},
        "screening": {"type": "boolean", "description": "ITU-R BT.500 observer screening (default true)"},
        "drop_raters": {"type": "array", "items": {"type": "string"}, "description": "raters whose ratings are left out (e.g. one flagged on another scale)"},
        "rescale_raters": {"type": "object", "additionalProperties": RANGE_SCHEMA,
                           "description": "rater -> [low, high] of the scale they used, mapped linearly onto the dataset's scale"},
        "metadata_columns": METADATA_SCHEMA | {"description": "per-image text columns (body site, device...) of the metadata CSV if given, "
                                                               "else of the ratings/MOS CSV: scores.csv columns and strata"},
    }
    env_var = "DIQA_DERM_RATINGS_ROOT"

    def __init__(
        self,
        root: str | None = None,
        ratings: str | None = None,
        mos: str | None = None,
        metadata: str | None = None,
        group_column: str | None = None,
        scale: list[float] = (1.0, 5.0),
        lower_better: bool = False,
        screening: bool = True,
        image_column: str = "image",
        patient_column: str | None = None,
        min_rater_correlation: float | None = None,
        drop_raters: list[str] = (),
        rescale_raters: dict[str, list[float]] | None = None,
        metadata_columns: list[str] = (),
    ) -> None:
        super().__init__(root=root, ratings=ratings, mos=mos, metadata=metadata)
        if patient_column and group_column and patient_column != group_column:
            raise DataError(f"derm-ratings: patient_column {patient_column!r} and group_column {group_column!r} disagree; give one")
        if (ratings is None) == (mos is None):
            raise DataError("derm-ratings: give exactly one of 'ratings' (raw per-observer CSV) or 'mos' (precomputed MOS CSV)")
        root = root or os.environ.get(self.env_var)
        self.root = Path(root).expanduser() if root else None
        self.ratings = self._resolve(ratings)
        self.mos_csv = self._resolve(mos)
        self.metadata = self._resolve(metadata)
        self.group_column = patient_column or group_column
        self.metadata_columns = [str(c) for c in metadata_columns]
        self.image_column = image_column
        self.min_rater_correlation = min_rater_correlation
        self.drop_raters = [str(r) for r in drop_raters]
        self.rescale_raters = {str(k): (float(v[0]), float(v[1])) for k, v in (rescale_raters or {}).items()}
        low, high = (float(v) for v in scale)
        if not low < high:
            raise DataError(f"derm-ratings: scale must be [low, high] with low < high, got {list(scale)}")
        self.mos_range = (low, high)
        self.lower_better = bool(lower_better)
        self.use_screening = bool(screening)
        self.screening: dict[str, Any] | None = None
        self.rater_scores = None  # the kept raters' scores after load() from raw ratings (image, observer, rating)

    def _resolve(self, path: str | None) -> Path | None:
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute() or p.exists() or self.root is None:
            return p
        return self.root / p  # a bare name is looked up in the image folder

    def check(self) -> list[str]:
        if self.root is None:
            return [f"derm-ratings: no root given: set 'root:' or ${self.env_var} to the folder of your rated dermatology images"]
        problems = []
        if not self.root.is_dir():
            problems.append(f"derm-ratings: image folder not found: {self.root}")
        for what, p in (("ratings CSV", self.ratings), ("MOS CSV", self.mos_csv), ("metadata CSV", self.metadata)):
            if p is not None and not p.is_file():
                problems.append(f"derm-ratings: {what} not found: {p}")
        return problems

    def load(self, ctx: DatasetContext | None) -> list[Record]:
        if self.root is None:
            raise DataError(self.check()[0])
        if self.ratings is not None:
            table, source = self._mos_from_ratings(), self.ratings
        else:
            table, source = self._read_mos(), self.mos_csv
        groups = self._groups(table, source)
        attrs = self._attrs(source)
        records = []
        for row in table.to_dict("records"):
            image = str(row["image"]).strip()
            std = parse_number(row.get("std"))
            records.append(
                Record(
                    id=image,
                    path=image,
                    mos=parse_number(row["mos"]),
                    group=groups.get(image, ""),
                    std=std if isinstance(std, float) and not math.isnan(std) else None,
                    attrs={m: attrs[m].get(image, attrs[m].get(Path(image).stem, "")) for m in self.metadata_columns},
                )
            )
        return records

    def _mos_from_ratings(self):
        from diqa_bench.mos import compute_mos, read_ratings

        raw = read_ratings(str(self.ratings))
        extra = {"min_correlation": self.min_rater_correlation} if self.min_rater_correlation is not None else {}
        table, report = compute_mos(raw, screening=self.use_screening, label=str(self.ratings), scale=self.mos_range,
                                    drop_raters=self.drop_raters, rescale_raters=self.rescale_raters, **extra)
        self.screening = report.as_dict()
        # for the human-agreement table; image names as the records name them
        self.rater_scores = report.kept[["image", "observer", "rating"]].assign(image=lambda t: t["image"].str.strip()).reset_index(drop=True)
        if self.group_column:
            full = read_table(self.ratings, "ratings CSV")
            if self.group_column in full.columns:
                per_image = full.groupby("image")[self.group_column].first()
                table[self.group_column] = table["image"].map(per_image)
        return table

    def _read_mos(self):
        table = read_table(self.mos_csv, "MOS CSV")
        require_columns(table, {"image": "image", "mos": "mos"}, self.mos_csv)
        return table

    def _attrs(self, source: Path) -> dict[str, dict[str, str]]:
        """column -> image -> text, from the metadata CSV if given, else the ratings/MOS CSV (first
        row of each image); the metadata CSV's names match with or without the extension."""
        if not self.metadata_columns:
            return {}
        path = self.metadata if self.metadata is not None else source
        meta = read_table(path, "metadata CSV" if self.metadata is not None else "CSV")
        image = self.image_column if self.metadata is not None else "image"
        require_columns(meta, {"image": image} | {f"metadata {m}": m for m in self.metadata_columns}, path)
        out = {}
        for m in self.metadata_columns:
            by_name: dict[str, str] = {}
            for i, v in zip(meta[image], meta[m]):
                by_name.setdefault(str(i).strip(), str(v).strip())
            if self.metadata is not None:
                by_name |= {Path(k).stem: v for k, v in by_name.items() if Path(k).stem not in by_name}
            out[m] = by_name
        return out

    def _groups(self, table, source: Path) -> dict[str, str]:
        col = self.group_column
        if not col:
            return {}
        if self.metadata is not None:
            meta = read_table(self.metadata, "metadata CSV")
            require_columns(meta, {"image": self.image_column, "patient": col}, self.metadata)
            by_name = {str(i).strip(): str(g).strip() for i, g in zip(meta[self.image_column], meta[col])}
            by_stem = {Path(k).stem: v for k, v in by_name.items()}
            images = [str(i).strip() for i in table["image"]]
            found = {i: by_name.get(i, by_stem.get(Path(i).stem)) for i in images}
            absent = [i for i, g in found.items() if g is None]
            if absent:
                raise DataError(f"{self.metadata}: {len(absent)} rated image(s) have no row in column {self.image_column!r} (first: {absent[0]!r})")
            return found
        if col not in table.columns:
            raise DataError(f"derm-ratings: patient column {col!r} is in neither {source} nor a metadata CSV")
        return {str(i).strip(): str(g).strip() for i, g in zip(table["image"], table[col])}

    def describe(self) -> dict[str, Any]:
        """Metadata summary for ``validate``: ratings, screening and patients are all computed from
        the CSVs (no image is opened), exactly as the run computes them."""
        from .tabular import summarise_records

        problems = self.check()
        if problems:
            raise DataError(problems[0])
        out = summarise_records(self.load(None), self.root, self.mos_range, "derm-ratings")
        if self.screening:
            out["screening"] = f"{len(self.screening['rejected'])} of {self.screening['observers']} raters rejected"
        return out
