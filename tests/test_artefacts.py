"""The acquisition artefacts of the skin domains (bubbles, fluid, rulers, ink, hair, framing, several
at once) and the pseudo-MOS that labels them: sizes, determinism, severity, and the metrics
checked against pyiqa's implementations."""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from diqa_datasets.embedded import (
    SKIN_PHOTOS_DIR,
    NaturalPhotosDataset,
    SkinPhotosDataset,
    SyntheticSkinDataset,
    square_photo,
)
from diqa_datasets.embedded.distortions import DISTORTIONS
from diqa_datasets.embedded.names import ACQUISITION_ARTEFACTS, CAMERA_DISTORTIONS, DISTORTION_NAMES
from diqa_datasets.embedded.pseudo_mos import gmsd, ms_ssim, pseudo_mos

from diqa_bench.datasets import DatasetContext

REPO = Path(__file__).resolve().parents[1]


def _photo(index: int, size: int) -> np.ndarray:
    """A shipped skin photo as the generator stores it (uint8)."""
    u8 = (square_photo(SKIN_PHOTOS_DIR / f"image_{index:04d}.jpg", size) * 255 + 0.5).astype(np.uint8)
    return u8


def test_names_list_every_distortion_and_import_without_numpy():
    assert tuple(DISTORTIONS) == DISTORTION_NAMES == CAMERA_DISTORTIONS + ACQUISITION_ARTEFACTS
    assert set(ACQUISITION_ARTEFACTS) == {
        "air_bubbles", "immersion_fluid", "ruler", "ink_marking", "hair_occlusion", "partial_framing", "combined",
    }
    names = REPO / "plugins" / "diqa_datasets" / "embedded" / "names.py"
    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('n', %r); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "assert 'numpy' not in sys.modules; print(len(m.DISTORTION_NAMES))" % str(names)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(DISTORTION_NAMES))


def test_skin_domains_get_the_artefacts_by_default_natural_photos_do_not():
    assert SkinPhotosDataset().distortions == list(DISTORTION_NAMES)
    assert SyntheticSkinDataset().distortions == list(DISTORTION_NAMES)
    assert NaturalPhotosDataset().distortions == list(CAMERA_DISTORTIONS)
    # but any embedded dataset may name any distortion
    assert NaturalPhotosDataset(distortions=["ruler", "jpeg"]).distortions == ["ruler", "jpeg"]


@pytest.mark.parametrize("shape", [(32, 32), (33, 47), (47, 33), (200, 200)])
def test_every_distortion_works_at_any_size_and_is_deterministic(shape):
    rng = np.random.default_rng(5)
    # smooth content, like skin, so that every artefact has something to change
    img = ndimage.gaussian_filter(rng.uniform(0.2, 0.8, (*shape, 3)), (2, 2, 0)).astype(np.float32)
    for name, fn in DISTORTIONS.items():
        for level in (1, 5):
            a = fn(img, level, np.random.default_rng([1, 2, 3]))
            b = fn(img, level, np.random.default_rng([1, 2, 3]))
            assert a.dtype == np.uint8 and a.shape == (*shape, 3), (name, level)
            assert np.array_equal(a, b), f"{name} level {level} is not deterministic for its Generator"
            if name in ACQUISITION_ARTEFACTS:
                changed = np.abs(a.astype(float) - img * 255).max(axis=-1) > 8
                assert changed.mean() > 0.003, f"{name} level {level} left a {shape} image untouched"


@pytest.mark.parametrize("name", ["air_bubbles", "ruler", "ink_marking", "hair_occlusion", "partial_framing"])
def test_local_artefacts_cover_more_of_the_image_level_after_level(name):
    ref = _photo(4, 128).astype(np.float32) / 255.0
    covered = []
    for level in range(1, 6):
        out = DISTORTIONS[name](ref, level, np.random.default_rng([0, 4, 7])).astype(np.float32) / 255.0
        covered.append(float((np.abs(out - ref).max(axis=-1) > 0.06).mean()))
    assert covered == sorted(covered) and covered[-1] > covered[0], (name, covered)
    assert covered[-1] >= 0.05, (name, covered)


