"""The embedded default domains: no download, no network.

``skimage-natural``: pristine photos bundled inside scikit-image's wheel; ``synthetic-skin``:
procedurally generated synthetic skin images. Both are degraded with teledermatology distortions
at 5 levels and labelled with a pseudo-MOS (full-reference metric ensemble, 1-5). Generated once,
deterministically from the seed, into ``<cache>/<dataset>/<hash of options + generator version>/``;
a later load with the same options reuses the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError

from .names import DISTORTION_NAMES, LEVELS

# Bump when generated pixels or labels change: the cache folder name includes it.
GENERATOR_VERSION = "2"
RECORDS_FILE = "records.json"

# Photos that ship inside the scikit-image wheel (skimage/data/), in order of use. Read straight from
# the package folder: skimage.data's fetchers would try a download for images that are not bundled.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "coins.png",
    "moon.png",
)


class EmbeddedDataset(Dataset):
    """A generated domain: references x distortions x levels (+ the pristine references)."""

    kind: ClassVar[str] = ""  # what the progress bar says it generates
    max_references: ClassVar[int | None] = None
    mos_range = (1.0, 5.0)
    lower_better = False
    pseudo_mos = True

    options_schema: ClassVar[dict[str, Any]] = {
        "seed": {"type": "integer", "description": "generator seed (same seed: identical images and pseudo-MOS)"},
        "references": {"type": "integer", "minimum": 1, "description": "pristine reference images"},
        "size": {"type": "integer", "minimum": 32, "maximum": 2048, "description": "image side in pixels"},
        "distortions": {"type": "array", "items": {"enum": list(DISTORTION_NAMES)}, "minItems": 1},
        "levels": {"type": "integer", "minimum": 1, "maximum": LEVELS, "description": "levels per distortion (1..levels)"},
        "include_pristine": {"type": "boolean", "description": "also list the undistorted references (pseudo-MOS 5)"},
    }

    def __init__(
        self,
        seed: int = 0,
        references: int = 8,
        size: int = 256,
        distortions: list[str] | None = None,
        levels: int = LEVELS,
        include_pristine: bool = True,
    ) -> None:
        distortions = list(distortions) if distortions is not None else list(DISTORTION_NAMES)
        unknown = [d for d in distortions if d not in DISTORTION_NAMES]
        if unknown:
            raise DataError(f"{self.name}: unknown distortion {unknown[0]!r}; known: {', '.join(DISTORTION_NAMES)}")
        if self.max_references is not None and references > self.max_references:
            raise DataError(f"{self.name}: references={references}, but only {self.max_references} photos ship with scikit-image")
        super().__init__(seed=seed, references=references, size=size, distortions=distortions, levels=levels, include_pristine=include_pristine)
        self.seed, self.references, self.size = int(seed), int(references), int(size)
        self.distortions, self.levels, self.include_pristine = distortions, int(levels), bool(include_pristine)

    # -- what a subclass provides --------------------------------------------------------------
    def reference_names(self) -> list[str]:
        raise NotImplementedError

    def make_reference(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Pristine image ``index`` as float32 RGB [size, size, 3] in [0, 1]."""
        raise NotImplementedError

    # -- generation and cache ------------------------------------------------------------------
    def cache_key(self) -> str:
        from diqa_bench.cache import stable_hash

        return stable_hash({"dataset": self.name, "generator": GENERATOR_VERSION, **self.options})

    def folder(self, ctx: DatasetContext) -> Path:
        return Path(ctx.cache_dir) / self.name / self.cache_key()

    def load(self, ctx: DatasetContext) -> list[Record]:
        folder = self.folder(ctx)
        self.root = folder
        if not (folder / RECORDS_FILE).is_file():
            self._generate(folder, ctx.progress)
        rows = json.loads((folder / RECORDS_FILE).read_text())["records"]
        return [Record(**row) for row in rows]

    def _generate(self, folder: Path, progress: bool) -> None:
        from PIL import Image
        from tqdm import tqdm

        from .distortions import DISTORTIONS
        from .pseudo_mos import pseudo_mos

        folder.parent.mkdir(parents=True, exist_ok=True)
        # Write into a temporary sibling and rename at the end: an interrupted generation never
        # leaves a half-filled folder that a later run would trust.
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        names = self.reference_names()
        per_ref = len(self.distortions) * self.levels + (1 if self.include_pristine else 0)
        bar = tqdm(total=len(names) * per_ref, desc=f"generating {self.kind} ({self.name})", unit="img", disable=not progress)
        rows: list[dict[str, Any]] = []
        try:
            for index, ref_name in enumerate(names):
                ref = self.make_reference(index, np.random.default_rng([self.seed, index, 0]))
                ref_u8 = (np.clip(ref, 0, 1) * 255 + 0.5).astype(np.uint8)
                ref_float = ref_u8.astype(np.float32) / 255.0  # distort what is stored, not the float source
                (tmp / ref_name).mkdir()
                if self.include_pristine:
                    rows.append(self._save(tmp, ref_name, "pristine", ref_u8, 5.0, None, None, Image))
                    bar.update()
                for d_index, dist in enumerate(self.distortions):
                    d_seed = DISTORTION_NAMES.index(dist) + 1  # stable when the distortion list is filtered
                    for level in range(1, self.levels + 1):
                        rng = np.random.default_rng([self.seed, index, d_seed, level])
                        out = DISTORTIONS[dist](ref_float, level, rng)
                        mos, _ = pseudo_mos(ref_u8, out)
                        rows.append(self._save(tmp, ref_name, f"{dist}_{level}", out, mos, dist, level, Image))
                        bar.update()
            payload = {
                "dataset": self.name,
                "generator_version": GENERATOR_VERSION,
                "options": self.options,
                "labels": "pseudo-MOS 1-5 from PSNR, SSIM and GMSD against the pristine reference",
                "records": rows,
            }
            (tmp / RECORDS_FILE).write_text(json.dumps(payload, indent=1))
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished the same folder first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            bar.close()

    @staticmethod
    def _save(tmp: Path, ref_name: str, stem: str, pixels: np.ndarray, mos: float, dist, level, Image) -> dict[str, Any]:
        rel = f"{ref_name}/{stem}.png"
        Image.fromarray(pixels).save(tmp / rel, format="PNG", compress_level=1)
        return {"id": rel, "path": rel, "mos": round(float(mos), 6), "group": ref_name, "distortion": dist, "level": level}


