"""The fast classical paths on numpy pixels (``Method.numpy_pixels``: the decoder's uint8 arrays
[B, H, W, C], no torch in the scoring process) give pyiqa's scores: BRISQUE and NIQE within the
tolerance of their tensor paths (tests/test_fast_nss.py: 1e-10 relative plus 1e-9 absolute) and
bit for bit what those tensor paths give; PIQE within 1e-12 relative (numpy's square roots and
sums round unlike torch's in the last bit; measured: ~1e-16), with pyiqa's block masks. Also: the
torch-free readers of the parameter files, and a ``score`` process that imports none of torch,
pyiqa, scipy or pandas for these three methods."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyiqa")

from test_fast_nss import BRISQUE_FILE, NIQE_FILE, niqe_reference, pristine, reference, svr  # noqa: E402
from test_fast_nss import one_thread  # noqa: E402, F401 - its autouse fixture: pyiqa's references on one torch thread here too
from test_fast_piqe import synthetic  # noqa: E402
from test_fast_piqe import reference as piqe_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PHONE = SHARED_DATA / "derm-healthy-skin-agppga" / "consented_images"
RTOL, ATOL = 1e-10, 1e-9  # BRISQUE and NIQE: their tensor paths' tolerance (tests/test_fast_nss.py)
PIQE_RTOL = 1e-12

needs_files = pytest.mark.skipif(not (BRISQUE_FILE.is_file() and NIQE_FILE.is_file()), reason="BRISQUE's or NIQE's parameter file is absent")
needs_data = pytest.mark.skipif(not PHONE.is_dir(), reason=f"{PHONE} is absent (real photos for tests)")


def as_uint8(*images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (or uint8) -> a numpy batch [B, H, W, C] of uint8, as decoded."""
    return np.stack([a if a.dtype == np.uint8 else np.round(np.asarray(a) * 255).astype(np.uint8) for a in images])


def runner_tensor(pixels: np.ndarray) -> "torch.Tensor":
    """What the runner's tensor path gives for the same file: uint8 / 255 in float32, [B, C, H, W]."""
    return torch.from_numpy(np.divide(pixels, np.float32(255.0), dtype=np.float32)).permute(0, 3, 1, 2).contiguous()


def check_all(pixels: np.ndarray, label: str, with_pyiqa: bool = True) -> None:
    """The three numpy paths on ``pixels`` against pyiqa's own functions (``with_pyiqa``) and
    against their tensor paths on the runner's float32 pixels."""
    from diqa_pyiqa.fast_brisque import brisque_scores
    from diqa_pyiqa.fast_niqe import niqe_scores
    from diqa_pyiqa.fast_piqe import piqe_blocks

    tensor = runner_tensor(pixels)
    got = brisque_scores(pixels, *svr())
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (len(pixels),), label
    np.testing.assert_array_equal(got, brisque_scores(tensor, *svr()).numpy(), err_msg=label)
    if with_pyiqa:
        np.testing.assert_allclose(got, reference(tensor.double()).numpy(), rtol=RTOL, atol=ATOL, err_msg=f"brisque {label}")
    if min(pixels.shape[1:3]) >= 96:
        got = niqe_scores(pixels, *pristine())
        np.testing.assert_array_equal(got, niqe_scores(tensor, *pristine()).numpy(), err_msg=label)
        if with_pyiqa:
            np.testing.assert_allclose(got, niqe_reference(tensor.double()).numpy(), rtol=RTOL, atol=ATOL, err_msg=f"niqe {label}")
    fast = piqe_blocks(pixels)
    expected = piqe_reference(tensor.double()) if with_pyiqa else piqe_blocks(tensor.double(), True)
    np.testing.assert_allclose(fast.scores, np.asarray(expected[0]), rtol=PIQE_RTOL, atol=0, err_msg=f"piqe {label}")
    for mine, theirs in zip(fast[1:], expected[1:]):
        np.testing.assert_array_equal(mine, np.asarray(theirs), err_msg=f"piqe masks {label}")


@needs_files
@pytest.mark.parametrize("size", [(7, 9), (16, 16), (37, 53), (97, 131), (100, 23), (129, 250), (333, 257)])
@pytest.mark.parametrize("kind", ["noisy", "edges", "blocky"])
def test_odd_sizes(kind, size):
    if min(size) < 8:  # PIQE needs 8 pixels, BRISQUE 7: BRISQUE alone
        from diqa_pyiqa.fast_brisque import brisque_scores

        pixels = as_uint8(synthetic(kind, *size))
        np.testing.assert_allclose(brisque_scores(pixels, *svr()), reference(runner_tensor(pixels).double()).numpy(), rtol=RTOL, atol=ATOL)
        return
    check_all(as_uint8(synthetic(kind, *size)), f"{kind} {size}")


