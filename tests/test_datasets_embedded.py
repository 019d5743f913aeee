"""The embedded offline domains: deterministic generation, cache reuse, pseudo-MOS sanity, the
shipped real-skin photos, the photos read from installed packages, and the default's power."""

import hashlib
import json
from collections import defaultdict
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from diqa_datasets import embedded
from diqa_datasets.embedded import (
    SKIN_PHOTOS_DIR,
    NaturalPhotosDataset,
    SkimageNaturalDataset,
    SkinPhotosDataset,
    SyntheticSkinDataset,
)
from diqa_datasets.embedded.distortions import DISTORTIONS
from diqa_datasets.embedded.names import CAMERA_DISTORTIONS
from diqa_datasets.embedded.photos import NATURAL_PHOTOS, SKIMAGE_PHOTOS, BundledPhoto
from diqa_datasets.embedded.skin import synthetic_skin

from diqa_bench.datasets import DatasetContext, check_records
from diqa_bench.errors import ConfigError
from diqa_bench.splits import split_groups, split_records

REPO = Path(__file__).resolve().parents[1]
SHARED_SKIN = REPO.parent / "shared" / "data" / "derm-healthy-skin-agppga" / "consented_images"
SMALL = {"references": 2, "size": 64}
ALL = [SyntheticSkinDataset, SkimageNaturalDataset, NaturalPhotosDataset, SkinPhotosDataset]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_gives_identical_bytes_and_mos(tmp_path, cls):
    a = cls(seed=3, **SMALL)
    b = cls(seed=3, **SMALL)
    recs_a = a.load(DatasetContext(tmp_path / "one"))
    recs_b = b.load(DatasetContext(tmp_path / "two"))
    assert recs_a == recs_b
    assert _digest(a.root) == _digest(b.root)
    # skin datasets get every distortion, the acquisition artefacts included; natural photos the camera ones
    expected = DISTORTIONS if cls in (SyntheticSkinDataset, SkinPhotosDataset) else CAMERA_DISTORTIONS
    assert len(recs_a) == 2 * (len(expected) * 5 + 1)
    other = cls(seed=4, **SMALL)
    other.load(DatasetContext(tmp_path / "one"))
    assert other.root != a.root
    if cls is SyntheticSkinDataset:  # a different seed draws different skin
        assert _digest(other.root) != _digest(a.root)


def test_process_pool_generates_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    opts = {"references": 3, "size": 48, "distortions": ["sensor_noise", "motion_blur"], "levels": [2]}
    monkeypatch.setattr(embedded, "PARALLEL_MIN_IMAGES", 10**9)
    serial = SkinPhotosDataset(**opts)
    recs_serial = serial.load(DatasetContext(tmp_path / "serial"))
    monkeypatch.setattr(embedded, "PARALLEL_MIN_IMAGES", 0)
    calls = []
    original = SkinPhotosDataset.generate_in_pool
    monkeypatch.setattr(SkinPhotosDataset, "generate_in_pool", lambda self, *a: calls.append(a[2]) or original(self, *a))
    pooled = SkinPhotosDataset(**opts)
    assert pooled.load(DatasetContext(tmp_path / "pooled")) == recs_serial
    assert calls and calls[0] >= 1
    assert _digest(pooled.root) == _digest(serial.root)


def test_reload_reuses_the_cache(tmp_path):
    ds = SyntheticSkinDataset(references=1, size=48, distortions=["jpeg"], levels=2)
    ctx = DatasetContext(tmp_path)
    first = ds.load(ctx)
    stamp = {p: p.stat().st_mtime_ns for p in ds.root.rglob("*.png")}
    again = SyntheticSkinDataset(references=1, size=48, distortions=["jpeg"], levels=2)
    assert again.load(ctx) == first and again.root == ds.root
    assert {p: p.stat().st_mtime_ns for p in again.root.rglob("*.png")} == stamp
    assert len(list((tmp_path / "synthetic-skin").iterdir())) == 1  # no leftover temporary folders


@pytest.mark.parametrize("cls", ALL)
def test_records_are_valid_pseudo_mos_grouped_by_reference(tmp_path, cls):
    ds = cls(**SMALL)
    recs = check_records(ds.load(DatasetContext(tmp_path)), ds, cls.name).records
    assert ds.pseudo_mos and ds.mos_range == (1, 5) and not ds.lower_better
    assert "pseudo-MOS" in ds.description and "not human ratings" in ds.description
    assert all(1 <= r.mos <= 5 for r in recs)
    assert {r.distortion for r in recs} == set(cls.default_distortions) | {None}
    pristine = [r for r in recs if r.distortion is None]
    assert len(pristine) == 2 and all(r.mos == 5.0 for r in pristine)
    assert all(r.level in range(1, 6) for r in recs if r.distortion)
    assert len({r.group for r in recs}) == 2
    train, test = split_records(recs, 0.5, seed=0)
    assert {r.group for r in train}.isdisjoint({r.group for r in test})


