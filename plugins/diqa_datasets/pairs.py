"""``pairs``: paired-preference (2AFC) data, evaluation only.

Two layouts:
- ``csv`` (default): a CSV with one row per pair, columns ``better`` and ``worse`` (image paths
  relative to ``root``) and optional ``group`` (content group: pairs of one scene or patient are
  resampled together) and ``category``;
- ``with-without``: a folder tree of crops where ``<name>`` with a ``with`` token in its file name
  shows an artefact and the same name with ``without`` in that place is the repaired crop (the
  better image): ``<id>_with_03.png`` / ``<id>_without_03.png``, ``<id>_03_with.png`` /
  ``<id>_03_without.png``, ``<id>_with.png`` / ``<id>_without.png``. The group is the crop's folder
  (one source image); categories come from ``categories_csv`` (a column naming the group and one
  naming the category), as in the HAM10000 artefact set's ``artefact_labels.csv``. Files without a
  ``with`` / ``without`` token are not pairs and are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.datasets import DatasetContext, Record
from diqa_bench.errors import DataError
from diqa_bench.pairs import Pair, PairDataset, records_for_pairs

from .tabular import read_table, require_columns

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SHOWN = 5  # missing files named in one line; the rest counted


class PairsDataset(PairDataset):
    name = "pairs"
    description = "Paired preference (2AFC), evaluation only: pairs of images where one is known to be better"
    options_schema: ClassVar[dict[str, Any]] = {
        "csv": {"type": ["string", "null"], "description": "pairs CSV: better, worse[, group][, category] (layout csv)"},
        "root": {"type": ["string", "null"], "description": "image folder (default: the CSV's folder); the crop tree for with-without"},
        "layout": {"enum": ["csv", "with-without"], "description": "csv: a pairs CSV; with-without: crops named *with* / *without* in a folder tree"},
        "categories_csv": {"type": ["string", "null"], "description": "with-without: CSV mapping a group (folder name) to a category"},
        "categories_group_column": {"type": "string", "description": "column of categories_csv naming the group (default image_id)"},
        "categories_column": {"type": "string", "description": "column of categories_csv naming the category (default artefact_class)"},
    }

    @classmethod
    def licences(cls, options=None):
        """The notice found in the image folder or up to three folders above it (e.g. HAM10000
        artefact crops: CC BY-NC 4.0), else unknown."""
        from diqa_bench.licences import Licence, find_notice, from_notice

        options = options or {}
        folder = options.get("root") or (str(Path(options["csv"]).expanduser().parent) if options.get("csv") else None)
        notice = find_notice(folder) if folder else None
        if notice is None:
            return [Licence("data", f"pairs in {folder or '(no folder)'}", source="no LICENSE or NOTICE file found")]
        return [from_notice("data", f"pairs in {folder}", notice)]

    def __init__(self, csv: str | None = None, root: str | None = None, layout: str = "csv", categories_csv: str | None = None,
                 categories_group_column: str = "image_id", categories_column: str = "artefact_class") -> None:
        super().__init__(csv=csv, root=root, layout=layout, categories_csv=categories_csv)
        self.layout = layout
        self.csv = Path(csv).expanduser() if csv else None
        if layout == "csv":
            if self.csv is None:
                raise DataError("pairs: layout 'csv' needs 'csv:' (a CSV with better, worse[, group][, category] columns)")
            self.root = Path(root).expanduser() if root else self.csv.parent
        else:
            if not root:
                raise DataError("pairs: layout 'with-without' needs 'root:' (the folder of *_with* / *_without* crops)")
            self.root = Path(root).expanduser()
        self.categories_csv = Path(categories_csv).expanduser() if categories_csv else None
        self.category_columns = (categories_group_column, categories_column)
        self.pairs: list[Pair] = []

    # -- reading ---------------------------------------------------------------------------------
    def _csv_pairs(self) -> list[Pair]:
        table = read_table(self.csv, "pairs CSV")
        require_columns(table, {"better image": "better", "worse image": "worse"}, self.csv)
        pairs = []
        for i, row in table.iterrows():
            better, worse = str(row["better"]).strip(), str(row["worse"]).strip()
            if not better or not worse:
                raise DataError(f"{self.csv}: row {i + 2}: blank 'better' or 'worse' path")
            if better == worse:
                raise DataError(f"{self.csv}: row {i + 2}: 'better' and 'worse' are the same image {better!r}")
            group = str(row["group"]).strip() if "group" in table.columns else ""
            category = str(row["category"]).strip() if "category" in table.columns else ""
            pairs.append(Pair(better, worse, group, category))
        if not pairs:
            raise DataError(f"{self.csv}: no pairs (the CSV has a header but no rows)")
        return pairs

    def _tree_pairs(self) -> tuple[list[Pair], list[str]]:
        """Pairs found under root, and the crops whose partner is missing."""
        categories = self._categories()
        pairs, orphans = [], []
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        present = {p.relative_to(self.root).as_posix() for p in files}
        for path in files:
            tokens = path.stem.split("_")
            rel = path.relative_to(self.root).as_posix()
            for role, other in (("with", "without"), ("without", "with")):
                if role not in tokens:
                    continue
                k = tokens.index(role)
                partner = path.with_name("_".join(tokens[:k] + [other] + tokens[k + 1:]) + path.suffix).relative_to(self.root).as_posix()
                if partner not in present:
                    orphans.append(f"{rel} (no {partner})")
                elif role == "with":
                    group = path.parent.name if path.parent != self.root else path.stem
                    pairs.append(Pair(better=partner, worse=rel, group=group, category=categories.get(group, "")))
        return pairs, orphans

    def _categories(self) -> dict[str, str]:
        if self.categories_csv is None:
            return {}
        table = read_table(self.categories_csv, "categories CSV")
        gcol, ccol = self.category_columns
        require_columns(table, {"group": gcol, "category": ccol}, self.categories_csv)
        return {str(g).strip(): str(c).strip() for g, c in zip(table[gcol], table[ccol])}

    # -- the dataset contract ----------------------------------------------------------------------
    def check(self) -> list[str]:
        if self.layout == "csv" and not self.csv.is_file():
            return [f"csv: pairs CSV not found: {self.csv}"]
        if not self.root.is_dir():
            return [f"root: image folder not found: {self.root}"]
        if self.categories_csv is not None and not self.categories_csv.is_file():
            return [f"categories_csv: file not found: {self.categories_csv}"]
        try:
            if self.layout == "csv":
                pairs, orphans = self._csv_pairs(), []
            else:
                pairs, orphans = self._tree_pairs()
        except DataError as exc:
            return [str(exc)]
        problems = []
        missing = sorted({p for pair in pairs for p in (pair.better, pair.worse) if not (self.root / p).is_file()})
        if missing:
            problems.append(f"{len(missing)} image file(s) missing under {self.root}: " + ", ".join(missing[:SHOWN])
                            + (f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""))
        if orphans:
            problems.append(f"{len(orphans)} crop(s) without their with/without partner: " + ", ".join(orphans[:SHOWN])
                            + (f" and {len(orphans) - SHOWN} more" if len(orphans) > SHOWN else ""))
        if self.layout == "with-without" and not pairs and not orphans:
            problems.append(f"root: no *_with* / *_without* image pairs found under {self.root}")
        return problems

    def load(self, ctx: DatasetContext) -> list[Record]:
        if self.layout == "csv":
            self.pairs = self._csv_pairs()
        else:
            self.pairs, orphans = self._tree_pairs()
            if orphans:
                raise DataError(f"{len(orphans)} crop(s) without their with/without partner, e.g. {orphans[0]}")
            if not self.pairs:
                raise DataError(f"no *_with* / *_without* image pairs found under {self.root}")
        images = {p for pair in self.pairs for p in (pair.better, pair.worse)}
        return records_for_pairs(self.pairs, {p: p for p in images})