@needs_files
def test_one_channel_and_batches():
    images = [synthetic(kind, 100, 120, seed=i) for i, kind in enumerate(["noisy", "blocky", "edges", "faint-noise"])]
    batch = as_uint8(*images)
    check_all(batch, "batch of 4")
    check_all(batch[:, :, :, :1].copy(), "grey batch")
    check_all(batch[:1, :, :, :1].copy(), "one grey image")


@needs_files
@needs_data
def test_phone_photo_and_dermoscopy():
    """A 12-megapixel phone photo: a 1024x768 region against pyiqa (its full size costs pyiqa
    minutes here), the whole photo against the tensor paths (which test_fast_nss and
    test_fast_piqe compare with pyiqa on the whole photos); a HAM10000 dermoscopy image whole."""
    from diqa_bench.images import decode_uint8

    photo = decode_uint8(sorted(PHONE.glob("*.jpg"))[4])
    assert photo.dtype == np.uint8 and photo.shape[0] * photo.shape[1] >= 4000 * 3000
    check_all(photo[None, 1000:1768, 1200:2224].copy(), "phone photo region")
    check_all(photo[None], "phone photo", with_pyiqa=False)
    dermoscopy = sorted((SHARED_DATA / "derm-ham10000-sample70").glob("*/*.jpg"))[0]
    check_all(decode_uint8(dermoscopy)[None], dermoscopy.name)


def test_what_the_numpy_paths_decline():
    from diqa_pyiqa.fast_brisque import supported as brisque_supported
    from diqa_pyiqa.fast_niqe import supported as niqe_supported
    from diqa_pyiqa.fast_piqe import piqe_scores

    pixels = as_uint8(synthetic("noisy", 120, 100))
    assert brisque_supported(pixels) and niqe_supported(pixels) and piqe_scores(pixels) is not None
    assert not brisque_supported(pixels.astype(np.int32))  # not a decoder's pixel type
    assert not brisque_supported(pixels[0])  # no batch axis
    assert not niqe_supported(pixels[:, :95])  # no whole 96x96 block
    assert piqe_scores(pixels[:, :7]) is None  # under half a PIQE block
    assert piqe_scores(np.zeros((1, 32, 32, 3), dtype=np.uint8)) is None  # black: pyiqa's own function (it divides by 0)


def test_the_grid_kernel_and_files_are_read_as_torch_and_scipy_read_them(tmp_path):
    import scipy.io

    from diqa_pyiqa.fast_gauss import arange_float32
    from diqa_pyiqa.matfile import read_numeric

    from diqa_bench.torch_files import load_arrays

    assert np.array_equal(arange_float32(0.2, 10 + 0.001, 0.001), torch.arange(0.2, 10 + 0.001, 0.001).numpy())  # pyiqa's grid
    if BRISQUE_FILE.is_file():
        arrays = load_arrays(BRISQUE_FILE)
        assert all(np.array_equal(a, t.numpy()) and a.dtype == np.float32 for a, t in zip(arrays, svr()))
    path = tmp_path / "t.pth"
    torch.save({"a": torch.arange(12.0).reshape(3, 4).t(), "b": [torch.tensor([1, 2], dtype=torch.int64)]}, path)
    content = load_arrays(path)
    assert np.array_equal(content["a"], np.arange(12.0).reshape(3, 4).T) and content["b"][0].tolist() == [1, 2]
    torch.save({"a": torch.zeros(2), "why": slice(1, 2)}, path)  # an object torch's safe loader also refuses
    assert load_arrays(path) is None
    if NIQE_FILE.is_file():
        mine, scipys = read_numeric(NIQE_FILE), scipy.io.loadmat(str(NIQE_FILE))
        assert set(mine) == {"mu_prisparam", "cov_prisparam"} and all(np.array_equal(mine[k], scipys[k]) for k in mine)
    for compressed in (False, True):
        scipy.io.savemat(tmp_path / "m.mat", {"m": np.arange(12.0).reshape(3, 4), "u": np.arange(6, dtype=np.uint8).reshape(2, 3)},
                         do_compression=compressed)
        mine = read_numeric(tmp_path / "m.mat")
        assert np.array_equal(mine["m"], np.arange(12.0).reshape(3, 4)) and np.array_equal(mine["u"], np.arange(6).reshape(2, 3))
    scipy.io.savemat(tmp_path / "c.mat", {"c": np.array([1 + 2j])})
    assert read_numeric(tmp_path / "c.mat") is None  # complex: scipy's reader (and its messages) decide
    (tmp_path / "junk.mat").write_bytes(b"not a MAT-file")
    assert read_numeric(tmp_path / "junk.mat") is None


