"""The embedded default domains: no download, no network.

``skin-photos``: real healthy-skin photographs shipped inside this package (CC BY 4.0, see
``skin_photos/NOTICE``); ``synthetic-skin``: procedurally generated skin; ``natural-photos``: the
photos that installed packages bundle (scikit-image, scikit-learn, matplotlib, pyiqa), read in place;
``skimage-natural``: the scikit-image subset of those. Each reference is degraded with
teledermatology camera distortions (the skin datasets also with the acquisition artefacts of
dermatology photos: bubbles, fluid, rulers, ink, hair, framing, several at once) and labelled with
a pseudo-MOS (full-reference metric ensemble, 1-5).
Generated once, deterministically from the seed, into
``<cache>/<dataset>/<hash of options + generator version + references>/``; a later load with the
same options reuses the files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from diqa_bench.datasets import Dataset, DatasetContext, Record
from diqa_bench.errors import DataError

from .names import CAMERA_DISTORTIONS, DISTORTION_NAMES, LEVELS
from .photos import NATURAL_PHOTOS, SKIMAGE_PHOTOS, BundledPhoto

# Bump when generated pixels or labels change: the cache folder name includes it.
GENERATOR_VERSION = "5"
RECORDS_FILE = "records.json"
SKIN_PHOTOS_DIR = Path(__file__).resolve().parent / "skin_photos"
SKIN_PHOTOS_LICENCE = "CC BY 4.0, Legit.Health AGPPGA study, doi:10.5281/zenodo.17975532"
# Below this many references a generation is parallelised over processes: a pool's start-up
# (about a second per spawned worker) costs more than it saves on a handful of small images.
PARALLEL_MIN_IMAGES = 200


@dataclass(frozen=True)
class Reference:
    """One pristine reference: its content group and where its pixels come from."""

    key: int  # seeds the random parts of its distortions: stable when other references come or go
    group: str
    real: bool  # a photograph (True) or generated (False)
    source: str  # file path, or how it was generated


def _levels(value: int | list[int]) -> list[int]:
    return list(range(1, int(value) + 1)) if isinstance(value, int) else sorted({int(v) for v in value})


class EmbeddedDataset(Dataset):
    """A generated domain: references x distortions x levels (+ the pristine references)."""

    kind: ClassVar[str] = ""  # what the progress bar says it generates
    # what the ``distortions`` option means when left out (any dataset may name any distortion)
    default_distortions: ClassVar[tuple[str, ...]] = CAMERA_DISTORTIONS
    default_references: ClassVar[int | None] = None  # None: every available reference
    mos_range = (1.0, 5.0)
    lower_better = False
    pseudo_mos = True

    options_schema: ClassVar[dict[str, Any]] = {
        "seed": {"type": "integer", "description": "generator seed (same seed: identical images and pseudo-MOS)"},
        "references": {"type": "integer", "minimum": 1, "description": "pristine reference images (content groups)"},
        "size": {"type": "integer", "minimum": 32, "maximum": 2048, "description": "image side in pixels"},
        "distortions": {
            "type": "array", "items": {"enum": list(DISTORTION_NAMES)}, "minItems": 1,
            "description": "distortions to apply (default: the camera distortions; the skin datasets add the acquisition artefacts)",
        },
        "levels": {
            "description": f"levels per distortion: a count n (levels 1..n) or a list of levels out of 1..{LEVELS}",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": LEVELS},
                {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": LEVELS}, "minItems": 1, "uniqueItems": True},
            ],
        },
        "include_pristine": {"type": "boolean", "description": "also list the undistorted references (pseudo-MOS 5)"},
    }

    def __init__(
        self,
        seed: int = 0,
        references: int | None = None,
        size: int = 256,
        distortions: list[str] | None = None,
        levels: int | list[int] = LEVELS,
        include_pristine: bool = True,
    ) -> None:
        distortions = list(distortions) if distortions is not None else list(self.default_distortions)
        unknown = [d for d in distortions if d not in DISTORTION_NAMES]
        if unknown:
            raise DataError(f"{self.name}: unknown distortion {unknown[0]!r}; known: {', '.join(DISTORTION_NAMES)}")
        level_list = _levels(levels)
        if not level_list or level_list[0] < 1 or level_list[-1] > LEVELS:
            raise DataError(f"{self.name}: levels must lie in 1..{LEVELS}, got {levels!r}")
        if references is None:
            references = self.default_references
        options = {"seed": seed, "size": size, "distortions": distortions, "levels": levels, "include_pristine": include_pristine}
        if references is not None:
            options["references"] = int(references)
        super().__init__(**options)
        self.seed, self.size = int(seed), int(size)
        self.references = None if references is None else int(references)
        self.distortions, self.levels, self.include_pristine = distortions, level_list, bool(include_pristine)

    # -- what a subclass provides --------------------------------------------------------------
    def reference_list(self) -> list[Reference]:
        """The references this dataset generates from, in order."""
        raise NotImplementedError

    def make_reference(self, ref: Reference, rng: np.random.Generator) -> np.ndarray:
        """Pristine image of ``ref`` as float32 RGB [size, size, 3] in [0, 1]."""
        raise NotImplementedError

    @property
    def references_note(self) -> str:
        """How many references, real or generated, and where from: one phrase for reports (the
        leaderboard joins a domain's with " + ")."""
        refs = self.reference_list()
        real = sum(r.real for r in refs)
        parts = [f"{real} real photos"] if real else []
        if len(refs) - real:
            parts.append(f"{len(refs) - real} synthetic")
        return " + ".join(parts)

    # -- generation and cache ------------------------------------------------------------------
    def reference_names(self) -> list[str]:
        return [r.group for r in self.reference_list()]

    def cache_key(self) -> str:
        from diqa_bench.cache import stable_hash

        # The references are part of the key: another package version that ships fewer photos
        # generates into another folder instead of reusing a set it could not rebuild.
        return stable_hash({"dataset": self.name, "generator": GENERATOR_VERSION, "references_used": self.reference_names(), **self.options})

    def folder(self, ctx: DatasetContext) -> Path:
        return Path(ctx.cache_dir) / self.name / self.cache_key()

    def images_per_reference(self) -> int:
        return len(self.distortions) * len(self.levels) + (1 if self.include_pristine else 0)

    def load(self, ctx: DatasetContext) -> list[Record]:
        problems = self.check()
        if problems:
            raise DataError("; ".join(problems))
        folder = self.folder(ctx)
        self.root = folder
        if not (folder / RECORDS_FILE).is_file():
            self._generate(folder, ctx.progress)
        payload = json.loads((folder / RECORDS_FILE).read_text())
        self.groups = payload.get("groups", {})
        return [Record(**row) for row in payload["records"]]

    def _generate(self, folder: Path, progress: bool) -> None:
        from tqdm import tqdm

        folder.parent.mkdir(parents=True, exist_ok=True)
        # Write into a temporary sibling and rename at the end: an interrupted generation never
        # leaves a half-filled folder that a later run would trust.
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        refs = self.reference_list()
        per_ref = self.images_per_reference()
        bar = tqdm(total=len(refs) * per_ref, desc=f"generating {self.kind} ({self.name})", unit="img", disable=not progress)
        processes = min(len(refs), _cpu_count()) if len(refs) * per_ref * (self.size / 256) ** 2 >= PARALLEL_MIN_IMAGES else 1
        try:
            by_ref: list[list[dict[str, Any]] | None] = [None] * len(refs)
            if processes > 1:
                self.generate_in_pool(refs, tmp, processes, by_ref, lambda: bar.update(per_ref))
            for i, ref in enumerate(refs):  # everything, or what a failed pool left undone
                if by_ref[i] is None:
                    shutil.rmtree(tmp / ref.group, ignore_errors=True)
                    by_ref[i] = _generate_reference(self, ref, str(tmp))
                    bar.update(per_ref)
            payload = {
                "dataset": self.name,
                "generator_version": GENERATOR_VERSION,
                "options": self.options,
                "labels": "pseudo-MOS 1-5 from MS-SSIM, GMSD and FSIMc's chroma similarity against the pristine reference (not human ratings)",
                "groups": {r.group: {"real": r.real, "source": r.source} for r in refs},
                "records": [row for rows in by_ref for row in rows],
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

    def generate_in_pool(self, refs: list[Reference], tmp: Path, processes: int, by_ref: list, done) -> None:
        """Fill ``by_ref`` from a process pool. A pool that cannot start or breaks (a script
        without a ``__main__`` guard, a killed worker) leaves the rest to the serial loop."""
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import get_context

        try:
            # spawn, not fork: the caller may already run torch's thread pools
            with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_generate_reference, self, ref, str(tmp)): i for i, ref in enumerate(refs)}
                for fut in as_completed(futures):
                    by_ref[futures[fut]] = fut.result()
                    done()
        except (BrokenProcessPool, RuntimeError, OSError):
            pass

    def _generate_one(self, ref: Reference, tmp: Path) -> list[dict[str, Any]]:
        from .distortions import DISTORTIONS
        from .pseudo_mos import pseudo_mos

        pristine = self.make_reference(ref, np.random.default_rng([self.seed, ref.key, 0]))
        ref_u8 = (np.clip(pristine, 0, 1) * 255 + 0.5).astype(np.uint8)
        ref_float = ref_u8.astype(np.float32) / 255.0  # distort what is stored, not the float source
        (tmp / ref.group).mkdir(exist_ok=True)
        rows = []
        if self.include_pristine:
            rows.append(_save(tmp, ref.group, "pristine", ref_u8, 5.0, None, None))
        for dist in self.distortions:
            d_seed = DISTORTION_NAMES.index(dist) + 1  # stable when the distortion list is filtered
            for level in self.levels:
                # the same draws at every level: a level changes how severe one artefact is (the
                # same bubbles, grown), not which one, so labels fall with the level
                rng = np.random.default_rng([self.seed, ref.key, d_seed])
                out = DISTORTIONS[dist](ref_float, level, rng)
                mos, _ = pseudo_mos(ref_u8, out)
                rows.append(_save(tmp, ref.group, f"{dist}_{level}", out, mos, dist, level))
        return rows


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _generate_reference(dataset: EmbeddedDataset, ref: Reference, tmp: str) -> list[dict[str, Any]]:
    """One reference's images and records (module level: a process pool can call it)."""
    return dataset._generate_one(ref, Path(tmp))


