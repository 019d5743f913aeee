"""The public IQA databases, read in the layouts pyiqa has used.

pyiqa keeps one ``meta_info_<Name>Dataset.csv`` per database (in ``datasets/meta_info/``, next to
the database folders) and images under a fixed sub-folder of each database. ``root`` is the
database's own folder (e.g. ``datasets/koniq10k``); the meta-info CSV is looked for in the root,
in ``root/meta_info`` and in ``root/../meta_info`` (pyiqa's layout), or given with ``meta_info``.

Columns are found by their header names where pyiqa's files (or the databases' own files) name
them, and otherwise by position, as pyiqa reads them: no-reference files are (image, mos, ...),
full-reference files (reference, distorted, mos, ...). Conventions that differ per database:

- KonIQ-10k: ``mos`` is MOS_zscore (0-100), ``std`` the SD of the 1-5 ratings (rescaled to the
  MOS's scale here). The split has been written three ways: ``split`` 0/1/2 (the 2022 file),
  ``split`` training/validation/test, and ``official_split`` train/val/test (current pyiqa).
- SPAQ: no std column (its ``Brightness`` column is an image attribute, not a spread).
- KADID-10k: pyiqa's ``std`` column (and the database's own ``var``) holds the variance: std is its
  square root. The database's own ``dmos.csv`` lists the distorted image first; pyiqa's lists the
  reference first; both are read by their header names.
- CSIQ: ``<reference>.<TYPE>.<level>.png`` gives distortion and level; DMOS, lower is better.
- LIVE Challenge: the first 7 rows (the study's training images) are left out, as pyiqa does.

Splits: ``official_split: true`` uses the database's own split column; ``split_index`` picks a
pyiqa split column by name (or, as an integer, ``ratio<split_ratio>_seed123_split_<NN>``);
``split_file`` reads a pyiqa split pickle (``{index: {'train': [...], 'val': [...], 'test': [...]}}``)
without executing code. Validation images are neither trained on nor tested on unless
``validation: train`` / ``validation: test`` says otherwise.

No-reference use: only the distorted images are read. For the synthetic-distortion databases
(KADID-10k, CSIQ, TID2013) the content group is the reference image, so no reference straddles a
train/test split (a split file that does is refused unless ``allow_group_leak: true``).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError
from diqa_bench.splits import labels_from_split_file, read_split_file, split_label

from .tabular import parse_number, read_table, summarise_records

PYIQA_META_URL = "https://huggingface.co/datasets/chaofengc/IQA-PyTorch-Datasets-metainfo"

IMAGE_NAMES = ("img_name", "image_name", "image name", "image", "name", "dist_name", "dist_img", "distorted_image")
REF_NAMES = ("ref_name", "ref_img", "reference", "reference_image")
MOS_NAMES = ("mos", "dmos", "mos_zscore", "score")
SPLIT_OPTION = {"type": ["integer", "string", "null"], "description": "pyiqa split: a split column's name, an integer (ratio<split_ratio>_seed123_split_NN column, or the key in split_file)"}


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


class PublicIQADataset(Dataset):
    """One pyiqa-layout database. Subclasses fill in the class attributes."""

    title: ClassVar[str] = ""
    source: ClassVar[str] = ""  # where the database comes from (URL, paper)
    meta_file: ClassVar[str] = ""
    image_dir: ClassVar[str] = ""
    image_dirs: ClassVar[tuple[str, ...]] = ()  # alternative image folders a user may pick (KonIQ's two sizes)
    full_reference: ClassVar[bool] = False  # meta rows are (ref, dist, mos[, std]) instead of (img, mos[, std])
    default_range: ClassVar[tuple[float, float]] = (0.0, 100.0)
    default_lower_better: ClassVar[bool] = False
    std_names: ClassVar[tuple[str, ...]] = ("std",)  # header names holding the raters' spread
    std_is_variance: ClassVar[bool] = False  # the 'std' column holds a variance (KADID-10k)
    default_resize: ClassVar[int | None] = None  # pyiqa's test-time resize (short side), as its dataset config applies

    options_schema: ClassVar[dict[str, Any]] = {
        "root": {"type": ["string", "null"], "description": "the database folder (else the environment variable)"},
        "meta_info": {"type": ["string", "null"], "description": "pyiqa meta-info CSV (default: found next to root)"},
        "image_dir": {"type": ["string", "null"], "description": "image sub-folder of root (default: pyiqa's)"},
        "official_split": {"type": "boolean", "description": "use the database's own train/val/test split column"},
        "split_file": {"type": ["string", "null"], "description": "pyiqa split pickle (e.g. spaq_seed123.pkl); read without executing code"},
        "split_index": SPLIT_OPTION,
        "split_ratio": {"type": "string", "description": "ratio part of pyiqa's numbered split columns (default 802)"},
        "validation": {"enum": ["exclude", "train", "test"], "description": "where validation images go (default: neither side)"},
        "allow_group_leak": {"type": "boolean", "description": "accept a given split that puts one reference image on both sides"},
        "resize": {"type": ["integer", "null"], "minimum": 16, "description": "resize to this short side before scoring (pyiqa's augment.resize); null: originals"},
    }

    def __init__(
        self,
        root: str | None = None,
        meta_info: str | None = None,
        image_dir: str | None = None,
        official_split: bool = False,
        split_file: str | None = None,
        split_index: int | str | None = None,
        split_ratio: str = "802",
        validation: str = "exclude",
        allow_group_leak: bool = False,
        resize: int | None | str = "default",
    ) -> None:
        super().__init__(root=root, meta_info=meta_info, image_dir=image_dir, official_split=official_split, split_file=split_file,
                         split_index=split_index, split_ratio=split_ratio, validation=validation, allow_group_leak=allow_group_leak, resize=resize)
        given = root or os.environ.get(self.env_var())
        self.base = Path(given).expanduser() if given else None
        self.meta_info = Path(meta_info).expanduser() if meta_info else None
        self.image_subdir = image_dir if image_dir is not None else self.image_dir
        if self.image_dirs and self.image_subdir not in self.image_dirs:
            raise DataError(f"{self.name}: image_dir {image_dir!r} is not one of {', '.join(map(repr, self.image_dirs))}")
        self.official_split = official_split
        self.split_file = Path(split_file).expanduser() if split_file else None
        if self.split_file is not None and not self.split_file.is_absolute() and self.base is not None and not self.split_file.exists():
            self.split_file = self.base / self.split_file
        self.split_index = split_index
        self.split_ratio = str(split_ratio)
        self.validation = validation
        self.allow_group_leak = allow_group_leak
        self.resize = self.default_resize if resize == "default" else resize
        self.root = self.base / self.image_subdir if self.base else None
        self.image_root = self.root  # the originals (root moves to the resized copies after a resize)
        self.mos_range = self.default_range
        self.lower_better = self.default_lower_better
        self.preprocessing: dict[str, Any] | None = None
        self.split_source: str | None = None

    @classmethod
    def env_var(cls) -> str:
        return "DIQA_" + cls.name.upper().replace("-", "_") + "_ROOT"

    def _where(self) -> str:
        return f"{self.title} comes from {self.source}; pyiqa meta-info CSVs: {PYIQA_META_URL}"

    def _meta_candidates(self) -> list[Path]:
        if self.meta_info is not None:
            return [self.meta_info if self.meta_info.is_absolute() or self.base is None else self.base / self.meta_info]
        assert self.base is not None
        return [self.base / self.meta_file, self.base / "meta_info" / self.meta_file, self.base.parent / "meta_info" / self.meta_file]

    def _meta_path(self) -> Path | None:
        return next((p for p in self._meta_candidates() if p.is_file()), None)

    def check(self) -> list[str]:
        if self.base is None:
            return [f"{self.name}: no root given: set 'root:' or ${self.env_var()} to the {self.title} folder. {self._where()}"]
        problems = []
        if not self.base.is_dir():
            problems.append(f"{self.name}: root folder not found: {self.base}. {self._where()}")
            return problems
        if self._meta_path() is None:
            tried = ", ".join(str(p) for p in self._meta_candidates())
            problems.append(f"{self.name}: meta-info file {self.meta_file} not found (looked at {tried}). {self._where()}")
        if not self.image_root.is_dir():
            problems.append(f"{self.name}: image folder not found: {self.image_root}. {self._where()}")
        if self.split_file is not None and not self.split_file.is_file():
            problems.append(f"{self.name}: split file not found: {self.split_file}")
        return problems

    # -- reading the metadata (no image is opened) --------------------------------------------------
    def read_records(self) -> list[Record]:
        """The records as the meta-info file and the split options describe them; paths are
        relative to the original image folder. Raises a one-line DataError on any problem."""
        problems = self.check()
        if problems:
            raise DataError(problems[0])
        meta = self._meta_path()
        table = read_table(meta, f"{self.title} meta-info file")
        cols = self._columns(table, meta)
        split_col = self._split_column(table, meta)
        images = [str(v).strip() for v in table[cols["image"]]]
        refs = [str(v).strip() for v in table[cols["ref"]]] if cols.get("ref") else [""] * len(images)
        mos = [parse_number(v) for v in table[cols["mos"]]]
        stds = [self._std(v) for v in table[cols["std"]]] if cols.get("std") else [None] * len(images)
        splits = [self._label(v, meta, i) for i, v in enumerate(table[split_col])] if split_col else [None] * len(images)
        names = self._folder_names()
        records = [
            Record(id=img, path=self._image_path(img, names), mos=m, group=ref, split=sp, std=sd)
            for img, ref, m, sd, sp in zip(images, refs, mos, stds, splits)
        ]
        records = self._adjust(records)
        if self.split_file is not None:
            index = self.split_index if self.split_index is not None else 1
            phases = read_split_file(self.split_file, index)
            labels = labels_from_split_file(len(records), phases, f"{self.name}: split file {self.split_file.name}, split {index!r}")
            records = [replace(r, split=self._validation(lab)) for r, lab in zip(records, labels)]
            self.split_source = f"split file {self.split_file.name}, split {index!r}"
        elif split_col:
            self.split_source = f"column {split_col!r} of {meta.name}"
        self._check_groups(records)
        return records

    def _columns(self, table, meta: Path) -> dict[str, str | None]:
        columns = list(table.columns)
        mos_at = 2 if self.full_reference else 1
        if len(columns) < mos_at + 1:
            want = "reference, distorted image, mos" if self.full_reference else "image, mos"
            raise DataError(f"{meta}: expected at least {mos_at + 1} columns ({want}), found {len(columns)}: {', '.join(map(repr, columns))}")
        first = str(columns[0]).strip().lower()
        if not isinstance(parse_number(columns[mos_at]), str) or first.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
            raise DataError(f"{meta}: the first line ({', '.join(map(str, columns))}) is data, not a header; pyiqa's CSVs start with a header row (e.g. {self._header_hint()})")
        image = _find(columns, IMAGE_NAMES)
        ref = _find(columns, REF_NAMES) if self.full_reference else None
        mos = _find(columns, MOS_NAMES)
        if self.full_reference:
            if image is None or ref is None or image == ref:
                ref, image = columns[0], columns[1]
        elif image is None:
            image = columns[0]
        if mos is None:
            mos = columns[mos_at]
        std = _find(columns, self.std_names)
        variance = _find(columns, ("var", "variance"))
        self._std_from_variance = self.std_is_variance or (std is None and variance is not None)
        return {"image": image, "ref": ref, "mos": mos, "std": std if std is not None else variance}

    def _header_hint(self) -> str:
        return "ref_name,dist_name,dmos" if self.full_reference else "img_name,mos,std"

    def _std(self, value: Any) -> float | None:
        v = parse_number(value)
        if not isinstance(v, float) or math.isnan(v) or v < 0:
            return None
        return math.sqrt(v) if self._std_from_variance else v

    def _split_column(self, table, meta: Path) -> str | None:
        columns = list(table.columns)
        split_cols = [c for c in columns if "split" in str(c).lower()]
        if self.split_file is not None:
            return None
        if self.split_index is not None:
            name = self.split_index if isinstance(self.split_index, str) else f"ratio{self.split_ratio}_seed123_split_{int(self.split_index):02d}"
            if name not in columns:
                raise DataError(f"{self.name}: split {name!r} is not a column of {meta}; split columns there: {', '.join(map(repr, split_cols)) or 'none'}")
            return name
        if not self.official_split:
            return None
        for name in ("official_split", "split"):
            if name in columns:
                return name
        raise DataError(f"{self.name}: official_split is set but {meta} has no 'official_split' or 'split' column; split columns there: {', '.join(map(repr, split_cols)) or 'none'}")

    def _label(self, value: Any, meta: Path, row: int) -> str:
        canon = split_label(value)
        if canon is None:
            raise DataError(f"{meta}: row {row + 2}: split value {value!r} is not train/val/test (or 0/1/2, training/validation)")
        return self._validation(canon)

    def _validation(self, label: str) -> str:
        return self.validation if label == "val" and self.validation != "exclude" else label

    def _check_groups(self, records: list[Record]) -> None:
        if self.allow_group_leak or not self.full_reference:
            return
        sides: dict[str, set[str]] = {}
        for r in records:
            if r.split in ("train", "test"):
                sides.setdefault(r.content_group, set()).add(r.split)
        leaked = sorted(g for g, s in sides.items() if len(s) == 2)
        if leaked:
            raise DataError(f"{self.name}: the given split puts reference image {leaked[0]!r} on both train and test sides ({len(leaked)} references do);"
                            " set allow_group_leak: true to reproduce it anyway")

    def _folder_names(self) -> set[str] | None:
        return None

    def _image_path(self, image: str, names: set[str] | None) -> str:
        return image

    def _adjust(self, records: list[Record]) -> list[Record]:
        return records

    # -- the dataset contract ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Metadata summary for ``diqa-bench validate``: the run's own reading, minus the images."""
        records = self.read_records()
        out = summarise_records(records, self.image_root, self.mos_range, self.name)
        if self.split_source:
            out["split_source"] = self.split_source
        if self.resize:
            out["preprocessing"] = f"resize to a {self.resize}-pixel short side"
        return out

    def load(self, ctx: DatasetContext) -> list[Record]:
        records = self.read_records()
        if self.resize:
            from .preprocess import resize_records

            records, self.root, self.preprocessing = resize_records(records, self.image_root, ctx.cache_dir / "resized" / self.name, int(self.resize))
        return records