@needs_files
def test_score_imports_no_torch_pyiqa_scipy_or_pandas_for_the_three(tmp_path):
    """One ``score`` process per method on the CPU, as the issue's benchmark runs it: the scores
    are the tensor paths' and the process never imported torch, pyiqa, scipy or pandas."""
    from diqa_pyiqa.fast_brisque import brisque_scores
    from diqa_pyiqa.fast_niqe import niqe_scores
    from diqa_pyiqa.fast_piqe import piqe_scores

    from diqa_bench.images import decode_uint8

    image = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(as_uint8(synthetic("edges", 130, 170))[0]).save(image)
    pixels = decode_uint8(image)[None]
    tensor = runner_tensor(pixels)
    expected = {"brisque": brisque_scores(tensor, *svr()), "niqe": niqe_scores(tensor, *pristine()), "piqe": piqe_scores(tensor.double(), True)}
    code = (
        "import sys\nfrom diqa_bench.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('imported:', *sorted(m for m in ('torch', 'pyiqa', 'scipy', 'pandas') if m in sys.modules))\n"
    )
    env = dict(os.environ, DIQA_BENCH_WEIGHTS=str(BRISQUE_FILE.parent))
    for name, want in expected.items():
        out = subprocess.run([sys.executable, "-c", code, "score", "-m", name, "--device", "cpu", "--processes", "1", "--cache-dir",
                              str(tmp_path / name), "--no-progress", str(image)], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        lines = out.stdout.splitlines()
        assert lines[-1] == "imported:", f"{name}: {lines[-1]}"
        assert float(lines[1].split(",")[1]) == pytest.approx(float(want[0]), rel=1e-5)  # the CSV rounds to 6 digits


def test_nearest_grid_entry_is_argmins():
    """NIQE's lookup of the AGGD shape by binary search picks the entry pyiqa's argmin picks: on
    the grid's own values, midpoints (ties: the first), beyond both ends, NaN and infinities."""
    from diqa_pyiqa.fast_brisque import shape_grid
    from diqa_pyiqa.fast_niqe import nearest

    table = shape_grid()[2]
    mids = (table[:-1] + table[1:]) / 2
    rng = np.random.default_rng(0)
    values = np.concatenate([table, mids, np.nextafter(mids, 0), np.nextafter(mids, 1), rng.uniform(-1, 2, 5000),
                             [np.nan, np.inf, -np.inf, 0.0, 1e300]])
    with np.errstate(invalid="ignore"):
        expected = np.abs(table[None, :] - values[:, None]).argmin(axis=1)
    np.testing.assert_array_equal(nearest(table, values), expected)
    bumpy = np.array([0.0, 2.0, 1.0, 3.0])  # not increasing: argmin itself
    np.testing.assert_array_equal(nearest(bumpy, np.array([1.1, 2.9])), [2, 3])


@needs_files
def test_the_process_pool_scores_numpy_pixels_too(tmp_path):
    """``score --processes 2``: the pool's workers decode numpy pixels for these methods too (no
    torch there); the scores are the in-process ones."""
    from PIL import Image

    paths = []
    for i, kind in enumerate(["edges", "noisy"]):
        paths.append(tmp_path / f"{kind}.png")
        Image.fromarray(as_uint8(synthetic(kind, 120, 150, seed=i))[0]).save(paths[-1])
    env = dict(os.environ, DIQA_BENCH_WEIGHTS=str(BRISQUE_FILE.parent))
    rows = {}
    for processes in ("1", "2"):
        out = subprocess.run([sys.executable, "-m", "diqa_bench.cli", "score", "-m", "niqe", "--device", "cpu", "--processes", processes,
                              "--cache-dir", str(tmp_path / processes), "--no-progress", *map(str, paths)],
                             capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        rows[processes] = out.stdout.splitlines()[1:]
    assert rows["1"] == rows["2"] and len(rows["1"]) == 2
