"""BRISQUE's float64 CPU path (diqa_pyiqa.fast_brisque) gives pyiqa's scores within 1e-10 relative
plus 1e-9 absolute (measured: about 2e-14 relative, 2e-11 absolute near 0: float64 rounding of
the second scale's Gaussian filter) and pyiqa's
luminance and half-scale resize bit for bit, on the bundled skin photos, real photos, sample
images, synthetic and odd-sized images and batches; the ``brisque`` method uses it on the CPU
without importing pyiqa."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyiqa")

from test_fast_piqe import as_batch, synthetic  # noqa: E402 - the same images as PIQE's tests

ROOT = Path(__file__).resolve().parents[1]
SKIN_PHOTOS = ROOT / "plugins" / "diqa_datasets" / "embedded" / "skin_photos"
SHARED_DATA = ROOT.parent / "shared" / "data"
WEIGHTS = Path(__import__("os").environ.get("DIQA_BENCH_WEIGHTS", ROOT.parent / "shared" / "weights"))
BRISQUE_FILE = WEIGHTS / "brisque_svm_weights.pth"
RTOL = 1e-10  # the aim was 1e-6 relative; photos' scores agree to ~1e-14
ATOL = 1e-9  # scores near 0 (BRISQUE runs over about 0-150): the differences are ~1e-11 there

needs_brisque = pytest.mark.skipif(not BRISQUE_FILE.is_file(), reason=f"{BRISQUE_FILE} is absent (BRISQUE's SVR parameters)")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def svr():
    return torch.load(BRISQUE_FILE, weights_only=True)


def reference(img):
    """pyiqa's float64 brisque as the method ran it before (with diqa_pyiqa.fast_filter)."""
    from diqa_pyiqa import fast_filter
    from pyiqa.archs.brisque_arch import brisque

    fast_filter.install()
    coef, sv = svr()
    return brisque(img, sv_coef=coef, sv=sv).reshape(-1)


def assert_close_to_pyiqa(img, label="", rtol=RTOL):
    from diqa_pyiqa.fast_brisque import brisque_scores

    expected = reference(img)
    got = brisque_scores(img, *svr())
    if torch.equal(img.float().double(), img):  # float32 pixels (the runner's) give the same scores
        torch.testing.assert_close(brisque_scores(img.float(), *svr()), got, rtol=0, atol=0, equal_nan=True, msg=label)
    assert got is not None and got.dtype == torch.float64 and got.shape == expected.shape, label
    # nan where pyiqa's is nan (a flat neighbour product has no left or right side)
    assert torch.allclose(got, expected, rtol=rtol, atol=ATOL, equal_nan=True), f"{label}: {got.tolist()} != pyiqa's {expected.tolist()}"
    return got


@needs_brisque
def test_embedded_skin_photos():
    from diqa_bench.images import decode

    photos = sorted(SKIN_PHOTOS.glob("*.jpg"))
    assert len(photos) == 19
    seen = [float(assert_close_to_pyiqa(as_batch(decode(p)), p.name)[0]) for p in photos]
    assert np.ptp(seen) > 1  # varied photos, varied scores: the comparison is not between constants


@needs_brisque
@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea", "brick", "text", "checkerboard", "coins"])
def test_scikit_image_samples(name):
    data = pytest.importorskip("skimage.data")
    assert_close_to_pyiqa(as_batch(getattr(data, name)()), name)


@needs_brisque
def test_pyiqas_sample_images():
    """The calibration reference images and efficiency-test photos that pyiqa's wheel installs
    beside its package (the natural-photos dataset reads them too)."""
    import pyiqa

    from diqa_bench.images import decode

    site = Path(pyiqa.__file__).resolve().parents[1]
    samples = sorted((site / "ResultsCalibra" / "ref_dir").glob("*.bmp"))[:3] + sorted((site / "tests" / "test_efficiency_img_dir").glob("*.jpg"))[:2]
    if not samples:
        pytest.skip(f"the installed pyiqa ships no sample images under {site}")
    for path in samples:
        assert_close_to_pyiqa(as_batch(decode(path)), path.name)


@needs_brisque
@pytest.mark.parametrize("kind", ["white", "checker", "noisy", "faint-noise", "blocky", "gradient", "edges"])
@pytest.mark.parametrize("size", [(97, 131), (333, 257), (7, 7), (8, 31), (15, 9), (64, 64)])
def test_synthetic_images_of_odd_sizes(kind, size):
    assert_close_to_pyiqa(as_batch(synthetic(kind, *size)), f"{kind} {size}")