@pytest.mark.parametrize("cls, real", [(SkinPhotosDataset, True), (NaturalPhotosDataset, True), (SyntheticSkinDataset, False)])
def test_records_file_says_which_references_are_real(tmp_path, cls, real):
    ds = cls(references=2, size=40, distortions=["jpeg"], levels=1)
    recs = ds.load(DatasetContext(tmp_path))
    groups = json.loads((ds.root / embedded.RECORDS_FILE).read_text())["groups"]
    assert set(groups) == {r.group for r in recs} and ds.groups == groups
    assert [g["real"] for g in groups.values()] == [real, real]
    assert ds.synthetic is not real
    assert ("real photos" in ds.references_note) is real and ("synthetic" in ds.references_note) is not real
    if cls is SkinPhotosDataset:
        assert "CC BY 4.0" in ds.references_note and "10.5281/zenodo.17975532" in ds.description


def test_level_list_picks_those_levels(tmp_path):
    ds = SyntheticSkinDataset(references=1, size=48, distortions=["defocus_blur", "jpeg"], levels=[5, 1, 3])
    recs = ds.load(DatasetContext(tmp_path))
    assert sorted(r.level for r in recs if r.distortion == "jpeg") == [1, 3, 5]
    assert len(recs) == 2 * 3 + 1 == ds.images_per_reference()
    full = SyntheticSkinDataset(references=1, size=48, distortions=["defocus_blur", "jpeg"], levels=5).load(DatasetContext(tmp_path))
    # the same level of the same reference gives the same image whether or not other levels are generated
    pick = {(r.distortion, r.level): r.mos for r in full}
    assert all(pick[(r.distortion, r.level)] == r.mos for r in recs if r.distortion)


def test_levels_option_schema_accepts_a_count_or_a_list_of_levels():
    from diqa_bench.config import validate_options

    schema = SyntheticSkinDataset.options_schema
    validate_options({"levels": 3}, schema, [], "o", "f.yaml")
    validate_options({"levels": [1, 3, 5]}, schema, [], "o", "f.yaml")
    for bad in (6, [0, 2], [1, 1], []):
        with pytest.raises(ConfigError):
            validate_options({"levels": bad}, schema, [], "o", "f.yaml")


def test_pseudo_mos_falls_with_level(tmp_path):
    """Averaged over references, pseudo-MOS should drop level after level for (nearly) every distortion."""
    ds = SyntheticSkinDataset(references=2, size=96, distortions=list(CAMERA_DISTORTIONS))
    means = defaultdict(lambda: defaultdict(list))
    for r in ds.load(DatasetContext(tmp_path)):
        if r.distortion:
            means[r.distortion][r.level].append(r.mos)
    monotone = [d for d, by in means.items() if all(np.mean(by[k]) > np.mean(by[k + 1]) for k in range(1, 5))]
    assert len(monotone) >= len(CAMERA_DISTORTIONS) - 1, f"not monotone: {sorted(set(CAMERA_DISTORTIONS) - set(monotone))}"
    for d, by in means.items():  # the most severe level is always clearly worse than the mildest
        assert np.mean(by[1]) - np.mean(by[5]) > 0.5, d


# -- real skin photos shipped in the package -------------------------------------------------------
def test_real_skin_photos_ship_small_upright_and_clean_with_a_notice():
    from PIL import Image

    photos = sorted(SKIN_PHOTOS_DIR.glob("*.jpg"))
    assert [p.name for p in photos] == [f"image_{i:04d}.jpg" for i in range(1, 20)]
    assert sum(p.stat().st_size for p in photos) <= 3_000_000
    for p in photos:
        with Image.open(p) as img:
            assert img.mode == "RGB" and 160 <= min(img.size) <= 384, p.name  # a 160 px crop without upscaling
            assert img.getexif().get(0x0112, 1) == 1, f"{p.name} still needs an EXIF rotation"
            luma = np.array(img.quantization[0])  # libjpeg's quality-95 luma table averages 5.8
            assert luma.mean() <= 6.0, p.name
            assert img.layer[0][1:3] == img.layer[1][1:3] == (1, 1), f"{p.name}: chroma subsampled"
    notice = (SKIN_PHOTOS_DIR / "NOTICE").read_text()
    for needed in ("CC BY 4.0", "Legit.Health", "AGPPGA", "10.5281/zenodo.17975532", "creativecommons.org/licenses/by/4.0"):
        assert needed in notice
    readme = (REPO / "README.md").read_text()
    assert "10.5281/zenodo.17975532" in readme and "CC BY 4.0" in readme