class KonIQ10k(PublicIQADataset):
    name = "koniq10k"
    title = "KonIQ-10k"
    description = "KonIQ-10k: 10,073 in-the-wild photos, crowd MOS (pyiqa layout, 512x384 images; image_dir: 1024x768 for the originals)"
    source = "https://database.mmsp-kn.de/koniq-10k-database.html (Hosu et al., IEEE TIP 2020)"
    meta_file = "meta_info_KonIQ10kDataset.csv"
    image_dir = "512x384"
    image_dirs = ("512x384", "1024x768")

    def _adjust(self, records: list[Record]) -> list[Record]:
        # KonIQ's MOS ships on two scales: 1-5 (MOS) and 0-100 (MOS_zscore, what pyiqa's meta-info
        # holds). Declare the one the file uses, so normalisation maps it correctly.
        values = [r.mos for r in records if isinstance(r.mos, float) and r.mos == r.mos]
        if values and max(values) <= 5.0:
            self.mos_range = (1.0, 5.0)
        return records

    def read_records(self) -> list[Record]:
        self.mos_range = self.default_range
        records = super().read_records()
        if self.mos_range == self.default_range:
            # the std column is the SD of the 1-5 ratings; on the 0-100 MOS_zscore it spans 25 times as much
            records = [replace(r, std=r.std * 25.0) if r.std is not None else r for r in records]
        return records