@pytest.mark.parametrize("size", [(7, 7), (8, 9), (97, 131), (333, 257), (64, 2000)])
def test_luminance_and_half_scale_resize_are_pyiqas_bit_for_bit(size):
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    from diqa_pyiqa.fast_brisque import imresize_half, luminance255

    img = as_batch(synthetic("noisy", *size))
    luma = luminance255(img[0])
    assert torch.equal(luma, to_y_channel(img, 255.0)[0, 0])
    assert torch.equal(imresize_half(luma), imresize(luma[None, None], scale=0.5, antialiasing=True)[0, 0])


@pytest.mark.parametrize("shape", [(7, 7), (40, 72), (35, 1200), (300, 20)])
def test_first_scale_features_are_pyiqas(shape):
    """Integer pixels: the tiled Gaussian's sums are exact, so the normalised image is pyiqa's to
    the last bit (of a square root) and the features agree to the last bits of the means."""
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.archs.func_util import normalize_img_with_gauss

    from diqa_pyiqa import fast_filter
    from diqa_pyiqa.fast_brisque import gauss_normalise, nss_features

    fast_filter.install()
    g = torch.Generator().manual_seed(sum(shape))
    for plane in (torch.randint(0, 256, shape, generator=g).double(), torch.full(shape, 255.0, dtype=torch.float64)):
        plane[0, 0] = 0  # a non-zero variance
        # the sums are exact; torch's vectorised sqrt (pyiqa's) is not always correctly rounded,
        # numpy's is: the last bit of some pixels may differ
        torch.testing.assert_close(gauss_normalise(plane), normalize_img_with_gauss(plane[None, None], 7, 7.0 / 6, padding="same")[0, 0],
                                   rtol=1e-15, atol=0)
        expected = natural_scene_statistics(plane[None, None])[0].numpy().ravel()
        np.testing.assert_allclose(nss_features(plane), expected, rtol=1e-12, atol=1e-15)


@needs_brisque
def test_batches_and_grey_images():
    images = [synthetic(kind, 75, 90, seed=i) for i, kind in enumerate(["noisy", "blocky", "edges", "faint-noise"])]
    batch = as_batch(*images)
    scores = assert_close_to_pyiqa(batch, "batch of 4")
    alone = torch.cat([assert_close_to_pyiqa(batch[i : i + 1], f"image {i}") for i in range(4)])
    assert torch.allclose(scores, alone, rtol=RTOL, atol=ATOL)
    assert len(set(scores.tolist())) == 4
    # grey images are scaled, not rounded: the first scale's filter is no longer exact either, and
    # E[x^2] - mu^2 cancels in flat regions (measured: 1e-9 relative)
    assert_close_to_pyiqa(batch[:, :1].clone(), "grey batch", rtol=1e-7)
    g = torch.Generator().manual_seed(3)
    assert_close_to_pyiqa(torch.rand(3, 3, 50, 70, generator=g, dtype=torch.float64), "batch of float64 pixels")


def test_what_it_does_not_handle_goes_to_pyiqa():
    from diqa_pyiqa.fast_brisque import supported

    img = as_batch(synthetic("noisy", 40, 40))
    assert supported(img)
    assert supported(img.float())  # float32 pixels: widened to float64 one channel at a time
    assert not supported(img.half())
    assert not supported(img[..., :6, :])  # under BRISQUE's 7x7 window
    assert not supported(img.clone().requires_grad_())
    from diqa_pyiqa.fast_brisque import brisque_scores

    black = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    if BRISQUE_FILE.is_file():
        assert brisque_scores(black, *svr()) is None  # no variance: pyiqa's own assertion, as before
        with pytest.raises(AssertionError, match="non zero variance"):
            reference(black)


