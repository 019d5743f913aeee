"""Photos that installed packages bundle, read in place (never downloaded, never copied).

One content group per photo. Each entry names the distribution that ships the file and its path
inside site-packages, so a photo is found without importing the package (``import pyiqa`` alone
costs seconds). A file that another version of a package does not ship is reported, not fatal.

Left out on purpose: scikit-image's ``motorcycle_right`` (the same scene as ``motorcycle_left``),
``clock_motion`` (already motion-blurred), ``microaneurysms`` (102 px), drawings and renderings
(``color``, ``horse``, ``logo``, ``chessboard_*``, ``phantom``), document scans (``page``, ``text``),
the nearly blank ``cell`` micrograph, and pyiqa's ``SPAQ_10241.jpg`` (a dark, noisy night shot from
a quality database: not a pristine reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class BundledPhoto:
    group: str  # content group name, stable across package versions
    distribution: str  # the PyPI distribution whose wheel ships the file
    path: str  # inside site-packages
    module: str | None = None  # importable package that holds the file, for installs without metadata

    def locate(self) -> Path | None:
        """The file's path, or None when this installation does not have it."""
        for candidate in (_from_metadata(self.distribution, self.path), _from_module(self.module, self.path)):
            if candidate is not None and candidate.is_file():
                return candidate
        return None


def _from_metadata(distribution: str, path: str) -> Path | None:
    root = _dist_root(distribution)
    return None if root is None else root / path


@lru_cache(maxsize=None)
def _dist_root(distribution: str) -> Path | None:
    from importlib import metadata

    try:
        return Path(metadata.distribution(distribution).locate_file(""))
    except metadata.PackageNotFoundError:
        return None


def _from_module(module: str | None, path: str) -> Path | None:
    if module is None:
        return None
    from importlib.util import find_spec

    try:
        spec = find_spec(module)  # a top-level package: found without being imported
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).parent / path


def _skimage(name: str, file: str) -> BundledPhoto:
    return BundledPhoto(f"skimage_{name}", "scikit-image", f"skimage/data/{file}", "skimage")


NATURAL_PHOTOS: tuple[BundledPhoto, ...] = (
    _skimage("astronaut", "astronaut.png"),
    _skimage("chelsea", "chelsea.png"),
    _skimage("coffee", "coffee.png"),
    _skimage("motorcycle", "motorcycle_left.png"),
    _skimage("rocket", "rocket.jpg"),
    _skimage("camera", "camera.png"),
    _skimage("hubble_deep_field", "hubble_deep_field.jpg"),
    _skimage("retina", "retina.jpg"),
    _skimage("coins", "coins.png"),
    _skimage("moon", "moon.png"),
    _skimage("brick", "brick.png"),
    _skimage("grass", "grass.png"),
    _skimage("gravel", "gravel.png"),
    _skimage("ihc", "ihc.png"),
    BundledPhoto("sklearn_china", "scikit-learn", "sklearn/datasets/images/china.jpg", "sklearn"),
    BundledPhoto("sklearn_flower", "scikit-learn", "sklearn/datasets/images/flower.jpg", "sklearn"),
    BundledPhoto("matplotlib_grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "matplotlib"),
    # pyiqa's wheel also installs two top-level data folders: reference images of its calibration
    # results (TID2013/KADID pristine scenes) and the photos of its efficiency test.
    *(BundledPhoto(f"pyiqa_ref_{n}", "pyiqa", f"ResultsCalibra/ref_dir/{n}.bmp") for n in ("I03", "I04", "I06", "I08", "I19")),
    *(
        BundledPhoto(f"pyiqa_{n}", "pyiqa", f"tests/test_efficiency_img_dir/frame_{n}.jpg")
        for n in ("4wrwr48cdk6rbcjl", "7gzdcz9sif0ekg31", "9ogwhvvy7gfj6jzh")
    ),
)

SKIMAGE_PHOTOS: tuple[BundledPhoto, ...] = tuple(p for p in NATURAL_PHOTOS if p.distribution == "scikit-image")