class SPAQ(PublicIQADataset):
    name = "spaq"
    title = "SPAQ"
    description = "SPAQ: 11,125 smartphone photos, MOS 0-100 (pyiqa layout, TestImage folder); resized to a 448-pixel short side as pyiqa does"
    source = "https://github.com/h4nwei/SPAQ (Fang et al., CVPR 2020)"
    meta_file = "meta_info_SPAQDataset.csv"
    image_dir = "TestImage"
    std_names = ()  # no rater spread is published; 'Brightness' is an image attribute
    default_resize = 448


class LIVEChallenge(PublicIQADataset):
    name = "livec"
    title = "LIVE In the Wild (LIVE Challenge)"
    description = "LIVE In the Wild Image Quality Challenge: 1,162 authentic photos, MOS 0-100 (pyiqa layout)"
    source = "https://live.ece.utexas.edu/research/ChallengeDB/index.html (Ghadiyaram & Bovik, IEEE TIP 2016)"
    meta_file = "meta_info_LIVEChallengeDataset.csv"
    image_dir = ""

    def _image_path(self, image: str, names: set[str] | None) -> str:
        # The meta-info names images relative to the database folder; the release keeps them in Images/.
        if self.root is not None and not (self.root / image).is_file() and (self.root / "Images" / image).is_file():
            return str(Path("Images") / image)
        return image

    def _adjust(self, records: list[Record]) -> list[Record]:
        # The first 7 images are the study's training images, left out by convention (as pyiqa does,
        # before a split file's row numbers are applied).
        return records[7:]