@pytest.mark.skipif(not SHARED_SKIN.is_dir(), reason=f"original photos not found at {SHARED_SKIN}")
def test_shipped_skin_photos_are_the_originals_turned_upright():
    from PIL import Image, ImageOps

    rotated = 0
    for src in sorted(SHARED_SKIN.glob("image_*.jpg")):
        with Image.open(src) as orig, Image.open(SKIN_PHOTOS_DIR / src.name) as shipped:
            rotated += orig.getexif().get(0x0112, 1) != 1
            upright = ImageOps.exif_transpose(orig).convert("RGB")
            w, h = upright.size
            assert abs(shipped.width / shipped.height - w / h) < 0.01, src.name
            small = np.asarray(upright.resize(shipped.size, Image.Resampling.BILINEAR), dtype=np.float32)
            assert np.abs(small - np.asarray(shipped, dtype=np.float32)).mean() < 6.0, src.name  # same picture, same way up
    assert rotated >= 4  # the set has photos stored sideways: the check above saw them


def test_skin_photos_are_package_data_for_non_editable_installs():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["diqa_datasets"]
    rel = [str(p.relative_to(SKIN_PHOTOS_DIR.parents[1])) for p in SKIN_PHOTOS_DIR.iterdir()]
    assert "embedded/skin_photos/NOTICE" in rel
    assert [r for r in rel if not any(fnmatch(r, pat) for pat in patterns)] == []


# -- photos bundled with installed packages --------------------------------------------------------
def test_every_catalogued_natural_photo_is_installed_and_distinct():
    missing = [p.group for p in NATURAL_PHOTOS if p.locate() is None]
    assert missing == []
    assert len(NATURAL_PHOTOS) >= 20 and len({p.group for p in NATURAL_PHOTOS}) == len(NATURAL_PHOTOS)
    assert not any("motorcycle_right" in p.path for p in NATURAL_PHOTOS)  # the same scene as motorcycle_left
    ds = NaturalPhotosDataset()
    assert ds.check() == [] and ds.notes == [] and len(ds.reference_list()) == len(NATURAL_PHOTOS)
    assert SkimageNaturalDataset(references=len(SKIMAGE_PHOTOS)).check() == []


def test_missing_photos_are_left_out_and_reported(monkeypatch, tmp_path):
    gone = {NATURAL_PHOTOS[0].group, NATURAL_PHOTOS[-1].group}
    real_locate = BundledPhoto.locate
    monkeypatch.setattr(BundledPhoto, "locate", lambda self: None if self.group in gone else real_locate(self))
    ds = NaturalPhotosDataset(size=32, distortions=["jpeg"], levels=1)
    assert ds.check() == []  # enough left: the rest is used
    assert len(ds.notes) == 1 and all(g in ds.notes[0] for g in gone) and "reinstall" in ds.notes[0]
    recs = ds.load(DatasetContext(tmp_path))
    assert {r.group for r in recs} == {p.group for p in NATURAL_PHOTOS} - gone
    keep = {NATURAL_PHOTOS[1].group: "x"}
    monkeypatch.setattr(BundledPhoto, "locate", lambda self: real_locate(self) if self.group in keep else None)
    few = NaturalPhotosDataset(size=32)
    assert any("fewer than the 20" in n for n in few.notes)
    assert few.check() == []
    problems = NaturalPhotosDataset(references=5).check()
    assert len(problems) == 1 and "only 1 of its" in problems[0] and "5 needed" in problems[0]


def test_no_photo_at_all_is_a_clear_error_not_a_crash(monkeypatch, tmp_path):
    from diqa_bench.errors import DataError

    monkeypatch.setattr(BundledPhoto, "locate", lambda self: None)
    ds = SkimageNaturalDataset()
    assert "reinstall scikit-image" in ds.check()[0]
    with pytest.raises(DataError, match="only 0 of its 14 photos are installed"):
        ds.load(DatasetContext(tmp_path))


def test_natural_photos_never_call_the_downloading_fetchers(tmp_path, monkeypatch):
    import skimage.data

    def no_download(*args, **kwargs):
        raise AssertionError("skimage.data fetcher called: it may download")

    monkeypatch.setattr(skimage.data, "_fetch", no_download, raising=False)
    ds = NaturalPhotosDataset(size=32, distortions=["jpeg"], levels=1)
    recs = ds.load(DatasetContext(tmp_path))
    assert len({r.group for r in recs}) == len(NATURAL_PHOTOS)