def test_combined_mixes_two_or_three_problems_the_same_at_every_level():
    ref_u8 = _photo(9, 96)
    ref = ref_u8.astype(np.float32) / 255.0
    for seed in range(3):  # the same problems at every level, more severe: the label falls
        labels = [pseudo_mos(ref_u8, DISTORTIONS["combined"](ref, level, np.random.default_rng([0, 9, seed])))[0] for level in range(1, 6)]
        assert all(a > b for a, b in zip(labels, labels[1:])), (seed, labels)
    # different draws mix different problems: the images of 6 seeds are not all alike
    level3 = [DISTORTIONS["combined"](ref, 3, np.random.default_rng(seed)).astype(float) for seed in range(6)]
    assert min(np.abs(a - b).mean() for i, a in enumerate(level3) for b in level3[i + 1 :]) > 0.5


def test_new_artefacts_labels_fall_strictly_with_the_level(tmp_path):
    """Mean pseudo-MOS per artefact, over a few references (real and synthetic skin, generated as
    the benchmark does), strictly decreases from level 1 to 5, and the most severe level is clearly
    below the pristine image's 5."""
    means = defaultdict(lambda: defaultdict(list))
    for cls, n in ((SkinPhotosDataset, 3), (SyntheticSkinDataset, 2)):
        ds = cls(references=n, size=96, distortions=list(ACQUISITION_ARTEFACTS))
        for r in ds.load(DatasetContext(tmp_path)):
            if r.distortion:
                means[r.distortion][r.level].append(r.mos)
    assert set(means) == set(ACQUISITION_ARTEFACTS)
    for name, by in means.items():
        m = [float(np.mean(by[level])) for level in range(1, 6)]
        assert all(a > b for a, b in zip(m, m[1:])), (name, m)
        assert m[-1] <= 4.0 and m[0] - m[-1] >= 0.8, (name, m)


def test_pseudo_mos_is_5_for_the_pristine_image_and_sees_a_colour_cast():
    ref = _photo(6, 96)
    assert pseudo_mos(ref, ref)[0] == 5.0
    cast = DISTORTIONS["colour_cast"](ref.astype(np.float32) / 255.0, 5, np.random.default_rng(0))
    mos, raw = pseudo_mos(ref, cast)
    # MS-SSIM and GMSD (luma) barely move: the chroma term is what lowers the label
    assert raw["ms_ssim"] > 0.97 and raw["gmsd"] < 0.03 and mos < 4.0


@pytest.mark.parametrize("size", [192, 256])
def test_ms_ssim_and_gmsd_agree_with_pyiqa(size):
    """Our numpy MS-SSIM and GMSD against pyiqa's on real skin photos and several distortions:
    within 1e-4 (pyiqa converts to float32 on the way; even sides, where both pool alike)."""
    pyiqa = pytest.importorskip("pyiqa")
    import torch

    ms_ref = pyiqa.create_metric("ms_ssim", device="cpu")
    gm_ref = pyiqa.create_metric("gmsd", device="cpu")

    def tensor(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]

    checked = 0
    for index in (2, 7, 15):
        ref = _photo(index, size)
        for name in ("jpeg", "defocus_blur", "sensor_noise", "air_bubbles", "ruler", "hair_occlusion"):
            out = DISTORTIONS[name](ref.astype(np.float32) / 255.0, 3, np.random.default_rng(index))
            a, b = ref / 255.0, out / 255.0
            assert ms_ssim(a, b) == pytest.approx(float(ms_ref(tensor(out), tensor(ref))), abs=1e-4), (index, name)
            assert gmsd(a, b) == pytest.approx(float(gm_ref(tensor(out), tensor(ref))), abs=1e-4), (index, name)
            checked += 1
    assert checked == 18
