"""The zero-shot pyiqa methods: direction and range from pyiqa's metadata, float64 classical metrics
agreeing between batch sizes, and MUSIQ's architecture with RANDOM weights (no checkpoint here)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diqa_bench.errors import UserError
from diqa_bench.methods import Batch, MethodContext

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def textures(n: int, height: int, width: int, seed: int = 0):
    """Smooth random scenes with edges and mild noise: images BRISQUE/NIQE/PIQE give varied scores."""
    import torch
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = gaussian_filter(rng.random((height, width, 3)), sigma=(1 + i % 5, 1 + i % 5, 0))
        base = (base - base.min()) / (np.ptp(base) + 1e-9)
        base[: height // 3, : width // 2] *= 0.5  # a hard edge
        noisy = np.clip(base + rng.normal(0, 0.01 * (i % 4), base.shape), 0, 1)
        out.append(torch.from_numpy(np.round(noisy * 255) / 255).float().permute(2, 0, 1))
    return torch.stack(out)


def batch_of(images, offset: int = 0) -> Batch:
    n = images.shape[0]
    return Batch(images=images, keys=[f"k{offset + i}" for i in range(n)], paths=[f"img{offset + i}.png" for i in range(n)], indices=list(range(n)))


def test_plugin_import_is_light():
    code = "import sys, diqa_pyiqa, diqa_pyiqa.zero_shot, diqa_pyiqa.refit; print('pyiqa' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_registers_every_method():
    import diqa_pyiqa

    names = []
    diqa_pyiqa.register_methods(register=lambda cls: names.append(cls.name))
    assert names[:10] == ["brisque", "niqe", "piqe", "musiq", "musiq-spaq", "musiq-ava", "musiq-paq2piq", "pyiqa", "brisque-fit", "niqe-fit"]
    # then every other pyiqa metric under its own (lower-cased) name, once
    assert {"topiq_nr", "clipiqa", "maniqa", "lpips"} <= set(names[10:]) and len(names) == len(set(names))


def test_direction_and_range_come_from_pyiqa_metadata():
    from diqa_pyiqa.refit import BrisqueFit, NiqeFit
    from diqa_pyiqa.zero_shot import ZERO_SHOT_METHODS, PyiqaAny
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for cls in ZERO_SHOT_METHODS:
        if cls.metric:
            assert cls.lower_better == DEFAULT_CONFIGS[cls.metric].get("lower_better", False), cls.name
    assert [c.lower_better for c in ZERO_SHOT_METHODS[:4]] == [True, True, True, False]
    assert ZERO_SHOT_METHODS[0].score_range == (0.0, 150.0)  # brisque: '~0, ~150'
    assert PyiqaAny(metric="musiq-ava").score_range == (1.0, 10.0)
    assert PyiqaAny(metric="niqe").lower_better is True and PyiqaAny(metric="topiq_nr").lower_better is False
    assert NiqeFit.lower_better is True and BrisqueFit.lower_better is False  # brisque-fit predicts the MOS


def test_generic_method_rejects_unknown_and_full_reference_metrics():
    from diqa_pyiqa.zero_shot import PyiqaAny

    with pytest.raises(UserError, match="no metric 'brisq'"):
        PyiqaAny(metric="brisq")
    with pytest.raises(UserError, match="full-reference"):
        PyiqaAny(metric="lpips")


def classical(name):
    from diqa_pyiqa.zero_shot import Brisque, Niqe, Piqe

    cls = {"brisque": Brisque, "niqe": Niqe, "piqe": Piqe}[name]
    if cls.checkpoint and not (SHARED / cls.checkpoint).is_file():
        pytest.skip(f"{SHARED / cls.checkpoint} is absent")
    method = cls()
    method.setup(MethodContext(weights_dir=SHARED))
    return method


@pytest.mark.parametrize("name", ["brisque", "niqe", "piqe"])
def test_batch_of_one_and_sixteen_agree(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    method = classical(name)
    images = textures(16, 96, 112) if name == "niqe" else textures(16, 64, 80)
    together = np.asarray(method.score_batch(batch_of(images)))
    alone = np.array([float(method.score_batch(batch_of(images[i : i + 1], i))[0]) for i in range(16)])
    low, high = method.score_range
    assert np.isfinite(together).all() and np.ptp(together) > 0
    assert np.abs(together - alone).max() <= 1e-4 * (high - low)


@pytest.mark.parametrize("name", ["brisque"])  # PIQE's float64 path: tests/test_fast_piqe.py; NIQE's: test_fast_nss.py
def test_classical_metrics_run_in_float64(name, monkeypatch):
    """On the CPU BRISQUE goes through diqa_pyiqa.fast_brisque (pyiqa's float64 steps): its
    Gaussian normalisation, where float32 goes wrong, sees float64 planes."""
    import numpy as np
    from diqa_pyiqa import fast_brisque

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    method = classical(name)
    assert method.model is None  # no pyiqa model on the CPU's fast path
    seen = []
    real = fast_brisque.gauss_normalise
    monkeypatch.setattr(fast_brisque, "gauss_normalise", lambda x: (seen.append(x.dtype), real(x))[1])
    method.score_batch(batch_of(textures(2, 64, 64)))
    assert seen == [np.float64] * 4  # two images, two scales (numpy planes: the fast path imports no torch)


def test_niqe_rejects_images_smaller_than_its_blocks(monkeypatch):
    from diqa_bench.errors import DataError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="img0.png: NIQE needs at least 96x96"):
        classical("niqe").score_batch(batch_of(textures(1, 64, 200)))


def test_musiq_architecture_with_random_weights_batches_any_size():
    """RANDOM weights: no MUSIQ checkpoint is available here, so this checks only the plumbing
    (batching, variable input sizes, one finite score per image), never the scores' meaning.
    One transformer layer and small rescaled sizes keep it fast on a CPU; the multi-scale patching
    of the native-resolution image is pyiqa's, unchanged."""
    import torch
    from diqa_pyiqa.zero_shot import Musiq, MusiqAva

    torch.manual_seed(0)
    method = Musiq()
    method.build("cpu", None, num_layers=1, longer_side_lengths=[64, 96])  # no checkpoint: random weights
    for height, width in [(96, 160), (200, 120)]:
        images = textures(3, height, width, seed=height)
        together = np.asarray(method.score_batch(batch_of(images)))
        alone = np.array([float(method.score_batch(batch_of(images[i : i + 1], i))[0]) for i in range(3)])
        assert together.shape == (3,) and np.isfinite(together).all()
        np.testing.assert_allclose(together, alone, atol=1e-4 * 100)
    ava = MusiqAva()
    ava.build("cpu", None, num_layers=1, longer_side_lengths=[64])
    assert ava.model.net.head[0].out_features == 10  # AVA's 10-bin head, as its checkpoint needs
    score = float(ava.score_batch(batch_of(textures(1, 64, 96)))[0])
    assert 1.0 <= score <= 10.0