def test_too_many_references_is_a_clear_error():
    problems = SkimageNaturalDataset(references=15).check()
    assert len(problems) == 1 and "only 14 of its 14 photos" in problems[0] and "15 needed" in problems[0]


def test_synthetic_skin_tones_span_fitzpatrick_types():
    rng = np.random.default_rng
    brightness = [float(np.median(synthetic_skin(rng(t), 96, t))) for t in range(1, 7)]  # median: skin, not lesions
    assert brightness == sorted(brightness, reverse=True)  # type I lightest .. VI darkest
    names = SyntheticSkinDataset(references=6).reference_names()
    assert [n.rsplit("fitzpatrick", 1)[1] for n in names] == ["1", "2", "3", "4", "5", "6"]
    assert all("synthetic" in n for n in names)


# -- the default benchmark's power ---------------------------------------------------------------------
def test_default_benchmark_has_enough_content_groups_in_every_split():
    """At least 20 content groups per domain and at least 6 test groups for every default seed,
    counted as the runner splits them: each dataset of a domain on its own."""
    from diqa_bench import config
    from diqa_bench.plugins import load_plugins

    registry = load_plugins()
    cfg = config.parse(REPO / "benchmarks" / "cross_domain.yaml", registry)
    assert set(cfg.domains) == {"skin", "natural"} and len(cfg.seeds) >= 3
    real_skin = 0
    for domain, specs in cfg.domains.items():
        datasets = [registry.dataset(s.type)(**s.options) for s in specs]
        assert all(d.check() == [] for d in datasets)
        groups = [d.reference_names() for d in datasets]
        assert sum(map(len, groups)) >= 20, domain
        for seed in cfg.seeds:
            test = [split_groups(g, cfg.test_ratio, seed) for g in groups]
            assert sum(map(len, test)) >= 6, (domain, seed)
        if domain == "skin":
            real_skin = sum(r.real for d in datasets for r in d.reference_list())
            assert all(len(t) >= 6 for t in [split_groups(groups[0], cfg.test_ratio, s) for s in cfg.seeds])
    assert real_skin == 19


def test_over_exposure_of_the_brightest_skin_photo_keeps_texture():
    """Light skin at +2.8 EV would clip to a flat white frame, on which NIQE's patch statistics are
    undefined (it fails the whole batch); the distortion keeps the darkest 5% of pixels unclipped."""
    from diqa_datasets.embedded.distortions import over_exposure

    ref = embedded.square_photo(SKIN_PHOTOS_DIR / "image_0012.jpg", 96)
    rng = np.random.default_rng(0)
    outs = [over_exposure(ref, level, rng).astype(np.float32) for level in range(1, 6)]
    means = [o.mean() for o in outs]
    assert means == sorted(means) and means[0] > ref.mean() * 255  # brighter level after level
    worst = outs[-1].max(axis=-1)
    assert (worst < 250).mean() >= 0.04 and worst.std() > 2.0  # not a flat white frame
    dark = np.full((32, 32, 3), 0.2, np.float32)  # nothing clips: the full +2.8 EV applies
    assert abs(over_exposure(dark, 5, rng).mean() / 255 - (0.2**2.2 * 2**2.8) ** (1 / 2.2)) < 0.01


def test_leaderboard_says_which_references_are_real():
    from test_leaderboard import golden_metrics, golden_run_info

    from diqa_bench.leaderboard import render_markdown

    info = golden_run_info()
    real, synth = SkinPhotosDataset(), SyntheticSkinDataset(references=6)
    info["domains"]["b"]["datasets"] = [
        {"name": "skin-photos", "type": "skin-photos", "images": 532, "synthetic": False, "references": real.references_note, "notes": []},
        {"name": "synthetic-skin", "type": "synthetic-skin", "images": 168, "synthetic": True, "references": synth.references_note,
         "notes": ["natural-photos: 1 photo(s) not installed, left out: x (reinstall)"]},
    ]
    text = render_markdown(golden_metrics(), info)
    section = text[text.index("## Test domain: b") :]
    assert section.startswith("## Test domain: b (labels are pseudo-MOS; partly synthetic images)")
    assert ("References (content groups): 19 real photos (CC BY 4.0, Legit.Health AGPPGA study, "
            "doi:10.5281/zenodo.17975532) + 6 synthetic (procedural skin, Fitzpatrick I-VI).") in section
    assert "Note: natural-photos: 1 photo(s) not installed" in section
    assert "## Test domain: a (labels are pseudo-MOS)\n" in text and text.count("References (content groups)") == 1
