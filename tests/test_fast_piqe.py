"""PIQE's float64 CPU path (diqa_pyiqa.fast_piqe) gives pyiqa's scores bit for bit and the same
activity, noise and noticeable-artefact block masks, on photos, sample images, synthetic and
odd-sized images and batches; the ``piqe`` method uses it, and only where it applies."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyiqa")

ROOT = Path(__file__).resolve().parents[1]
SKIN_PHOTOS = ROOT / "plugins" / "diqa_datasets" / "embedded" / "skin_photos"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """The scores do not depend on torch's thread count (every step is elementwise or reduces one
    block at a time); one thread keeps these comparisons fast on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference(img):
    """pyiqa's float64 piqe as the method ran it before (with diqa_pyiqa.fast_filter): scores and
    its pixel masks read back at block resolution (one pixel per 16x16 block)."""
    from diqa_pyiqa import fast_filter
    from pyiqa.archs.piqe_arch import piqe

    fast_filter.install()
    score, artefacts, noise, activity = piqe(img)
    return score, *(m[:, 0, ::16, ::16] > 0.5 for m in (activity, noise, artefacts))


def assert_same_as_pyiqa(img, label=""):
    from diqa_pyiqa.fast_piqe import piqe_blocks

    score, activity, noise, artefacts = reference(img)
    # float32 pixels (what the runner sends) may take the batch shortcut; others may not
    hints = [False, True] if torch.equal(img.float().double(), img) else [False]
    for float32_pixels in hints:
        fast = piqe_blocks(img, float32_pixels)
        assert fast is not None, label
        assert fast.scores.dtype == torch.float64 and fast.scores.shape == score.shape, label
        assert torch.equal(fast.scores, score), f"{label}: {fast.scores.tolist()} != pyiqa's {score.tolist()}"
        assert torch.equal(fast.activity, activity), label
        assert torch.equal(fast.noise, noise), label
        assert torch.equal(fast.noticeable_artifacts, artefacts), label
    return fast


def as_batch(*images: np.ndarray):
    """HxWx3 uint8 or float arrays (same size) -> float64 [B, 3, H, W] in [0, 1], through float32
    as the runner's decoder delivers them."""
    out = []
    for a in images:
        a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        out.append(torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1))
    return torch.stack(out).to(torch.float64)


def test_embedded_skin_photos():
    from diqa_bench.images import decode

    photos = sorted(SKIN_PHOTOS.glob("*.jpg"))
    assert len(photos) == 19
    seen = []
    for path in photos:
        fast = assert_same_as_pyiqa(as_batch(decode(path)), path.name)
        seen.append(float(fast.scores[0]))
    assert np.ptp(seen) > 5  # varied photos, varied scores: the comparison is not between constants


def test_two_threads_same_values():
    data = pytest.importorskip("skimage.data")
    torch.set_num_threads(2)
    assert_same_as_pyiqa(as_batch(data.astronaut()), "astronaut, 2 threads")


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "text", "page", "checkerboard", "moon", "coins"])
def test_scikit_image_samples(name):
    data = pytest.importorskip("skimage.data")
    assert_same_as_pyiqa(as_batch(getattr(data, name)()), name)