def _save(tmp: Path, group: str, stem: str, pixels: np.ndarray, mos: float, dist, level) -> dict[str, Any]:
    from PIL import Image

    rel = f"{group}/{stem}.png"
    Image.fromarray(pixels).save(tmp / rel, format="PNG", compress_level=1)
    return {"id": rel, "path": rel, "mos": round(float(mos), 6), "group": group, "distortion": dist, "level": level}


def square_photo(path: Path, size: int) -> np.ndarray:
    """The largest centred square of a photo (EXIF orientation applied), resized to ``size``."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(img, dtype=np.float32) / 255.0


class PhotoDataset(EmbeddedDataset):
    """References read from photo files; a missing photo is left out and reported."""

    min_references: ClassVar[int] = 1
    # Content groups a domain needs for the default benchmark's power (6 or more test groups per
    # split seed at test_ratio 0.3); fewer still run, with a note that intervals will be wider.
    target_references: ClassVar[int | None] = None
    requirement: ClassVar[str] = ""  # what to install or reinstall when photos are missing

    def catalogue(self) -> list[tuple[str, Path | None]]:
        """(group, path or None when this installation lacks the file), for every known photo."""
        raise NotImplementedError

    def missing(self) -> list[str]:
        return [group for group, path in self.catalogue() if path is None]

    def reference_list(self) -> list[Reference]:
        refs = [Reference(key, group, True, str(path)) for key, (group, path) in enumerate(self.catalogue()) if path is not None]
        return refs[: self.references] if self.references is not None else refs

    def check(self) -> list[str]:
        missing = self.missing()
        found = len(self.catalogue()) - len(missing)
        needed = max(self.references or 0, self.min_references)
        if found >= needed:
            return []
        return [(
            f"{self.name}: only {found} of its {len(self.catalogue())} photos are installed, {needed} needed; "
            f"missing: {', '.join(missing)} ({self.requirement})"
        )]

    @property
    def notes(self) -> list[str]:
        """Photos this installation lacks (left out, the rest is used): one line for reports."""
        gone = self.missing()
        notes = [f"{self.name}: {len(gone)} photo(s) not installed, left out: {', '.join(gone)} ({self.requirement})"] if gone else []
        used = len(self.reference_list())
        if self.target_references and used < self.target_references:
            notes.append(f"{self.name}: {used} content groups, fewer than the {self.target_references} the default benchmark is sized for; its intervals will be wider")
        return notes

    def make_reference(self, ref: Reference, rng: np.random.Generator) -> np.ndarray:
        path = Path(ref.source)
        if not path.is_file():
            raise DataError(f"{self.name}: photo {path} disappeared during generation ({self.requirement})")
        return square_photo(path, self.size)


class NaturalPhotosDataset(PhotoDataset):
    name = "natural-photos"
    kind = "distorted natural photos"
    target_references = 20
    requirement = "they ship in the wheels of scikit-image, scikit-learn, matplotlib and pyiqa; reinstall those"
    photos: ClassVar[tuple[BundledPhoto, ...]] = NATURAL_PHOTOS
    description = (
        "Natural photos bundled with installed packages (scikit-image, scikit-learn, matplotlib, pyiqa; read in place, "
        "one content group each), with teledermatology distortions; labels are pseudo-MOS (full-reference metric "
        "ensemble), not human ratings"
    )

    def catalogue(self) -> list[tuple[str, Path | None]]:
        return [(p.group, p.locate()) for p in self.photos]

    @classmethod
    def licences(cls, options=None):
        from diqa_bench.licences import from_distribution

        dists = sorted({p.distribution for p in cls.photos})
        return [from_distribution("data", d, what=f"photos shipped with {d}") for d in dists]

    @property
    def references_note(self) -> str:
        refs = self.reference_list()
        sources = sorted({p.distribution for p in self.photos if p.group in {r.group for r in refs}})
        return f"{len(refs)} real photos (bundled with {', '.join(sources)})"


class SkimageNaturalDataset(NaturalPhotosDataset):
    name = "skimage-natural"
    requirement = "they ship in scikit-image's wheel; reinstall scikit-image"
    photos = SKIMAGE_PHOTOS
    default_references = 8
    target_references = None
    description = (
        "Natural photos bundled with scikit-image, with teledermatology distortions; "
        "labels are pseudo-MOS (full-reference metric ensemble), not human ratings"
    )


class SkinPhotosDataset(PhotoDataset):
    name = "skin-photos"
    default_distortions = DISTORTION_NAMES
    kind = "distorted real skin photos"
    requirement = f"they ship inside diqa-bench's package, in {SKIN_PHOTOS_DIR}; reinstall diqa-bench"
    description = (
        "Real healthy-skin photographs (phones and cameras; " + SKIN_PHOTOS_LICENCE + "), shipped downscaled "
        "inside the package, one content group each, with teledermatology distortions and acquisition artefacts "
        "(bubbles, fluid, rulers, ink, hair, framing); labels are pseudo-MOS "
        "(full-reference metric ensemble), not human ratings"
    )
    photo_count: ClassVar[int] = 19

    @classmethod
    def licences(cls, options=None):
        from diqa_bench.licences import from_notice

        return [from_notice("data", "19 healthy-skin photos (Legit.Health AGPPGA)", SKIN_PHOTOS_DIR / "NOTICE")]

    def catalogue(self) -> list[tuple[str, Path | None]]:
        out = []
        for i in range(1, self.photo_count + 1):
            path = SKIN_PHOTOS_DIR / f"image_{i:04d}.jpg"
            out.append((f"real_skin_{i:04d}", path if path.is_file() else None))
        return out

    @property
    def references_note(self) -> str:
        return f"{len(self.reference_list())} real photos ({SKIN_PHOTOS_LICENCE})"


class SyntheticSkinDataset(EmbeddedDataset):
    name = "synthetic-skin"
    kind = "synthetic skin images"
    default_references = 8
    synthetic = True  # generated images, not photographs: the leaderboard says so
    default_distortions = DISTORTION_NAMES
    description = (
        "Synthetic skin images (procedural: Fitzpatrick I-VI tones, pores, hair, lesions), with teledermatology "
        "distortions and acquisition artefacts; labels are pseudo-MOS (full-reference metric ensemble), not human ratings"
    )

    @classmethod
    def licences(cls, options=None):
        from diqa_bench.licences import from_distribution

        return [from_distribution("data", "diqa-bench", what="generated by diqa-bench's code")]

    def reference_list(self) -> list[Reference]:
        return [
            Reference(i, f"synthetic_skin_{i:03d}_fitzpatrick{self.skin_type(i)}", False, f"procedural, Fitzpatrick type {self.skin_type(i)}")
            for i in range(self.references or 0)
        ]

    @property
    def references_note(self) -> str:
        return f"{self.references or 0} synthetic (procedural skin, Fitzpatrick I-VI)"

    @staticmethod
    def skin_type(index: int) -> int:
        return index % 6 + 1  # cycle I..VI so every default set spans all six types

    def make_reference(self, ref: Reference, rng: np.random.Generator) -> np.ndarray:
        from .skin import synthetic_skin

        return synthetic_skin(rng, self.size, self.skin_type(ref.key))