_KADID_NAME = re.compile(r"^[A-Za-z]?\d+_(\d+)_(\d+)$")


class KADID10k(PublicIQADataset):
    name = "kadid10k"
    title = "KADID-10k"
    description = "KADID-10k: 81 references x 25 synthetic distortions x 5 levels, MOS 1-5; group = reference"
    source = "https://database.mmsp-kn.de/kadid-10k-database.html (Lin et al., QoMEX 2019)"
    meta_file = "meta_info_KADID10kDataset.csv"
    image_dir = "images"
    full_reference = True
    default_range = (1.0, 5.0)
    std_is_variance = True  # pyiqa's 'std' column is dmos.csv's 'var'

    def _adjust(self, records: list[Record]) -> list[Record]:
        # Names are I<ref>_<type>_<level>.png: keep distortion type and level.
        out = []
        for r in records:
            m = _KADID_NAME.match(Path(r.id).stem)
            out.append(replace(r, distortion=f"kadid{int(m.group(1)):02d}", level=int(m.group(2))) if m else r)
        return out


_CSIQ_NAME = re.compile(r"^(?P<ref>.+?)\.(?P<type>[A-Za-z][A-Za-z0-9]*)\.(?P<level>\d+)$")


class CSIQ(PublicIQADataset):
    name = "csiq"
    title = "CSIQ"
    description = "CSIQ: 30 references, 866 distorted images, DMOS 0-1 (lower is better); group = reference"
    source = "https://s2.smu.edu/~eclarson/csiq.html (Larson & Chandler, J. Electronic Imaging 2010)"
    meta_file = "meta_info_CSIQDataset.csv"
    image_dir = "dst_imgs"
    full_reference = True
    default_range = (0.0, 1.0)
    default_lower_better = True

    def _folder_names(self) -> set[str] | None:
        try:
            return {e.name for e in os.scandir(self.image_root) if e.is_dir()}
        except OSError:
            return None

    def _image_path(self, image: str, names: set[str] | None) -> str:
        # pyiqa's copy keeps every distorted image in dst_imgs/; the CSIQ release sorts them into one
        # sub-folder per distortion (dst_imgs/awgn/1600.AWGN.1.png).
        m = _CSIQ_NAME.match(Path(image).stem)
        if m and names and m.group("type").lower() in names and not (self.image_root / image).is_file():
            return f"{m.group('type').lower()}/{image}"
        return image

    def _adjust(self, records: list[Record]) -> list[Record]:
        # Names are <reference>.<TYPE>.<level>.png (1600.AWGN.1.png): distortion AWGN, level 1.
        out = []
        for r in records:
            m = _CSIQ_NAME.match(Path(r.id).stem)
            if m:
                r = replace(r, distortion=m.group("type").lower(), level=int(m.group("level")), group=r.group or m.group("ref"))
            out.append(r)
        return out


class TID2013(PublicIQADataset):
    name = "tid2013"
    title = "TID2013"
    description = "TID2013: 25 references, 3,000 distorted images, MOS 0-9; group = reference"
    source = "https://www.ponomarenko.info/tid2013.htm (Ponomarenko et al., Signal Processing: Image Communication 2015)"
    meta_file = "meta_info_TID2013Dataset.csv"
    image_dir = "distorted_images"
    full_reference = True
    default_range = (0.0, 9.0)

    def _adjust(self, records: list[Record]) -> list[Record]:
        # Names are i<ref>_<type>_<level>.bmp; references are named case-insensitively across releases.
        out = []
        for r in records:
            m = _KADID_NAME.match(Path(r.id).stem)
            group = r.group.lower()
            out.append(replace(r, group=group, distortion=f"tid{int(m.group(1)):02d}", level=int(m.group(2))) if m else replace(r, group=group))
        return out


PUBLIC_DATASETS = [KonIQ10k, SPAQ, LIVEChallenge, KADID10k, CSIQ, TID2013]