def synthetic(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return np.full((height, width, 3), 0.4)
    if kind == "white":  # 255 everywhere: the largest sums the exact filter must hold
        return np.ones((height, width, 3))
    if kind == "checker":  # 0 and 255 side by side: the largest local variance
        return np.broadcast_to(((np.arange(height)[:, None] + np.arange(width)) % 2)[..., None], (height, width, 3)).astype(float)
    if kind == "noisy":
        return np.clip(0.5 + rng.normal(0, 0.2, (height, width, 3)), 0, 1)
    if kind == "faint-noise":  # a flat image with noise of a grey level or two: blocks near the thresholds
        return np.clip(0.5 + rng.integers(-1, 2, (height, width, 3)) / 255, 0, 1)
    if kind == "blocky":  # 8x8 constant tiles, as heavy JPEG gives
        tiles = rng.random((height // 8 + 1, width // 8 + 1, 3))
        return np.repeat(np.repeat(tiles, 8, 0), 8, 1)[:height, :width]
    if kind == "gradient":
        ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
        return np.broadcast_to(ramp, (height, width, 3))
    if kind == "edges":  # flat regions with sharp edges, some noise in one quarter
        img = np.zeros((height, width, 3))
        img[height // 3 :, width // 4 :] = 0.8
        img[: height // 2, : width // 2] += rng.normal(0, 0.05, (height // 2, width // 2, 3))
        return np.clip(img + 0.1, 0, 1)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["flat", "white", "checker", "noisy", "faint-noise", "blocky", "gradient", "edges"])
@pytest.mark.parametrize("size", [(64, 64), (37, 53), (16, 32), (17, 31), (100, 23), (129, 250)])
def test_synthetic_images_of_odd_sizes(kind, size):
    img = as_batch(synthetic(kind, *size))
    fast = assert_same_as_pyiqa(img, f"{kind} {size}")
    rows, cols = ((s + s % 16) // 16 for s in size)  # pyiqa pads by the remainder, then drops partial blocks
    assert fast.activity.shape == (1, rows, cols)


@pytest.mark.parametrize("shape", [(16, 16), (40, 72), (35, 200)])
def test_gaussian_normalisation_is_fast_filters_bit_for_bit(shape):
    """The tiles' 7x7 Gaussian sums the exact products in another order than fast_filter's 49 taps:
    the same values, since every partial sum is exact in float64 (integer pixels, float32 weights)."""
    import torch.nn.functional as F
    from diqa_pyiqa import fast_filter
    from diqa_pyiqa.fast_piqe import TileWork
    from pyiqa.archs.func_util import normalize_img_with_gauss

    fast_filter.install()
    g = torch.Generator().manual_seed(sum(shape))
    images = [
        torch.randint(0, 256, shape, generator=g).double(),
        torch.full(shape, 255.0, dtype=torch.float64),
        (torch.arange(shape[0])[:, None] + torch.arange(shape[1])).remainder(2).double() * 255,
        torch.randint(0, 2, shape, generator=g).double() * 255,
    ]
    for img in images:
        expected = normalize_img_with_gauss(img[None, None], padding="replicate")[0, 0]
        padded = F.pad(img[None, None], (3, 3, 3, 3), mode="replicate")[0, 0]
        got = TileWork(*shape).normalise(padded, torch.tensor(255.0, dtype=torch.float64))  # peak 255: rounding keeps the pixels
        assert torch.equal(got, expected)


def test_batches_of_the_same_size_and_grey_images():
    images = [synthetic(kind, 75, 90, seed=i) for i, kind in enumerate(["noisy", "blocky", "edges", "faint-noise"])]
    batch = as_batch(*images)
    fast = assert_same_as_pyiqa(batch, "batch of 4")
    alone = [assert_same_as_pyiqa(batch[i : i + 1], f"image {i}").scores for i in range(4)]
    assert torch.allclose(fast.scores, torch.cat(alone), rtol=0, atol=1e-9)  # batch and single differ only in pyiqa's RGB->Y rounding
    assert len(set(fast.scores.tolist())) == 4
    grey = batch[:, :1].clone()
    assert_same_as_pyiqa(grey, "grey batch")
    g = torch.Generator().manual_seed(3)
    assert_same_as_pyiqa(torch.rand(3, 3, 50, 70, generator=g, dtype=torch.float64), "batch of float64 pixels")


@pytest.mark.parametrize("kind", ["flat", "checker", "noisy", "faint-noise", "blocky", "edges"])
@pytest.mark.parametrize("size", [(8, 8), (12, 12), (14, 14), (15, 19), (16, 16), (18, 14), (23, 31), (31, 16), (12, 40)])
def test_images_of_one_block_or_less(kind, size):
    """Small crops (an artefact's region, a thumbnail): pyiqa pads them by their own size and keeps
    one block (or a row of blocks), whose statistics torch reduces in another order when it is
    the batch's only block."""
    for seed in range(3):
        fast = assert_same_as_pyiqa(as_batch(synthetic(kind, *size, seed=seed)), f"{kind} {size} seed {seed}")
        rows, cols = ((s + s % 16) // 16 for s in size)
        assert fast.activity.shape == (1, rows, cols)


def test_what_it_does_not_handle_goes_to_pyiqa():
    from diqa_pyiqa.fast_piqe import piqe_scores

    img = as_batch(synthetic("noisy", 40, 40))
    assert piqe_scores(img.float()) is None  # float32: pyiqa's own precision
    assert piqe_scores(img[..., :7, :]) is None  # under half a block: pyiqa's padding leaves no block
    assert piqe_scores(img[..., :8, :16]) is not None and piqe_scores(img[..., :16, :16]) is not None
    assert piqe_scores(torch.zeros(1, 3, 32, 32, dtype=torch.float64)) is None  # black: pyiqa divides by 0
    negative = img.clone()
    negative[0, :, 0, 0] = -0.5
    assert_same_as_pyiqa(negative, "a pixel below 0")
    negative[0, :, 0, 0] = -5.0
    assert piqe_scores(negative) is None  # it would round below -255: the exact filter's bounds no longer hold
    assert piqe_scores(img.requires_grad_()) is None


def test_the_piqe_method_uses_it_in_float64_on_the_cpu(monkeypatch):
    from diqa_pyiqa import fast_piqe
    from diqa_pyiqa.zero_shot import Piqe

    from diqa_bench.methods import Batch, MethodContext

    calls = []
    real = fast_piqe.piqe_scores
    monkeypatch.setattr(fast_piqe, "piqe_scores", lambda x, *hint: (calls.append((x.dtype, *hint)), real(x, *hint))[1])
    images = as_batch(synthetic("edges", 48, 70), synthetic("noisy", 48, 70)).float()
    batch = Batch(images=images, keys=["a", "b"], paths=["a.png", "b.png"], indices=[0, 1])
    scores = {}
    for precision in ("auto", "float32"):
        method = Piqe(precision=precision)
        method.setup(MethodContext(device="cpu"))
        if precision == "auto":
            assert method.model is None  # the fast path needs no pyiqa model
        else:
            wrapped = method.model.net.forward
            fast_piqe.install(method.model.net)  # idempotent: never a wrapper around the wrapper
            assert method.model.net.forward is wrapped
        scores[precision] = method.score_batch(batch)
    assert calls == [(torch.float64, True), (torch.float32, True)]  # float32 is offered, declined, and pyiqa scores it
    assert torch.equal(scores["auto"], reference(images.double())[0])
    assert not torch.equal(scores["float32"], scores["auto"])


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent (real photos for tests)")
def test_real_dermatology_and_phone_photos():
    from diqa_bench.images import decode

    phone = sorted((SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images").glob("*.jpg"))
    dermoscopy = sorted((SHARED_DATA / "derm-ham10000-sample70").glob("*/*.jpg"))[::10]
    assert len(phone) >= 10 and len(dermoscopy) >= 5
    sizes = set()
    for path in phone + dermoscopy:
        img = as_batch(decode(path))
        sizes.add(tuple(img.shape[-2:]))
        assert_same_as_pyiqa(img, path.name)
    assert max(h * w for h, w in sizes) >= 4000 * 3000  # the 12-megapixel phone photos are among them
    assert_same_as_pyiqa(as_batch(*(decode(p) for p in dermoscopy)), "a batch of dermoscopy images")


def test_the_kernel_is_pyiqas():
    from pyiqa.matlab_utils import fspecial

    from diqa_pyiqa.fast_piqe import gaussian_kernel

    for size, sigma in ((7, 7.0 / 6), (5, 1.0), (11, 1.5)):
        assert torch.equal(gaussian_kernel(size, sigma), fspecial(size, sigma, 1))


def test_piqe_scores_without_importing_pyiqa_and_builds_it_only_for_what_it_declines(tmp_path):
    """A scoring process (``score``'s pool workers, a run's) never pays pyiqa's seconds of import
    for PIQE on the CPU, unless an image needs pyiqa's own function (a black one, say)."""
    import subprocess
    import sys

    code = """
import sys, torch
from diqa_bench.methods import Batch, MethodContext
from diqa_pyiqa.zero_shot import Piqe
m = Piqe(); m.setup(MethodContext(device="cpu"))
big = torch.rand(2, 3, 40, 56)
s = m.score_batch(Batch(images=big, keys=["a", "b"], paths=["a", "b"], indices=[0, 1]))
print(len(s), "pyiqa" in sys.modules)
black = torch.zeros(1, 3, 32, 32)  # pyiqa divides by its maximum: the fast path leaves it to pyiqa
m.score_batch(Batch(images=black, keys=["c"], paths=["c"], indices=[0]))
print("pyiqa" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "False", "True"]


def test_an_image_too_small_for_a_block_is_one_clear_reason():
    from diqa_pyiqa.zero_shot import Piqe

    from diqa_bench.errors import DataError
    from diqa_bench.methods import Batch, MethodContext

    method = Piqe()
    method.setup(MethodContext(device="cpu"))
    with pytest.raises(DataError, match=r"tiny.png: PIQE needs at least 8x8 pixels, got 5x40"):
        method.score_batch(Batch(images=torch.rand(1, 3, 5, 40), keys=["k"], paths=["tiny.png"], indices=[0]))