class SkimageNaturalDataset(EmbeddedDataset):
    name = "skimage-natural"
    kind = "distorted natural photos"
    description = (
        "Natural photos bundled with scikit-image, with 9 teledermatology distortions x 5 levels; "
        "labels are pseudo-MOS (full-reference metric ensemble), not human ratings"
    )
    max_references = len(SKIMAGE_PHOTOS)

    @staticmethod
    def photo_path(filename: str) -> Path:
        import skimage

        return Path(skimage.__file__).parent / "data" / filename

    def check(self) -> list[str]:
        return [
            f"{self.name}: {self.photo_path(f)} is missing from the scikit-image installation (it ships in the wheel; reinstall scikit-image)"
            for f in SKIMAGE_PHOTOS[: self.references]
            if not self.photo_path(f).is_file()
        ]

    def reference_names(self) -> list[str]:
        return [Path(p).stem for p in SKIMAGE_PHOTOS[: self.references]]

    def make_reference(self, index: int, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        path = self.photo_path(SKIMAGE_PHOTOS[index])
        if not path.is_file():
            raise DataError(self.check()[0])
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((self.size, self.size), Image.Resampling.LANCZOS)
            return np.asarray(img, dtype=np.float32) / 255.0


class SyntheticSkinDataset(EmbeddedDataset):
    name = "synthetic-skin"
    kind = "synthetic skin images"
    synthetic = True  # generated images, not photographs: the leaderboard says so
    description = (
        "Synthetic skin images (procedural: Fitzpatrick I-VI tones, pores, hair, lesions), with 9 teledermatology "
        "distortions x 5 levels; labels are pseudo-MOS (full-reference metric ensemble), not human ratings"
    )

    def reference_names(self) -> list[str]:
        return [f"synthetic_skin_{i:03d}_fitzpatrick{self.skin_type(i)}" for i in range(self.references)]

    @staticmethod
    def skin_type(index: int) -> int:
        return index % 6 + 1  # cycle I..VI so every default set spans all six types

    def make_reference(self, index: int, rng: np.random.Generator) -> np.ndarray:
        from .skin import synthetic_skin

        return synthetic_skin(rng, self.size, self.skin_type(index))
