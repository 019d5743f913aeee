"""The embedded offline domains: deterministic generation, cache reuse, pseudo-MOS sanity."""

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from diqa_datasets.embedded import (
    SKIMAGE_PHOTOS,
    SkimageNaturalDataset,
    SyntheticSkinDataset,
)
from diqa_datasets.embedded.distortions import DISTORTIONS
from diqa_datasets.embedded.skin import synthetic_skin

from diqa_bench.datasets import DatasetContext, check_records
from diqa_bench.splits import split_records

SMALL = {"references": 2, "size": 64}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.parametrize("cls", [SyntheticSkinDataset, SkimageNaturalDataset])
def test_same_seed_gives_identical_bytes_and_mos(tmp_path, cls):
    a = cls(seed=3, **SMALL)
    b = cls(seed=3, **SMALL)
    recs_a = a.load(DatasetContext(tmp_path / "one"))
    recs_b = b.load(DatasetContext(tmp_path / "two"))
    assert recs_a == recs_b
    assert _digest(a.root) == _digest(b.root)
    assert len(recs_a) == 2 * (len(DISTORTIONS) * 5 + 1)
    other = cls(seed=4, **SMALL)
    other.load(DatasetContext(tmp_path / "one"))
    assert other.root != a.root
    if cls is SyntheticSkinDataset:  # a different seed draws different skin
        assert _digest(other.root) != _digest(a.root)


def test_reload_reuses_the_cache(tmp_path):
    ds = SyntheticSkinDataset(references=1, size=48, distortions=["jpeg"], levels=2)
    ctx = DatasetContext(tmp_path)
    first = ds.load(ctx)
    stamp = {p: p.stat().st_mtime_ns for p in ds.root.rglob("*.png")}
    again = SyntheticSkinDataset(references=1, size=48, distortions=["jpeg"], levels=2)
    assert again.load(ctx) == first and again.root == ds.root
    assert {p: p.stat().st_mtime_ns for p in again.root.rglob("*.png")} == stamp
    assert len(list((tmp_path / "synthetic-skin").iterdir())) == 1  # no leftover temporary folders


@pytest.mark.parametrize("cls", [SyntheticSkinDataset, SkimageNaturalDataset])
def test_records_are_valid_pseudo_mos_grouped_by_reference(tmp_path, cls):
    ds = cls(**SMALL)
    recs = check_records(ds.load(DatasetContext(tmp_path)), ds, cls.name).records
    assert ds.pseudo_mos and ds.mos_range == (1, 5) and not ds.lower_better
    assert "pseudo-MOS" in ds.description
    assert all(1 <= r.mos <= 5 for r in recs)
    assert {r.distortion for r in recs} == set(DISTORTIONS) | {None}
    pristine = [r for r in recs if r.distortion is None]
    assert len(pristine) == 2 and all(r.mos == 5.0 for r in pristine)
    assert all(r.level in range(1, 6) for r in recs if r.distortion)
    assert len({r.group for r in recs}) == 2
    train, test = split_records(recs, 0.5, seed=0)
    assert {r.group for r in train}.isdisjoint({r.group for r in test})


def test_pseudo_mos_falls_with_level(tmp_path):
    """Averaged over references, pseudo-MOS should drop level after level for (nearly) every distortion."""
    ds = SyntheticSkinDataset(references=2, size=96)
    means = defaultdict(lambda: defaultdict(list))
    for r in ds.load(DatasetContext(tmp_path)):
        if r.distortion:
            means[r.distortion][r.level].append(r.mos)
    monotone = [d for d, by in means.items() if all(np.mean(by[k]) > np.mean(by[k + 1]) for k in range(1, 5))]
    assert len(monotone) >= len(DISTORTIONS) - 1, f"not monotone: {sorted(set(DISTORTIONS) - set(monotone))}"
    for d, by in means.items():  # the most severe level is always clearly worse than the mildest
        assert np.mean(by[1]) - np.mean(by[5]) > 0.5, d


def test_skimage_photos_ship_in_the_wheel():
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    assert [p for p in SKIMAGE_PHOTOS if not (folder / p).is_file()] == []
    assert SkimageNaturalDataset.max_references == len(SKIMAGE_PHOTOS)
    assert SkimageNaturalDataset(references=len(SKIMAGE_PHOTOS)).check() == []


def test_missing_skimage_photo_is_reported_by_check(monkeypatch, tmp_path):
    monkeypatch.setattr(SkimageNaturalDataset, "photo_path", staticmethod(lambda name: tmp_path / name))
    problems = SkimageNaturalDataset(references=2).check()
    assert len(problems) == 2 and "astronaut.png" in problems[0] and "scikit-image" in problems[0]


def test_skimage_natural_never_calls_the_downloading_fetchers(tmp_path, monkeypatch):
    import skimage.data

    def no_download(*args, **kwargs):
        raise AssertionError("skimage.data fetcher called: it may download")

    monkeypatch.setattr(skimage.data, "_fetch", no_download, raising=False)
    ds = SkimageNaturalDataset(references=len(SKIMAGE_PHOTOS), size=32, distortions=["jpeg"], levels=1)
    recs = ds.load(DatasetContext(tmp_path))
    assert len({r.group for r in recs}) == len(SKIMAGE_PHOTOS)


def test_too_many_skimage_references_is_a_clear_error():
    from diqa_bench.errors import DataError

    with pytest.raises(DataError, match="only 10 photos ship with scikit-image"):
        SkimageNaturalDataset(references=11)


def test_synthetic_skin_tones_span_fitzpatrick_types():
    rng = np.random.default_rng
    brightness = [float(np.median(synthetic_skin(rng(t), 96, t))) for t in range(1, 7)]  # median: skin, not lesions
    assert brightness == sorted(brightness, reverse=True)  # type I lightest .. VI darkest
    names = SyntheticSkinDataset(references=6).reference_names()
    assert [n.rsplit("fitzpatrick", 1)[1] for n in names] == ["1", "2", "3", "4", "5", "6"]
    assert all("synthetic" in n for n in names)
