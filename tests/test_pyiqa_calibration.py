"""With the LIVE parameter files in ``<repo>/../shared/weights``, ``brisque`` and ``niqe`` reproduce
the scores pyiqa publishes for its calibration images (the ``ResultsCalibra`` images shipped in the
pyiqa wheel) within pyiqa's own tolerances.

The wheel ships the images but not the score table: the numbers below are the ``brisque(ours)`` and
``niqe(ours)`` rows of pyiqa's ``ResultsCalibra/calibration_summary.csv`` (pyiqa 0.1.x repository),
and the tolerances are pyiqa's ``TOL_DICT`` in ``tests/test_metric_general.py``.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

IMAGES = ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]
PUBLISHED = {
    "brisque": [94.6452, -0.1082, 1.0759, 5.1423, 66.8381],
    "niqe": [15.6538, 3.6549, 3.2342, 3.1921, 9.0722],
}
TOLERANCE = {"brisque": (1e-2, 8e-2), "niqe": (1e-2, 6e-2)}  # (atol, rtol), pyiqa's own
WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def calibration_dir() -> Path:
    spec = importlib.util.find_spec("pyiqa")
    return Path(next(iter(spec.submodule_search_locations))).parent / "ResultsCalibra" / "dist_dir"


@pytest.fixture(scope="module")
def calibration_batch():
    import torch

    from diqa_bench.cache import file_hash
    from diqa_bench.images import decode
    from diqa_bench.methods import Batch

    folder = calibration_dir()
    if not folder.is_dir():
        pytest.skip(f"pyiqa's calibration images are not installed at {folder}")
    paths = [folder / name for name in IMAGES]
    images = torch.stack([torch.from_numpy(decode(p)).permute(2, 0, 1) for p in paths])
    return Batch(images=images, keys=[file_hash(p) for p in paths], paths=[str(p) for p in paths], indices=list(range(len(paths))))


@pytest.mark.parametrize("name", ["brisque", "niqe"])
def test_reproduces_pyiqa_published_scores(name, calibration_batch, monkeypatch, tmp_path):
    if not WEIGHTS.is_dir():
        pytest.skip(f"LIVE parameter files not found at {WEIGHTS}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing may come from a personal pyiqa cache
    from diqa_pyiqa.zero_shot import Brisque, Niqe

    from diqa_bench.methods import MethodContext

    method = {"brisque": Brisque, "niqe": Niqe}[name]()
    method.setup(MethodContext(weights_dir=WEIGHTS))
    scores = np.asarray(method.score_batch(calibration_batch), dtype=np.float64)
    atol, rtol = TOLERANCE[name]
    np.testing.assert_allclose(scores, PUBLISHED[name], atol=atol, rtol=rtol)
