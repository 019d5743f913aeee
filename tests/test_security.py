"""Hostile files: weights that carry code, configs that explode, images that claim to be huge.
Each test reproduces an attack and checks the one-line refusal (CPU only, no network)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diqa_bench import cli
from diqa_bench.errors import MethodUnavailable
from diqa_bench.methods import MethodContext

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
if not SHARED_WEIGHTS.is_dir() and os.environ.get("DIQA_BENCH_WEIGHTS"):  # a checkout elsewhere
    SHARED_WEIGHTS = Path(os.environ["DIQA_BENCH_WEIGHTS"])


class _Payload:
    """Unpickling this creates ``marker``: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def evil_pth(path: Path, marker: Path, wrap=lambda payload: payload) -> Path:
    import torch

    torch.save(wrap(_Payload(marker)), str(path))
    return path


@pytest.fixture
def offline_pyiqa(monkeypatch, tmp_path):
    """pyiqa's cache in tmp (empty), no weights folder: nothing comes from the machine."""
    from pyiqa.utils import download_util

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa-cache"))
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS", raising=False)
    return tmp_path


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


@pytest.mark.parametrize("method", ["brisque", "musiq"])
def test_score_refuses_weights_that_carry_code(offline_pyiqa, capsys, method):
    tmp = offline_pyiqa
    marker = tmp / "pwned"
    weights = evil_pth(tmp / "EVIL.pth", marker, wrap=(lambda p: (p, p)) if method == "brisque" else (lambda p: {"w": p}))
    code = cli.main(["score", "-m", method, "--weights", str(weights), "--device", "cpu", str(_images(tmp / "imgs"))])
    err = capsys.readouterr().err
    assert not marker.exists(), "the weights file's code ran"
    assert code == 2
    assert "refused" in err and "EVIL.pth" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_weights_folder_with_a_crafted_brisque_file_is_refused(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque

    folder = offline_pyiqa / "weights"
    folder.mkdir()
    marker = offline_pyiqa / "pwned"
    evil_pth(folder / "brisque_svm_weights.pth", marker, wrap=lambda p: (p, p))
    with pytest.raises(MethodUnavailable, match="refused"):
        Brisque().setup(MethodContext(weights_dir=folder))
    assert not marker.exists()


def test_generic_pyiqa_method_cannot_unpickle_code_either(offline_pyiqa):
    """The generic method reaches pyiqa's own loaders (weights_only=False): they are forced safe."""
    from diqa_pyiqa.zero_shot import PyiqaAny

    marker = offline_pyiqa / "pwned"
    weights = evil_pth(offline_pyiqa / "EVIL.pth", marker, wrap=lambda p: (p, p))
    with pytest.raises(MethodUnavailable, match="refused"):
        PyiqaAny(metric="brisque", weights=str(weights)).setup(MethodContext())
    assert not marker.exists()
    import torch

    assert torch.load.__module__.startswith("torch"), "torch.load stays patched after the build"


def test_malformed_weights_file_is_one_line(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque, Musiq

    junk = offline_pyiqa / "junk.pth"
    junk.write_bytes(b"\x80\x04 not a torch file at all")
    for cls in (Brisque, Musiq):
        with pytest.raises(MethodUnavailable, match="not a readable torch file"):
            cls(weights=str(junk)).setup(MethodContext())


@pytest.mark.skipif(not (SHARED_WEIGHTS / "brisque_svm_weights.pth").is_file(), reason="needs ../shared/weights")
def test_generic_method_never_writes_into_pyiqas_cache(offline_pyiqa):
    """A file pyiqa asks for is read in place from the weights folder, not copied into its cache."""
    from diqa_pyiqa.zero_shot import PyiqaAny

    folder = offline_pyiqa / "weights"
    folder.mkdir()
    shutil.copyfile(SHARED_WEIGHTS / "brisque_svm_weights.pth", folder / "brisque_svm_weights.pth")
    method = PyiqaAny(metric="brisque")
    method.setup(MethodContext(weights_dir=folder))
    assert method.model is not None
    cache = offline_pyiqa / "pyiqa-cache"
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.skipif(not (SHARED_WEIGHTS / "brisque_svm_weights.pth").is_file(), reason="needs ../shared/weights")
def test_genuine_brisque_weights_still_load(offline_pyiqa):
    from diqa_pyiqa.zero_shot import Brisque

    method = Brisque()
    method.setup(MethodContext(weights_dir=SHARED_WEIGHTS))
    assert method.model.net.sv.shape[0] > 0
