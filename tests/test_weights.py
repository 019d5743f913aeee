"""Weight resolution for the pyiqa methods: explicit option > weights folder > pyiqa's cache >
download, and a fast one-line MethodUnavailable when nothing is there and the machine is offline."""

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from diqa_bench.errors import MethodUnavailable
from diqa_bench.methods import MethodContext

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
BRISQUE_FILE = "brisque_svm_weights.pth"


def place(folder: Path, name: str = BRISQUE_FILE) -> Path:
    """A copy of the shared weights file (or a stand-in: resolution never reads the content)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if (SHARED / name).is_file():
        shutil.copyfile(SHARED / name, target)
    else:
        target.write_bytes(b"stand-in")
    return target


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Empty pyiqa cache, no weights env, no network: any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from pyiqa.utils import download_util  # pyiqa fixes its cache folder when imported

    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "torch" / "hub" / "pyiqa"))
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS", raising=False)
    monkeypatch.delenv("DIQA_BENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path


def recorded_checkpoint(monkeypatch):
    from diqa_pyiqa.zero_shot import PyiqaMetric

    seen = {}
    monkeypatch.setattr(PyiqaMetric, "build", lambda self, device, path=None, weights_dir=None: seen.setdefault("path", path))
    # BRISQUE on the CPU reads its file without building pyiqa's model (diqa_pyiqa.fast_brisque)
    monkeypatch.setattr("diqa_pyiqa.zero_shot.read_brisque_weights", lambda path: (seen.setdefault("path", path), None))
    return seen


def test_resolution_order(isolated, monkeypatch):
    from diqa_pyiqa.weights import find_weights, pyiqa_cache_dir
    from diqa_pyiqa.zero_shot import Brisque

    explicit = place(isolated / "explicit")
    folder = place(isolated / "folder").parent
    cached = place(pyiqa_cache_dir())
    assert cached.parent == isolated / "torch" / "hub" / "pyiqa"

    assert find_weights(BRISQUE_FILE, explicit, folder) == explicit
    assert find_weights(BRISQUE_FILE, explicit.parent, folder) == explicit  # a folder holding the file
    assert find_weights(BRISQUE_FILE, None, folder) == folder / BRISQUE_FILE
    monkeypatch.setenv("DIQA_BENCH_WEIGHTS", str(folder))
    assert find_weights(BRISQUE_FILE, None, None) == folder / BRISQUE_FILE
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS")
    assert find_weights(BRISQUE_FILE, None, None) == cached
    assert find_weights(BRISQUE_FILE, None, isolated / "empty") == cached

    seen = recorded_checkpoint(monkeypatch)
    Brisque(weights=str(explicit)).setup(MethodContext(weights_dir=folder))
    assert seen["path"] == explicit


def test_missing_explicit_file_is_reported_not_skipped(isolated):
    from diqa_pyiqa.zero_shot import Brisque

    place(isolated / "folder")
    with pytest.raises(MethodUnavailable, match="nowhere.pth"):
        Brisque(weights=str(isolated / "nowhere.pth")).setup(MethodContext(weights_dir=isolated / "folder"))


@pytest.mark.parametrize(
    "name, file_name",
    [
        ("brisque", "brisque_svm_weights.pth"),
        ("niqe", "niqe_modelparameters.mat"),
        ("musiq", "musiq_koniq_ckpt-e95806b9.pth"),
        ("musiq-spaq", "musiq_spaq_ckpt-358bb6af.pth"),
        ("musiq-ava", "musiq_ava_ckpt-e8d3f067.pth"),
        ("musiq-paq2piq", "musiq_paq2piq_ckpt-364c0c84.pth"),
    ],
)
def test_offline_failure_names_the_file_and_where_to_put_it(isolated, monkeypatch, name, file_name):
    from diqa_pyiqa.weights import pyiqa_cache_dir
    from diqa_pyiqa.zero_shot import ZERO_SHOT_METHODS

    monkeypatch.setenv("DIQA_BENCH_OFFLINE", "1")
    cls = next(c for c in ZERO_SHOT_METHODS if c.name == name)
    assert cls.checkpoint == file_name
    with pytest.raises(MethodUnavailable) as err:
        cls().setup(MethodContext(weights_dir=isolated / "empty"))
    message = str(err.value)
    assert "\n" not in message
    assert file_name in message and "DIQA_BENCH_WEIGHTS" in message and str(pyiqa_cache_dir()) in message


def test_hf_offline_also_prevents_downloads(isolated, monkeypatch):
    from diqa_pyiqa.zero_shot import Niqe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MethodUnavailable, match="niqe_modelparameters.mat"):
        Niqe().setup(MethodContext())


def test_failed_download_uses_a_timeout_and_leaves_no_file(isolated, monkeypatch):
    from diqa_pyiqa.weights import pyiqa_cache_dir
    from diqa_pyiqa.zero_shot import Brisque

    timeouts = []

    def unreachable(url, timeout=None):
        timeouts.append(timeout)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(MethodUnavailable, match=r"brisque_svm_weights.pth \(download failed"):
        Brisque(download_timeout=3).setup(MethodContext())
    assert timeouts == [3]
    assert not any(pyiqa_cache_dir().glob("*brisque*"))


def test_checkpoint_names_are_pyiqas(isolated):
    """The file names come from pyiqa's pretrained URLs (its arch modules' default_model_urls)."""
    from diqa_pyiqa.zero_shot import (
        Brisque,
        Musiq,
        MusiqAva,
        MusiqPaq2piq,
        MusiqSpaq,
        Niqe,
    )
    from pyiqa.archs import brisque_arch, musiq_arch, niqe_arch

    def file_of(url):
        return url.rsplit("/", 1)[-1]

    assert Brisque.checkpoint == file_of(brisque_arch.default_model_urls["url"])
    assert Niqe.checkpoint == file_of(niqe_arch.default_model_urls["niqe"])
    for cls, key in [(Musiq, "koniq10k"), (MusiqSpaq, "spaq"), (MusiqAva, "ava"), (MusiqPaq2piq, "paq2piq")]:
        assert cls.checkpoint == file_of(musiq_arch.default_model_urls[key])


def test_generic_method_takes_pyiqa_downloads_from_the_weights_folder(isolated, monkeypatch):
    from diqa_pyiqa.zero_shot import PyiqaAny

    monkeypatch.setenv("DIQA_BENCH_OFFLINE", "1")
    with pytest.raises(MethodUnavailable, match=BRISQUE_FILE):
        PyiqaAny(metric="brisque").setup(MethodContext(weights_dir=isolated / "empty"))
    if not (SHARED / BRISQUE_FILE).is_file():
        pytest.skip(f"{SHARED / BRISQUE_FILE} is absent")
    folder = place(isolated / "folder").parent
    method = PyiqaAny(metric="brisque")
    method.setup(MethodContext(weights_dir=folder))
    assert method.model is not None