@needs_brisque
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent (real photos for tests)")
def test_real_dermatology_and_phone_photos():
    """A few real photos, the 12-megapixel phone photos left out (pyiqa needs seconds and gigabytes
    for each); the batch of dermoscopy images shares one size."""
    from diqa_bench.images import decode

    phone = [p for p in sorted((SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images").glob("*.jpg")) if p.stat().st_size < 600_000][:3]
    dermoscopy = sorted((SHARED_DATA / "derm-ham10000-sample70").glob("*/*.jpg"))[::20]
    assert len(phone) >= 2 and len(dermoscopy) >= 3
    for path in phone + dermoscopy:
        assert_close_to_pyiqa(as_batch(decode(path)), path.name)
    assert_close_to_pyiqa(as_batch(*(decode(p) for p in dermoscopy)), "a batch of dermoscopy images")


@needs_brisque
def test_the_brisque_method_uses_it_in_float64_on_the_cpu(monkeypatch):
    from diqa_pyiqa import fast_brisque
    from diqa_pyiqa.zero_shot import Brisque

    from diqa_bench.methods import Batch, MethodContext

    calls = []
    real = fast_brisque.brisque_scores
    monkeypatch.setattr(fast_brisque, "brisque_scores", lambda x, *svr: (calls.append(x.dtype), real(x, *svr))[1])
    images = as_batch(synthetic("edges", 48, 70), synthetic("noisy", 48, 70)).float()
    batch = Batch(images=images, keys=["a", "b"], paths=["a.png", "b.png"], indices=[0, 1])
    scores = {}
    for precision in ("auto", "float32"):
        method = Brisque(precision=precision)
        method.setup(MethodContext(device="cpu", weights_dir=WEIGHTS))
        assert (method.model is None) == (precision == "auto")  # the fast path needs no pyiqa model
        scores[precision] = method.score_batch(batch)
    assert calls == [torch.float32]  # the runner's float32 pixels, widened inside; precision float32 keeps pyiqa's path
    assert torch.allclose(scores["auto"], reference(images.double()), rtol=RTOL, atol=ATOL)
    assert not torch.allclose(scores["float32"], scores["auto"], rtol=1e-6, atol=0)


@needs_brisque
def test_brisque_scores_without_importing_pyiqa(tmp_path):
    """A scoring process (``score``'s pool workers, a run's) never pays pyiqa's seconds of import
    for BRISQUE on the CPU; a batch the fast path declines (a float32 request) builds pyiqa."""
    import subprocess
    import sys

    code = f"""
import sys, torch
from diqa_bench.methods import Batch, MethodContext
from diqa_pyiqa.zero_shot import Brisque
m = Brisque(); m.setup(MethodContext(device="cpu", weights_dir={str(WEIGHTS)!r}))
s = m.score_batch(Batch(images=torch.rand(2, 3, 40, 56), keys=["a", "b"], paths=["a", "b"], indices=[0, 1]))
print(len(s), "pyiqa" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "False"]


def test_a_wrong_brisque_file_is_refused_once_on_the_fast_path_too(tmp_path):
    from diqa_pyiqa.zero_shot import Brisque

    from diqa_bench.errors import MethodUnavailable
    from diqa_bench.methods import MethodContext

    wrong = tmp_path / "brisque_svm_weights.pth"
    torch.save((torch.zeros(5), torch.zeros(5, 18)), wrong)
    with pytest.raises(MethodUnavailable, match=r"is not BRISQUE's: tensors of shape \(5,\) and \(5, 18\)"):
        Brisque(weights=str(wrong)).setup(MethodContext(device="cpu"))


# -- NIQE ----------------------------------------------------------------------------------------

NIQE_FILE = WEIGHTS / "niqe_modelparameters.mat"
needs_niqe = pytest.mark.skipif(not NIQE_FILE.is_file(), reason=f"{NIQE_FILE} is absent (NIQE's pristine model)")


def pristine():
    from scipy.io import loadmat

    params = loadmat(str(NIQE_FILE))
    return np.ravel(params["mu_prisparam"]), params["cov_prisparam"]


def niqe_reference(img):
    """pyiqa's calculate_niqe as the method ran it before (with diqa_pyiqa.fast_filter)."""
    from diqa_pyiqa import fast_filter
    from pyiqa.archs.niqe_arch import calculate_niqe

    fast_filter.install()
    mu, cov = pristine()
    return calculate_niqe(img, mu_pris_param=torch.from_numpy(mu), cov_pris_param=torch.from_numpy(cov)).reshape(-1)


def assert_niqe_close(img, label="", rtol=RTOL):
    from diqa_pyiqa.fast_niqe import niqe_scores

    expected = niqe_reference(img)
    got = niqe_scores(img, *pristine())
    assert got is not None and got.dtype == torch.float64 and got.shape == expected.shape, label
    assert torch.allclose(got, expected, rtol=rtol, atol=ATOL, equal_nan=True), f"{label}: {got.tolist()} != pyiqa's {expected.tolist()}"
    if torch.equal(img.float().double(), img):
        torch.testing.assert_close(niqe_scores(img.float(), *pristine()), got, rtol=0, atol=0, equal_nan=True, msg=label)
    return got


@needs_niqe
def test_niqe_embedded_skin_photos():
    from diqa_bench.images import decode

    photos = sorted(SKIN_PHOTOS.glob("*.jpg"))
    seen = [float(assert_niqe_close(as_batch(decode(p)), p.name)[0]) for p in photos]
    assert len(seen) == 19 and np.ptp(seen) > 1


@needs_niqe
@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea", "brick", "text", "checkerboard", "coins"])
def test_niqe_scikit_image_samples(name):
    data = pytest.importorskip("skimage.data")
    assert_niqe_close(as_batch(getattr(data, name)()), name)


@needs_niqe
def test_niqe_pyiqas_sample_images():
    import pyiqa

    from diqa_bench.images import decode

    site = Path(pyiqa.__file__).resolve().parents[1]
    samples = sorted((site / "ResultsCalibra" / "ref_dir").glob("*.bmp"))[:3] + sorted((site / "tests" / "test_efficiency_img_dir").glob("*.jpg"))[:2]
    if not samples:
        pytest.skip(f"the installed pyiqa ships no sample images under {site}")
    for path in samples:
        assert_niqe_close(as_batch(decode(path)), path.name)


@needs_niqe
@pytest.mark.parametrize("kind", ["noisy", "faint-noise", "blocky", "gradient", "edges"])
@pytest.mark.parametrize("size", [(97, 131), (333, 257), (96, 96), (191, 400)])
def test_niqe_synthetic_images_of_odd_sizes(kind, size):
    assert_niqe_close(as_batch(synthetic(kind, *size)), f"{kind} {size}")


@needs_niqe
@pytest.mark.parametrize("kind", ["white", "checker"])
def test_niqe_images_pyiqa_fails_on_go_to_pyiqa(kind):
    """Every block's features hold a NaN: pyiqa's pseudo-inverse fails; the fast path declines
    them, so the method meets pyiqa's own error, as before."""
    from diqa_pyiqa.fast_niqe import niqe_scores

    img = as_batch(synthetic(kind, 200, 200))
    assert niqe_scores(img, *pristine()) is None
    with pytest.raises(RuntimeError, match="non-finite"):
        niqe_reference(img)


@needs_niqe
def test_niqe_batches_and_grey_images():
    images = [synthetic(kind, 200, 300, seed=i) for i, kind in enumerate(["noisy", "blocky", "edges", "faint-noise"])]
    batch = as_batch(*images)
    scores = assert_niqe_close(batch, "batch of 4")
    alone = torch.cat([assert_niqe_close(batch[i : i + 1], f"image {i}") for i in range(4)])
    assert torch.allclose(scores, alone, rtol=RTOL, atol=ATOL)
    assert len(set(scores.tolist())) == 4
    assert_niqe_close(batch[:, :1].clone(), "grey batch")  # rounded after scaling, as pyiqa does: exact at scale 1 too


def test_niqe_declines_what_it_does_not_handle():
    from diqa_pyiqa.fast_niqe import supported

    img = as_batch(synthetic("noisy", 100, 120))
    assert supported(img) and supported(img.float())
    assert not supported(img[..., :95, :])  # no whole 96x96 block
    assert not supported(img.half())


@needs_niqe
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent (real photos for tests)")
def test_niqe_real_dermatology_and_phone_photos():
    from diqa_bench.images import decode

    phone = [p for p in sorted((SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images").glob("*.jpg")) if p.stat().st_size < 600_000][:3]
    dermoscopy = sorted((SHARED_DATA / "derm-ham10000-sample70").glob("*/*.jpg"))[::20]
    assert len(phone) >= 2 and len(dermoscopy) >= 3
    for path in phone + dermoscopy:
        assert_niqe_close(as_batch(decode(path)), path.name)
    assert_niqe_close(as_batch(*(decode(p) for p in dermoscopy)), "a batch of dermoscopy images")


@needs_niqe
def test_the_niqe_method_uses_it_on_the_cpu_without_importing_pyiqa():
    import subprocess
    import sys

    code = f"""
import sys, torch
from diqa_bench.methods import Batch, MethodContext
from diqa_pyiqa.zero_shot import Niqe
m = Niqe(); m.setup(MethodContext(device="cpu", weights_dir={str(WEIGHTS)!r}))
g = torch.Generator().manual_seed(0)
images = torch.rand(2, 3, 120, 200, generator=g)
s = m.score_batch(Batch(images=images, keys=["a", "b"], paths=["a", "b"], indices=[0, 1]))
print(len(s), "pyiqa" in sys.modules)
torch.save((images, s), sys.argv[1])
"""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "scores.pt"
        out = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["2", "False"]
        images, scores = torch.load(saved, weights_only=True)
    assert torch.allclose(scores, niqe_reference(images.double()), rtol=RTOL, atol=ATOL)


@needs_niqe
def test_the_niqe_method_keeps_pyiqas_path_in_float32():
    from diqa_pyiqa.zero_shot import Niqe

    from diqa_bench.methods import MethodContext

    method = Niqe(precision="float32")
    method.setup(MethodContext(device="cpu", weights_dir=WEIGHTS))
    assert method.model is not None and method.pristine_params is None


def test_a_wrong_niqe_file_is_refused_once_on_the_fast_path_too(tmp_path):
    from scipy.io import savemat

    from diqa_pyiqa.zero_shot import Niqe

    from diqa_bench.errors import MethodUnavailable
    from diqa_bench.methods import MethodContext

    wrong = tmp_path / "niqe_modelparameters.mat"
    savemat(wrong, {"mu_prisparam": np.zeros((1, 18)), "cov_prisparam": np.eye(18)})
    with pytest.raises(MethodUnavailable, match="is not NIQE's: expected mu_prisparam"):
        Niqe(weights=str(wrong)).setup(MethodContext(device="cpu"))
