"""Every image size gets an answer: each built-in method (and the example plugin's) on images from
1x1 to 64x64 pixels, square and both orientations, gives a finite score or a recorded skip with its
reason, through the harness's one scoring path, never NaN and never a failed batch.

``musiq`` is left out: it needs a checkpoint that is not in the shared weights folder, and the
project has no way to build it with random weights."""

import math
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from test_classical_fit import synthetic_blur_set  # noqa: E402

from diqa_bench.cache import file_hash  # noqa: E402
from diqa_bench.images import training_loader  # noqa: E402
from diqa_bench.methods import MethodContext, TrainingData  # noqa: E402
from diqa_bench.session import compute_scores  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
SIZES = [(1, 1), (1, 7), (7, 1), (3, 3), (7, 8), (8, 7), (12, 12), (23, 24), (24, 23), (32, 32), (33, 31), (40, 40), (64, 64), (17, 64), (64, 17)]
METHODS = ["brisque", "niqe", "piqe", "brisque-fit", "niqe-fit", "cross-domain", "laplacian-variance"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def sized_images(tmp_path_factory):
    """One textured PNG per size (height x width)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("sizes")
    rng = np.random.default_rng(0)
    paths = []
    for h, w in SIZES:
        path = folder / f"img_{h}x{w}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sizes-cache")


def _ready(name: str, cache_dir: Path, tmp: Path):
    """The method, set up (and fitted on small synthetic images when it is trainable)."""
    ctx = MethodContext(device="cpu", batch_size=4, cache_dir=cache_dir, seed=0,
                        weights_dir=SHARED if SHARED.is_dir() else None)
    if name in ("brisque", "niqe") and not (SHARED / {"brisque": "brisque_svm_weights.pth", "niqe": "niqe_modelparameters.mat"}[name]).exists():
        pytest.skip(f"{name}: its weights file is not in {SHARED}")
    if name == "laplacian-variance":
        from diqa_example.method import LaplacianVariance

        method = LaplacianVariance()
    elif name == "niqe-fit":
        from diqa_pyiqa.refit import NiqeFit

        method = NiqeFit(quantile=0.5)
    elif name == "cross-domain":
        from diqa_cross_domain.method import CrossDomain

        method = CrossDomain(mode="head", epochs=2, val_ratio=0, image_size=64)
    else:
        from diqa_pyiqa import zero_shot
        from diqa_pyiqa.refit import BrisqueFit

        method = {"brisque": zero_shot.Brisque, "niqe": zero_shot.Niqe, "piqe": zero_shot.Piqe, "brisque-fit": BrisqueFit,
                  }[name]()
    method.setup(ctx)
    if method.trainable:
        height, width = (192, 384) if name == "niqe-fit" else (64, 72)
        samples = synthetic_blur_set(tmp / "train", groups=4, height=height, width=width)
        method.fit(TrainingData(samples=samples, loader=training_loader(ctx)), ctx)
    return method, ctx


@pytest.mark.parametrize("name", METHODS)
def test_every_size_gets_a_finite_score_or_a_skip_with_its_reason(name, sized_images, cache_dir, tmp_path):
    method, ctx = _ready(name, cache_dir, tmp_path)
    keys = [file_hash(p) for p in sized_images]
    scores: dict[str, float] = {}
    skipped: dict[int, str] = {}
    # run's semantics (no skip_failing): only a DataError or a non-finite score may become a skip
    compute_scores(method, ctx, sized_images, keys, registry=None, processes=1, on_error=skipped.__setitem__,
                   commit=scores.update, ensure_setup=lambda: None)
    for pos, (path, key) in enumerate(zip(sized_images, keys)):
        size = "x".join(map(str, SIZES[pos]))
        if key in scores:
            assert math.isfinite(scores[key]), f"{name} {size}: {scores[key]}"
            assert pos not in skipped
        else:
            assert skipped.get(pos, "").strip(), f"{name} {size}: neither a score nor a reason"
    if name == "cross-domain":  # a real score at every size (upscaled below 64 px)
        assert not skipped, skipped
    if name in ("brisque", "brisque-fit", "piqe", "laplacian-variance"):  # each small image says why
        minimum = {"brisque": 7, "brisque-fit": 7, "piqe": 8, "laplacian-variance": 3}[name]
        small = {pos for pos, (h, w) in enumerate(SIZES) if min(h, w) < minimum}
        assert small <= set(skipped) and all(f"{minimum}x{minimum}" in skipped[p] for p in small), skipped
    if name in ("niqe", "niqe-fit"):  # 96x96 blocks: no image here is large enough, each says so
        assert len(skipped) == len(SIZES) and all("96" in why for why in skipped.values()), skipped


def test_cross_domain_upscales_only_images_below_64_px():
    from diqa_cross_domain.inputs import MIN_SIDE, InputPolicy, at_least

    x = torch.rand(2, 3, 192, 192)
    assert at_least(x) is x  # the default benchmark's images are never resampled
    assert InputPolicy("native").eval_views(x).shape[-2:] == (192, 192)
    assert at_least(torch.rand(1, 3, 3, 40)).shape[-2:] == (MIN_SIDE, round(40 * MIN_SIDE / 3))
    assert at_least(torch.rand(1, 3, 1, 1)).shape[-2:] == (MIN_SIDE, MIN_SIDE)


def test_cross_domain_score_of_a_192_px_image_is_unchanged_bit_for_bit(tmp_path):
    """The small-image rule must not move any image at or above 64 px: a 192x192 image scores
    exactly as it does without the rule (``at_least`` replaced by the identity)."""
    from diqa_cross_domain import inputs
    from diqa_cross_domain.method import CrossDomain

    from diqa_bench.methods import Batch

    samples = synthetic_blur_set(tmp_path / "train", groups=3, height=64, width=72)
    ctx = MethodContext(device="cpu", batch_size=4, cache_dir=tmp_path / "cache-a", seed=0)
    method = CrossDomain(mode="head", epochs=2, val_ratio=0)
    method.setup(ctx)
    method.fit(TrainingData(samples=samples, loader=training_loader(ctx)), ctx)
    image = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(1))
    batch = Batch(images=image, keys=["k192"], paths=["x.png"], indices=[0])
    with_rule = torch.as_tensor(method.score_batch(batch)).clone()
    real = inputs.at_least
    inputs.at_least = lambda images, side=inputs.MIN_SIDE: images
    try:
        again = Batch(images=image.clone(), keys=["k192-again"], paths=["x.png"], indices=[0])  # a new key: no cached features
        without = torch.as_tensor(method.score_batch(again))
    finally:
        inputs.at_least = real
    assert torch.equal(with_rule, without)
