"""The public IQA databases, read in the layout pyiqa uses.

pyiqa keeps one ``meta_info_<Name>Dataset.csv`` per database (in ``datasets/meta_info/``, next to
the database folders) and images under a fixed sub-folder of each database. ``root`` is the
database's own folder (e.g. ``datasets/koniq10k``); the meta-info CSV is looked for in the root,
in ``root/meta_info`` and in ``root/../meta_info`` (pyiqa's layout), or given with ``meta_info``.

No-reference use: only the distorted images are read. For the synthetic-distortion databases
(KADID-10k, CSIQ, TID2013) the content group is the reference image, so no reference straddles a
train/test split.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError

from .tabular import parse_number, read_table

PYIQA_META_URL = "https://huggingface.co/datasets/chaofengc/IQA-PyTorch-Datasets-metainfo"


class PublicIQADataset(Dataset):
    """One pyiqa-layout database. Subclasses fill in the class attributes."""

    title: ClassVar[str] = ""
    source: ClassVar[str] = ""  # where the database comes from (URL, paper)
    meta_file: ClassVar[str] = ""
    image_dir: ClassVar[str] = ""
    full_reference: ClassVar[bool] = False  # meta rows are (ref, dist, mos[, std]) instead of (img, mos[, std])
    default_range: ClassVar[tuple[float, float]] = (0.0, 100.0)
    default_lower_better: ClassVar[bool] = False

    options_schema: ClassVar[dict[str, Any]] = {
        "root": {"type": ["string", "null"], "description": "the database folder (else the environment variable)"},
        "meta_info": {"type": ["string", "null"], "description": "pyiqa meta-info CSV (default: found next to root)"},
        "official_split": {"type": "boolean", "description": "use the database's own train/test split column"},
    }

    def __init__(self, root: str | None = None, meta_info: str | None = None, official_split: bool = False) -> None:
        super().__init__(root=root, meta_info=meta_info, official_split=official_split)
        given = root or os.environ.get(self.env_var())
        self.base = Path(given).expanduser() if given else None
        self.meta_info = Path(meta_info).expanduser() if meta_info else None
        self.official_split = official_split
        self.root = self.base / self.image_dir if self.base else None
        self.mos_range = self.default_range
        self.lower_better = self.default_lower_better

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
        if not self.root.is_dir():
            problems.append(f"{self.name}: image folder not found: {self.root}. {self._where()}")
        return problems

    def load(self, ctx: DatasetContext) -> list[Record]:
        problems = self.check()
        if problems:
            raise DataError(problems[0])
        meta = self._meta_path()
        table = read_table(meta, f"{self.title} meta-info file")
        needed = 3 if self.full_reference else 2
        if table.shape[1] < needed:
            raise DataError(f"{meta}: expected at least {needed} columns ({'ref, dist, mos' if self.full_reference else 'image, mos'}), found {table.shape[1]}")
        split_col = self._split_column(table, meta)
        records = []
        for row in table.itertuples(index=False):
            if self.full_reference:
                ref, image, mos = str(row[0]).strip(), str(row[1]).strip(), row[2]
                std = row[3] if len(row) > 3 else None
            else:
                ref, image, mos = "", str(row[0]).strip(), row[1]
                std = row[2] if len(row) > 2 else None
            std = parse_number(std) if std is not None else None
            records.append(
                Record(
                    id=image,
                    path=self._image_path(image),
                    mos=parse_number(mos),
                    group=ref,
                    split=str(getattr(row, split_col)).strip() if split_col else None,
                    std=std if isinstance(std, float) and not math.isnan(std) else None,
                )
            )
        return self._adjust(records)

    def _split_column(self, table, meta: Path) -> str | None:
        if not self.official_split:
            return None
        if "split" not in table.columns:
            raise DataError(f"{self.name}: official_split is set but {meta} has no 'split' column")
        return "split"

    def _image_path(self, image: str) -> str:
        return image

    def _adjust(self, records: list[Record]) -> list[Record]:
        return records


class KonIQ10k(PublicIQADataset):
    name = "koniq10k"
    title = "KonIQ-10k"
    description = "KonIQ-10k: 10,073 in-the-wild photos, crowd MOS (pyiqa layout, 512x384 images)"
    source = "https://database.mmsp-kn.de/koniq-10k-database.html (Hosu et al., IEEE TIP 2020)"
    meta_file = "meta_info_KonIQ10kDataset.csv"
    image_dir = "512x384"

    def _adjust(self, records: list[Record]) -> list[Record]:
        # KonIQ's MOS ships on two scales: 1-5 (MOS) and 0-100 (MOS_zscore, what pyiqa's meta-info
        # holds). Declare the one the file uses, so normalisation maps it correctly.
        values = [r.mos for r in records if isinstance(r.mos, float) and r.mos == r.mos]
        if values and max(values) <= 5.0:
            self.mos_range = (1.0, 5.0)
        return records


class SPAQ(PublicIQADataset):
    name = "spaq"
    title = "SPAQ"
    description = "SPAQ: 11,125 smartphone photos, MOS 0-100 (pyiqa layout, TestImage folder)"
    source = "https://github.com/h4nwei/SPAQ (Fang et al., CVPR 2020)"
    meta_file = "meta_info_SPAQDataset.csv"
    image_dir = "TestImage"


class LIVEChallenge(PublicIQADataset):
    name = "livec"
    title = "LIVE In the Wild (LIVE Challenge)"
    description = "LIVE In the Wild Image Quality Challenge: 1,162 authentic photos, MOS 0-100 (pyiqa layout)"
    source = "https://live.ece.utexas.edu/research/ChallengeDB/index.html (Ghadiyaram & Bovik, IEEE TIP 2016)"
    meta_file = "meta_info_LIVEChallengeDataset.csv"
    image_dir = ""

    def _image_path(self, image: str) -> str:
        # The meta-info names images relative to the database folder; the release keeps them in Images/.
        if self.root is not None and not (self.root / image).is_file() and (self.root / "Images" / image).is_file():
            return str(Path("Images") / image)
        return image

    def _adjust(self, records: list[Record]) -> list[Record]:
        # The first 7 images are the study's training images, left out by convention (as pyiqa does).
        return records[7:]


class KADID10k(PublicIQADataset):
    name = "kadid10k"
    title = "KADID-10k"
    description = "KADID-10k: 81 references x 25 synthetic distortions x 5 levels, MOS 1-5; group = reference"
    source = "https://database.mmsp-kn.de/kadid-10k-database.html (Lin et al., QoMEX 2019)"
    meta_file = "meta_info_KADID10kDataset.csv"
    image_dir = "images"
    full_reference = True
    default_range = (1.0, 5.0)

    def _adjust(self, records: list[Record]) -> list[Record]:
        # Names are I<ref>_<type>_<level>.png: keep distortion type and level.
        from dataclasses import replace

        out = []
        for r in records:
            parts = Path(r.id).stem.split("_")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                r = replace(r, distortion=f"kadid{int(parts[1]):02d}", level=int(parts[2]))
            out.append(r)
        return out


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
        from dataclasses import replace

        out = []
        for r in records:
            parts = Path(r.id).stem.split("_")
            group = r.group.lower()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                r = replace(r, group=group, distortion=f"tid{int(parts[1]):02d}", level=int(parts[2]))
            else:
                r = replace(r, group=group)
            out.append(r)
        return out


PUBLIC_DATASETS = [KonIQ10k, SPAQ, LIVEChallenge, KADID10k, CSIQ, TID2013]
