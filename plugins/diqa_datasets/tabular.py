"""Generic dataset: a CSV file plus an image root, column names configurable."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError

RANGE_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
METADATA_SCHEMA = {"type": "array", "uniqueItems": True, "items": {"type": "string"},
                   "description": "columns read as per-image text attributes (body site, device...): scores.csv columns and strata"}


def read_table(path: Path, what: str):
    """Read a CSV as strings (values are parsed field by field, so a bad cell is named, not lost)."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path} cannot be read as CSV: {exc}") from None


def parse_number(text: Any) -> Any:
    """A CSV cell as float; blank -> NaN; anything else unparsable is returned as-is so that
    check_records reports it as 'not a number' instead of calling it blank."""
    if text is None:
        return math.nan
    s = str(text).strip()
    if s == "" or s.lower() in ("nan", "na", "n/a", "null", "none"):
        return math.nan
    try:
        return float(s)
    except ValueError:
        return s


def parse_level(text: Any) -> int | None:
    value = parse_number(text)
    if isinstance(value, float) and not math.isnan(value) and value == int(value):
        return int(value)
    return None


def require_columns(table, columns: dict[str, str | None], path: Path) -> None:
    missing = [f"{col!r} ({role})" for role, col in columns.items() if col and col not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column {', '.join(missing)}; found {', '.join(map(repr, table.columns))}")


class CsvDataset(Dataset):
    name = "csv"
    description = "Generic: a CSV (one row per image) plus an image root; MOS range and direction declared"
    options_schema: ClassVar[dict[str, Any]] = {
        "csv": {"type": "string", "description": "CSV file, one row per image"},
        "root": {"type": ["string", "null"], "description": "image folder (default: the CSV's folder)"},
        "image_column": {"type": "string"},
        "mos_column": {"type": "string"},
        "group_column": {"type": ["string", "null"], "description": "content group (reference image, patient)"},
        "split_column": {"type": ["string", "null"], "description": "fixed split: train / test"},
        "distortion_column": {"type": ["string", "null"]},
        "level_column": {"type": ["string", "null"]},
        "std_column": {"type": ["string", "null"]},
        "mos_range": RANGE_SCHEMA,
        "lower_better": {"type": "boolean", "description": "true for DMOS-style labels"},
        "metadata_columns": METADATA_SCHEMA,
    }
    required_options: ClassVar[list[str]] = ["csv", "mos_range"]

    def __init__(
        self,
        csv: str,
        mos_range: list[float],
        root: str | None = None,
        image_column: str = "image",
        mos_column: str = "mos",
        group_column: str | None = None,
        split_column: str | None = None,
        distortion_column: str | None = None,
        level_column: str | None = None,
        std_column: str | None = None,
        lower_better: bool = False,
        metadata_columns: list[str] = (),
    ) -> None:
        super().__init__(csv=csv, mos_range=mos_range, root=root)
        self.metadata_columns = [str(c) for c in metadata_columns]
        self.csv = Path(csv).expanduser()
        self.root = Path(root).expanduser() if root else self.csv.parent
        low, high = (float(v) for v in mos_range)
        if not low < high:
            raise DataError(f"mos_range must be [low, high] with low < high, got {list(mos_range)}")
        self.mos_range = (low, high)
        self.lower_better = bool(lower_better)
        self.columns = {
            "image": image_column,
            "mos": mos_column,
            "group": group_column,
            "split": split_column,
            "distortion": distortion_column,
            "level": level_column,
            "std": std_column,
        }

    def check(self) -> list[str]:
        problems = []
        if not self.csv.is_file():
            problems.append(f"csv: CSV file not found: {self.csv}")
        if not self.root.is_dir():
            problems.append(f"csv: image root not found: {self.root}")
        return problems

    def describe(self) -> dict[str, Any]:
        """Metadata summary for ``validate`` (the CSV is all there is to read: no image is opened)."""
        problems = self.check()
        if problems:
            raise DataError(problems[0])
        return summarise_records(self.load(None), self.root, self.mos_range, self.csv.name)

    def load(self, ctx: DatasetContext | None) -> list[Record]:
        table = read_table(self.csv, "CSV")
        require_columns(table, self.columns | {f"metadata {m}": m for m in self.metadata_columns}, self.csv)
        c = self.columns
        records = []
        for _, row in table.iterrows():
            image = str(row[c["image"]]).strip()
            std = parse_number(row[c["std"]]) if c["std"] else None
            records.append(
                Record(
                    id=image,
                    path=image,
                    mos=parse_number(row[c["mos"]]),
                    group=str(row[c["group"]]).strip() if c["group"] else "",
                    split=(str(row[c["split"]]).strip() or None) if c["split"] else None,
                    distortion=(str(row[c["distortion"]]).strip() or None) if c["distortion"] else None,
                    level=parse_level(row[c["level"]]) if c["level"] else None,
                    std=std if isinstance(std, float) and not math.isnan(std) else None,
                    attrs={m: str(row[m]).strip() for m in self.metadata_columns},
                )
            )
        return records


def summarise_records(records: list[Record], root: Path | None, mos_range: tuple[float, float], label: str, shown: int = 5) -> dict[str, Any]:
    """What ``diqa-bench validate`` reports about a dataset's metadata, without opening any image:
    rows per split, missing image files (count and the first few), MOS cells that are not numbers or
    lie outside the range, duplicate ids, paths that escape the image root. Existence is checked against one directory listing per
    folder, so 10,000 rows take a fraction of a second."""
    import os

    from diqa_bench.splits import check_split_labels

    splits = check_split_labels(records, label)
    listings: dict[Path, set[str]] = {}
    missing: list[str] = []
    bad_mos: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    escapes: list[str] = []
    real_root = os.path.realpath(root) if root is not None else None
    low, high = mos_range
    for r in records:
        path = Path(r.path)
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        folder = path.parent
        if real_root is not None and os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            escapes.append(r.path)  # the run skips it (or stops, under bad_input: error) as check_records does
        else:
            if folder not in listings:
                try:
                    listings[folder] = {e.name for e in os.scandir(folder) if e.is_file() and e.stat().st_size > 0}
                except OSError:
                    listings[folder] = set()
            if path.name not in listings[folder]:
                missing.append(r.path)
        mos = r.mos
        if not isinstance(mos, (int, float)) or math.isnan(mos) or not (low - 1e-9 <= mos <= high + 1e-9):
            bad_mos.append(f"{r.id} ({mos!r})")
        if r.id in seen:
            duplicates.append(r.id)
        seen.add(r.id)
    return {
        "rows": len(records),
        "splits": dict(splits),
        "groups": len({r.content_group for r in records}),
        "missing": len(missing),
        "missing_first": missing[:shown],
        "bad_mos": len(bad_mos),
        "bad_mos_first": bad_mos[:shown],
        "duplicates": len(duplicates),
        "duplicates_first": duplicates[:shown],
        "escapes": len(escapes),
        "escapes_first": escapes[:shown],
    }
