"""brisque-fit and niqe-fit on small synthetic sets (textures blurred at increasing levels, the
synthetic MOS decreasing with blur): the refitted models rank held-out images by MOS, features are
extracted once per image whatever the train set, and fitted models survive save/load."""

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from diqa_bench.cache import file_hash
from diqa_bench.images import training_loader
from diqa_bench.methods import Batch, MethodContext, TrainingData, TrainSample

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"
BLUR_SIGMAS = [0.0, 1.0, 2.0, 3.5]


def synthetic_blur_set(folder: Path, groups: int, height: int, width: int) -> list[TrainSample]:
    """Synthetic images: per group one random texture with edges, blurred at each level."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for g in range(groups):
        rng = np.random.default_rng(g)
        base = gaussian_filter(rng.random((height, width, 3)), sigma=(0.7, 0.7, 0))
        base = (base - base.min()) / np.ptp(base)
        base[height // 4 : height // 2, width // 3 :] *= 0.4
        for level, sigma in enumerate(BLUR_SIGMAS):
            img = gaussian_filter(base, sigma=(sigma, sigma, 0)) if sigma else base
            path = folder / f"g{g}_blur{level}.png"
            Image.fromarray(np.uint8(np.clip(img, 0, 1) * 255 + 0.5)).save(path)
            mos = 1.0 - level / (len(BLUR_SIGMAS) - 1)
            samples.append(TrainSample(key=file_hash(path), path=str(path), mos=mos, mos_norm=mos, dataset="synthetic-blur", domain="synthetic", group=f"g{g}"))
    return samples


def batches(samples: list[TrainSample], ctx: MethodContext):
    return training_loader(ctx)(samples, list(range(len(samples))), 16, None, False, 0)


def score_all(method, samples, ctx) -> np.ndarray:
    scores = np.empty(len(samples))
    for batch in batches(samples, ctx):
        scores[batch.indices] = np.asarray(method.score_batch(batch), dtype=np.float64)
    return scores


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return synthetic_blur_set(tmp_path_factory.mktemp("synthetic-blur"), groups=6, height=64, width=72)


@pytest.fixture
def counted_extraction(monkeypatch):
    """Counts the images that go through the feature extractors."""
    from diqa_pyiqa import features

    counts = {"images": 0}
    for name in ("brisque_features", "niqe_block_features"):
        real = getattr(features, name)

        def counting(images, paths=(), _real=real):
            counts["images"] += images.shape[0]
            return _real(images, paths)

        monkeypatch.setattr(features, name, counting)
    return counts


def data_of(samples, ctx):
    return TrainingData(samples=list(samples), loader=training_loader(ctx))


def test_brisque_fit_ranks_held_out_images_by_mos(small_set, tmp_path):
    from diqa_pyiqa.refit import BrisqueFit

    ctx = MethodContext(cache_dir=tmp_path, seed=0)
    train = [s for s in small_set if s.group not in ("g4", "g5")]
    test = [s for s in small_set if s.group in ("g4", "g5")]
    method = BrisqueFit(cv_folds=4)
    method.setup(ctx)
    method.fit(data_of(train, ctx), ctx)
    assert method.cv_report["cv_folds"] == 4 and method.cv_report["cv_srocc"] > 0.5
    scores = score_all(method, test, ctx)
    assert spearmanr(scores, [s.mos_norm for s in test]).statistic > 0.8

    method.save(tmp_path / "fit")
    loaded = BrisqueFit()
    loaded.load(tmp_path / "fit")
    loaded.setup(MethodContext(cache_dir=tmp_path / "other-cache"))
    np.testing.assert_allclose(score_all(loaded, test, ctx), scores, rtol=0, atol=1e-12)


def test_feature_cache_makes_refitting_free(small_set, tmp_path, counted_extraction):
    from diqa_pyiqa.refit import BrisqueFit

    ctx = MethodContext(cache_dir=tmp_path, seed=0)
    per_group = len(BLUR_SIGMAS)
    first = [s for s in small_set if s.group in ("g0", "g1", "g2")]
    second = [s for s in small_set if s.group in ("g2", "g3")]
    BrisqueFit().fit(data_of(first, ctx), ctx)
    assert counted_extraction["images"] == 3 * per_group
    BrisqueFit().fit(data_of(second, ctx), ctx)  # another train set: only g3 is new
    assert counted_extraction["images"] == 4 * per_group
    BrisqueFit(C_grid=[3.0]).fit(data_of(first + second, ctx), ctx)
    assert counted_extraction["images"] == 4 * per_group
    scorer = BrisqueFit()
    scorer.setup(ctx)
    scorer.fit(data_of(first, ctx), ctx)
    score_all(scorer, second, ctx)  # scoring reads the same cache
    assert counted_extraction["images"] == 4 * per_group


def test_niqe_fit_refits_the_pristine_gaussian(tmp_path, counted_extraction):
    from diqa_pyiqa.refit import NiqeFit

    samples = synthetic_blur_set(tmp_path / "images", groups=4, height=192, width=384)
    ctx = MethodContext(cache_dir=tmp_path, seed=0)
    train = [s for s in samples if s.group != "g3"]
    test = [s for s in samples if s.group == "g3"]
    method = NiqeFit(quantile=0.5)
    method.setup(ctx)
    method.fit(data_of(train, ctx), ctx)
    assert method.fit_info["pristine_images"] == 6  # the two sharpest images of each train group
    assert method.fit_info["blocks"] == 6 * 8  # 2 x 4 blocks of 96x96 per image
    assert method.mu.shape == (36,) and method.cov.shape == (36, 36)
    scores = score_all(method, test, ctx)
    # NIQE is lower-better: the two blurrier images lie further from the pristine Gaussian
    assert scores[2:].min() > scores[:2].max() and scores[3] > scores[2]
    assert counted_extraction["images"] == len(samples)

    method.save(tmp_path / "fit")
    loaded = NiqeFit()
    loaded.load(tmp_path / "fit")
    loaded.setup(ctx)
    np.testing.assert_allclose(score_all(loaded, test, ctx), scores, rtol=1e-12)


def test_niqe_fit_needs_enough_pristine_blocks(small_set, tmp_path):
    from diqa_pyiqa.refit import NiqeFit

    from diqa_bench.errors import DataError

    ctx = MethodContext(cache_dir=tmp_path)
    with pytest.raises(DataError, match="at least 96x96"):
        NiqeFit().fit(data_of(small_set[:2], ctx), ctx)


def test_refit_features_are_pyiqas(tmp_path, monkeypatch):
    """With the LIVE parameters, the cached features reproduce pyiqa's BRISQUE and NIQE scores."""
    import torch
    from diqa_pyiqa import features
    from diqa_pyiqa.refit import NiqeFit
    from diqa_pyiqa.zero_shot import Brisque, Niqe
    from pyiqa.archs.brisque_arch import rbf_kernel, scale_features

    if not (SHARED / "brisque_svm_weights.pth").is_file() or not (SHARED / "niqe_modelparameters.mat").is_file():
        pytest.skip(f"LIVE parameter files not found in {SHARED}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    samples = synthetic_blur_set(tmp_path / "images", groups=1, height=96, width=192)
    ctx = MethodContext(weights_dir=SHARED, cache_dir=tmp_path)
    batch: Batch = next(iter(batches(samples, ctx)))

    brisque = Brisque()
    brisque.setup(ctx)
    sv_coef, sv = torch.load(SHARED / "brisque_svm_weights.pth", weights_only=False)
    feats = torch.from_numpy(features.brisque_features(batch.images))
    live = rbf_kernel(scale_features(feats), sv.double().t(), 0.05) @ sv_coef.double() + 153.591
    np.testing.assert_allclose(live.numpy(), np.asarray(brisque.score_batch(batch)), atol=1e-8)

    from scipy.io import loadmat

    params = loadmat(SHARED / "niqe_modelparameters.mat")
    niqe_fit = NiqeFit()
    niqe_fit.setup(ctx)
    niqe_fit.set_model(params["mu_prisparam"], params["cov_prisparam"])
    niqe = Niqe()
    niqe.setup(ctx)
    np.testing.assert_allclose(np.asarray(niqe_fit.score_batch(batch)), np.asarray(niqe.score_batch(batch)), atol=1e-8)


@pytest.mark.parametrize("kind", ["brisque-fit", "niqe-fit"])
def test_score_from_cache_equals_score_batch(tmp_path, kind):
    """Images whose features are cached are scored without decoding, to the same values."""
    from diqa_pyiqa.refit import BrisqueFit, NiqeFit

    samples = synthetic_blur_set(tmp_path / "images", groups=3, height=192, width=384)
    ctx = MethodContext(cache_dir=tmp_path, seed=0)
    method = BrisqueFit(cv_folds=2) if kind == "brisque-fit" else NiqeFit(quantile=0.25)
    method.setup(ctx)
    assert method.score_from_cache([s.key for s in samples]) == {}  # not fitted yet
    method.fit(data_of(samples[:8], ctx), ctx)
    from_pixels = score_all(method, samples, ctx)  # caches the features of the other 4 too
    keys = [s.key for s in samples] + ["never-seen"]
    from_cache = method.score_from_cache(keys)
    assert set(from_cache) == {s.key for s in samples}
    np.testing.assert_allclose([from_cache[s.key] for s in samples], from_pixels, rtol=1e-12, atol=1e-12)
