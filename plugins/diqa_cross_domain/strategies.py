"""How the cross-domain model trains and scores, one class per mode.

- :class:`HeadStrategy` (``mode: head``): the backbone stays frozen and is read at several depths;
  each image's features are computed once and kept in the shared feature cache, so every cell of a
  benchmark reuses them and only a small MLP trains. Cheap enough for a CPU.
- :class:`FinetuneStrategy` (``mode: finetune``): the whole network trains on decoded images (bf16
  autocast and channels_last on CUDA); every optimizer step holds each domain's share of images.

Both feed the hand-crafted block (option ``handcrafted``) to the head beside the backbone's, and
share the validation split, loss, optimizer and epoch loop (:class:`Strategy`).
:class:`diqa_cross_domain.method.CrossDomain` owns the options and picks the strategy.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from diqa_bench.errors import ConfigError, DataError, MethodUnavailable
from diqa_bench.methods import Batch, MethodContext, TrainingData
from diqa_cross_domain.backbones import build_backbone, resolve_weights
from diqa_cross_domain.sampling import (
    balanced_draw,
    domain_quotas,
    sample_probabilities,
    stratified_draw,
    validation_split,
    within_dataset_pairs,
)

if TYPE_CHECKING:  # torch is imported inside the methods: `diqa-bench list` must not pay for it
    import torch
    from torch import nn

    from diqa_cross_domain.inputs import InputPolicy
    from diqa_cross_domain.networks import QualityHead

FEATURE_VERSION = "4"  # bump when the way backbone features are computed changes
HANDCRAFTED_VERSION = "2"  # bump when diqa_cross_domain.handcrafted changes
MIN_VAL_GROUPS = 4  # a domain with fewer content groups than this gives none to the validation split


class Strategy:
    """What both modes share. ``opts``: the resolved options this model runs with (the configured
    ones for a fit, the checkpoint's for a loaded model)."""

    mode: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}  # epochs, patience, batch_size when the options leave them None
    features_read: ClassVar[str | None] = None  # the backbone features the head reads; None: option ``features``

    def __init__(self, opts: dict[str, Any], ctx: MethodContext | None, device: torch.device) -> None:
        self.opts = opts
        self.ctx = ctx
        self.device = device
        self.backbone: nn.Module | None = None
        self.head: QualityHead | None = None
        self.weights_id: str | None = None  # hash of the ImageNet weights file the backbone started from
        self.handcrafted_cache = None
        self.features_extracted = 0  # images sent through the backbone for the feature cache
        self.history: list[dict[str, float]] = []
        self.training_info: dict[str, Any] = {}
        self._built: tuple | None = None  # what the backbone was built from

    # -- configuration -----------------------------------------------------------------------------
    @property
    def policy(self) -> InputPolicy:
        return input_policy(self.opts)

    def setting(self, key: str, ctx: MethodContext) -> Any:
        return self.opts[key] if self.opts[key] is not None else self.defaults[key]

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        import torch

        if self.on_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def uses_handcrafted(self) -> bool:
        return self.opts["handcrafted"] != "none"

    def describe(self) -> dict[str, Any]:
        return describe(self.mode, self.opts, self.features_read)

    # -- backbone and caches -----------------------------------------------------------------------
    def build(self, pretrained: bool, previous: Strategy | None = None) -> None:
        """The backbone on the device, taken over from ``previous`` when built the same way (e.g.
        the runner's setup() followed by load() of a fit made with the same backbone).
        ``pretrained=False`` skips the ImageNet weights (a finetune checkpoint brings its own)."""
        import torch

        built = (self.opts["backbone"], self.opts["backbone_weights"], self.mode, pretrained, str(self.device))
        self._built = built
        if previous is not None and previous.backbone is not None and previous._built == built:
            self.backbone, self.weights_id = previous.backbone, previous.weights_id
        else:
            if pretrained:
                from diqa_bench.cache import file_hash

                weights = resolve_weights(self.opts["backbone"], self.opts["backbone_weights"], self.ctx.weights_dir if self.ctx else None)
                self.weights_id = file_hash(weights)
                model = build_backbone(self.opts["backbone"], weights)
            else:
                import timm

                model = timm.create_model(self.opts["backbone"], pretrained=False, num_classes=0)
            model = model.to(self.device)
            if self.on_cuda:
                model = model.to(memory_format=torch.channels_last)
            self.backbone = self.wrap_backbone(model).eval()
        self.open_caches()

    def wrap_backbone(self, model: nn.Module) -> nn.Module:
        return model

    def open_caches(self) -> None:
        ns = f"cross-domain/hc{HANDCRAFTED_VERSION}/{self.opts['handcrafted']}/m{self.opts['max_short_side']}"
        self.handcrafted_cache = self.ctx.feature_cache(ns) if (self.ctx and self.uses_handcrafted) else None

    def backbone_width(self) -> int:
        """How many backbone features the head reads."""
        raise NotImplementedError

    def new_head(self) -> QualityHead:
        from diqa_cross_domain.handcrafted import feature_dim
        from diqa_cross_domain.networks import QualityHead

        return QualityHead(self.backbone_width() + feature_dim(self.opts["handcrafted"]), self.opts["head_hidden"]).to(self.device)

    def teardown(self) -> None:
        import torch

        self.backbone = None
        self.head = None
        if self.on_cuda:
            torch.cuda.empty_cache()

    # -- features ----------------------------------------------------------------------------------
    def handcrafted(self, images: torch.Tensor) -> torch.Tensor:
        """Hand-crafted features of whole images ([B, D] float32), at native resolution up to a
        short side of ``max_short_side`` (larger images are downscaled to it, bounding the cost)."""
        import torch.nn.functional as F

        from diqa_cross_domain import handcrafted
        from diqa_cross_domain.inputs import at_least

        images = at_least(images)  # below 64 px some statistics have too few pixels (inputs.py)
        h, w = images.shape[-2:]
        cap = self.opts["max_short_side"]
        if min(h, w) > cap:
            scale = cap / min(h, w)
            images = F.interpolate(images, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return handcrafted.features(images.float(), self.opts["handcrafted"])

    def row(self, parts: list[np.ndarray]) -> np.ndarray:
        """One image's cached blocks joined into the head's input row."""
        return np.concatenate(parts).astype(np.float32, copy=False)

    def cached_features(self, keys: list[str], compute, sources: list[tuple[Any, Callable]]) -> dict[str, np.ndarray]:
        """Rows for ``keys`` from the ``sources`` ((cache, extractor) blocks, in input order);
        ``compute(missing_keys)`` yields (keys, images) batches for the rest, whose missing blocks
        are computed and stored."""
        import torch

        unique = list(dict.fromkeys(keys))
        found = [cache.get_many(unique) if cache is not None else {} for cache, _ in sources]
        missing = [k for k in unique if any(k not in f for f in found)]
        if missing:
            from diqa_bench.threads import single_thread

            # One CPU thread: when other processes share the cores, threads wait on each other (one
            # thread was several times faster per image on a loaded 2-core machine: docs/cross_domain.md,
            # "Cost"); an idle machine loses at most the second core.
            with torch.inference_mode(), single_thread(self.on_cuda):
                for batch_keys, images in compute(missing):
                    images = images.to(self.device)
                    for (cache, extract), have in zip(sources, found):
                        todo = [i for i, k in enumerate(batch_keys) if k not in have]
                        if not todo:
                            continue
                        feats = extract(images[todo] if len(todo) < len(batch_keys) else images).cpu().numpy().astype(np.float32)
                        new = {batch_keys[i]: f for i, f in zip(todo, feats)}
                        if extract != self.handcrafted:  # a backbone pass
                            self.features_extracted += len(new)
                        if cache is not None:
                            cache.put_many(new)
                        have.update(new)
        return {k: self.row([f[k] for f in found]) for k in unique}

    def training_features(self, data: TrainingData, ctx: MethodContext, sources) -> torch.Tensor:
        """[N, F] rows of every training sample, in sample order."""
        import torch

        samples = data.samples
        first_position = {}
        for i, s in enumerate(samples):
            first_position.setdefault(s.key, i)

        def compute(missing):
            for batch in data.batches([first_position[k] for k in missing], batch_size=ctx.batch_size):
                yield batch.keys, batch.images

        found = self.cached_features([s.key for s in samples], compute, sources)
        return torch.from_numpy(np.stack([found[s.key] for s in samples])).to(self.device)

    # -- training ----------------------------------------------------------------------------------
    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        from diqa_cross_domain.networks import deterministic

        samples = data.samples
        if len(samples) < 2:
            raise DataError(f"cross-domain: needs at least 2 training images, got {len(samples)}")
        targets = np.array([s.mos_norm for s in samples], dtype=np.float32)
        if not np.isfinite(targets).all():
            raise DataError("cross-domain: a training sample has a non-finite mos_norm")
        groups = [f"{s.dataset}\x00{s.group}" for s in samples]  # group names are unique within a dataset only
        train_idx, val_idx = validation_split([s.domain for s in samples], groups, self.opts["val_ratio"], ctx.seed, MIN_VAL_GROUPS)

        # Features first: decoding draws from torch's global RNG only when something is missing
        # from the cache, so seeding afterwards makes a fit independent of the cache's state.
        features = self.training_inputs(data, ctx)
        with deterministic(ctx.seed, self.on_cuda):
            self.head = self.new_head()
            self.train(data, features, targets, train_idx, val_idx, ctx)
        self.training_info = describe_training(data, train_idx, val_idx, self.history)

    def training_inputs(self, data: TrainingData, ctx: MethodContext) -> torch.Tensor | None:
        """Per-sample features computed once before training (from the caches where possible)."""
        raise NotImplementedError

    def train(self, data: TrainingData, features, targets: np.ndarray, train_idx: list[int], val_idx: list[int], ctx: MethodContext) -> None:
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, target: torch.Tensor, datasets, sample_ids) -> torch.Tensor:
        import torch

        from diqa_cross_domain.losses import quality_loss

        pairs = within_dataset_pairs(datasets, sample_ids)
        pair_tensor = torch.from_numpy(pairs).to(pred.device) if len(pairs) else None
        return quality_loss(self.opts["loss"], pred, target, pair_tensor, self.opts["mix_weight"], self.opts["rank_sigma"])

    def validation_loss(self, pred, target, datasets, domains) -> float:
        """The loss on each domain's validation images, averaged over domains with equal weight (as
        training draws them), so the larger domain does not choose the epoch alone."""
        import torch

        datasets, domains = np.asarray(datasets), np.asarray(domains)
        losses = []
        for d in np.unique(domains):
            rows = np.flatnonzero(domains == d)
            at = torch.from_numpy(rows).to(pred.device)
            losses.append(float(self.loss(pred[at], target[at], datasets[rows], None)))
        return float(np.mean(losses))

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": self.opts["lr"]}]

    def optimizer(self, epochs: int):
        import torch

        opt = torch.optim.AdamW(self.parameter_groups(), weight_decay=self.opts["weight_decay"])
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    def train_loop(self, epochs, patience, train_epoch, val_loss, sched, trained) -> None:
        """Epochs with a cosine schedule; with a validation split, stop after ``patience`` epochs
        without improvement and restore the best epoch's weights."""
        self.history = []
        best, best_state, stale = math.inf, None, 0
        for epoch in range(epochs):
            record = {"epoch": epoch, "train_loss": train_epoch()}
            sched.step()
            if val_loss is not None:
                record["val_loss"] = val_loss()
                if record["val_loss"] < best - 1e-6:
                    best, stale = record["val_loss"], 0
                    best_state = copy.deepcopy(trained().state_dict())
                else:
                    stale += 1
            self.history.append(record)
            if val_loss is not None and stale >= patience:
                break
        if best_state is not None:
            trained().load_state_dict(best_state)

    # -- scoring -----------------------------------------------------------------------------------
    def score_batch(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        return {}

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        return {"mode": self.mode, "backbone_weights_id": self.weights_id, "input_policy": asdict(self.policy)}

    def state(self) -> dict[str, Any]:
        """The tensors a checkpoint holds."""
        return {"head": self.head.state_dict()}

    def restore(self, checkpoint: dict[str, Any], previous: Strategy | None) -> None:
        """Rebuild the fitted model from a checkpoint (``meta`` plus :meth:`state`)."""
        self.training_info = checkpoint["meta"].get("training", {})
        self.head = self.new_head()
        self.head.load_state_dict(checkpoint["head"])
        self.head.eval()


class HeadStrategy(Strategy):
    """Frozen backbone read at several depths (:class:`diqa_cross_domain.networks.MultiLevelFeatures`;
    option ``features`` picks which columns the head reads), features cached per image, small MLP."""

    mode = "head"
    defaults: ClassVar[dict[str, Any]] = {"epochs": 150, "patience": 10, "batch_size": 64}

    def __init__(self, opts: dict[str, Any], ctx: MethodContext | None, device: torch.device) -> None:
        super().__init__(opts, ctx, device)
        if not self.uses_backbone_features and not self.uses_handcrafted:
            raise ConfigError("cross-domain: features: none needs hand-crafted features (option handcrafted: nss or full)")
        self.feature_cache = None
        self.columns: list[int] = []  # which cached backbone features the head reads

    @property
    def uses_backbone_features(self) -> bool:
        return self.opts["features"] != "none"

    def wrap_backbone(self, model: nn.Module) -> nn.Module:
        from diqa_cross_domain.networks import MultiLevelFeatures

        model.requires_grad_(False)
        return MultiLevelFeatures(model)

    def feature_namespace(self) -> str:
        # every stage is cached, whatever ``features`` selects: one extraction serves every selection
        precision = "bf16" if self.on_cuda else "fp32"
        return f"cross-domain/f{FEATURE_VERSION}/{self.opts['backbone']}/{self.weights_id}/{self.policy.token()}/{precision}/multilevel"

    def open_caches(self) -> None:
        super().open_caches()
        self.columns = self.backbone.columns(self.opts["features"])
        self.feature_cache = self.ctx.feature_cache(self.feature_namespace()) if self.ctx else None

    def backbone_width(self) -> int:
        return len(self.columns)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features of the eval views, averaged over views: [B, F] float32."""
        import torch

        views = self.policy.eval_views(images.to(self.device))
        if self.on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.backbone(views).float()
        return out.view(images.shape[0], self.policy.views_per_image, -1).mean(1)

    def sources(self) -> list[tuple[Any, Callable]]:
        """(cache, extractor) of each feature block the head reads, in input order."""
        out = []
        if self.uses_backbone_features:
            out.append((self.feature_cache, self.embed))
        if self.uses_handcrafted:
            out.append((self.handcrafted_cache, self.handcrafted))
        return out

    def row(self, parts: list[np.ndarray]) -> np.ndarray:
        if self.uses_backbone_features:  # the whole multi-level vector is cached: keep the selected columns
            parts = [parts[0][self.columns], *parts[1:]]
        return super().row(parts)

    def training_inputs(self, data: TrainingData, ctx: MethodContext) -> torch.Tensor:
        return self.training_features(data, ctx, self.sources())

    def train(self, data, features, targets, train_idx, val_idx, ctx) -> None:
        from diqa_bench.threads import single_thread

        with single_thread(self.on_cuda):
            self._train(data, features, targets, train_idx, val_idx, ctx)

    def _train(self, data, features, targets, train_idx, val_idx, ctx) -> None:
        """Each step: ``batch_size`` cached feature rows, each position drawn with its domain's
        share as probability (the rows all have one width, so a drawn batch is used as drawn)."""
        import torch

        samples = data.samples
        rng = np.random.default_rng(ctx.seed)
        epochs, patience, batch_size = (self.setting(k, ctx) for k in ("epochs", "patience", "batch_size"))
        x_train = features[train_idx]
        self.head.feature_mean.copy_(x_train.mean(0))
        self.head.feature_std.copy_(x_train.std(0).clamp_min(1e-6) if len(train_idx) > 1 else torch.ones_like(x_train[0]))
        y = torch.from_numpy(targets).to(self.device)
        _, datasets = np.unique([s.dataset for s in samples], return_inverse=True)  # int codes: cheap pairing
        probs = sample_probabilities([samples[i].domain for i in train_idx], self.opts["domain_weights"])
        val_domains = [samples[i].domain for i in val_idx]
        train_idx = np.asarray(train_idx)
        steps = max(1, math.ceil(len(train_idx) / batch_size))
        opt, sched = self.optimizer(epochs)

        def val_loss() -> float:
            self.head.eval()
            with torch.no_grad():
                return self.validation_loss(self.head(features[val_idx]), y[val_idx], datasets[val_idx], val_domains)

        def train_epoch() -> float:
            self.head.train()
            total = 0.0
            for _ in range(steps):
                ids = train_idx[balanced_draw(probs, batch_size, rng)]
                rows = torch.from_numpy(ids).to(self.device)
                loss = self.loss(self.head(features[rows]), y[rows], datasets[ids], ids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
            return total / steps

        self.train_loop(epochs, patience, train_epoch, val_loss if len(val_idx) else None, sched, lambda: self.head)

    def score_batch(self, batch: Batch) -> torch.Tensor:
        import torch

        self.head.eval()
        with torch.inference_mode():
            found = self.cached_features(batch.keys, lambda missing: [(batch.keys, batch.images)], self.sources())
            feats = torch.from_numpy(np.stack([found[k] for k in batch.keys])).to(self.device)
            return self.head(feats).float().cpu()

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        # images whose features (every block the head reads) are cached need no decoding
        import torch

        if self.head is None:
            return {}
        sources = self.sources()
        if any(cache is None for cache, _ in sources):
            return {}
        unique = list(dict.fromkeys(keys))
        found = [cache.get_many(unique) for cache, _ in sources]
        have = [k for k in unique if all(k in f for f in found)]
        if not have:
            return {}
        self.head.eval()
        with torch.inference_mode():
            feats = torch.from_numpy(np.stack([self.row([f[k] for f in found]) for k in have])).to(self.device)
            return dict(zip(have, self.head(feats).float().cpu().tolist()))

    def restore(self, checkpoint: dict[str, Any], previous: Strategy | None) -> None:
        # a frozen backbone is the ImageNet file itself: the checkpoint names it by hash
        meta = checkpoint["meta"]
        self.build(pretrained=True, previous=previous)
        if meta["backbone_weights_id"] != self.weights_id:
            raise MethodUnavailable(
                f"cross-domain: the checkpoint's head was trained on other {self.opts['backbone']} weights "
                f"(id {meta['backbone_weights_id']}, found {self.weights_id}); set option backbone_weights to the original file"
            )
        super().restore(checkpoint, previous)


class FinetuneStrategy(Strategy):
    """The whole network trains: the backbone's pooled embedding plus the hand-crafted block feed
    the head; images are decoded every epoch (random crops and flips, see
    :mod:`diqa_cross_domain.inputs`)."""

    mode = "finetune"
    defaults: ClassVar[dict[str, Any]] = {"epochs": 20, "patience": 4}
    features_read = "pooled"

    def setting(self, key: str, ctx: MethodContext) -> Any:
        if key == "batch_size" and self.opts[key] is None:
            return max(2, ctx.batch_size)
        return super().setting(key, ctx)

    def backbone_width(self) -> int:
        return self.backbone.num_features

    def parameter_groups(self) -> list[dict[str, Any]]:
        backbone = {"params": list(self.backbone.parameters()), "lr": self.opts["lr"] * self.opts["backbone_lr_scale"]}
        return [*super().parameter_groups(), backbone]

    def training_inputs(self, data: TrainingData, ctx: MethodContext) -> torch.Tensor | None:
        # the hand-crafted block of every training image, once: it does not change while the network trains
        if not self.uses_handcrafted:
            return None
        return self.training_features(data, ctx, [(self.handcrafted_cache, self.handcrafted)])

    def train(self, data, handcrafted, targets, train_idx, val_idx, ctx) -> None:
        """``handcrafted``: [N, D] hand-crafted features of the training images (or None); the head
        standardises them with their training statistics, the backbone block passes unchanged.

        Each step draws each domain's quota of ``batch_size`` images (:func:`domain_quotas`) and
        computes one loss over all of them, so the step stays balanced (and its within-dataset
        pairs complete) although images of different sizes are decoded in separate groups."""
        import torch

        from diqa_cross_domain.networks import Joined

        rng = np.random.default_rng(ctx.seed)
        generator = torch.Generator().manual_seed(ctx.seed)
        epochs, patience, batch_size = (self.setting(k, ctx) for k in ("epochs", "patience", "batch_size"))
        samples = data.samples
        train_idx = np.asarray(train_idx)
        train_domains = [samples[i].domain for i in train_idx]
        quotas = domain_quotas(train_domains, self.opts["domain_weights"], batch_size)
        steps = max(1, math.ceil(len(train_idx) / batch_size))
        y = torch.from_numpy(targets).to(self.device)
        if handcrafted is not None:
            width = self.backbone.num_features
            rows = handcrafted[train_idx]
            self.head.feature_mean[width:].copy_(rows.mean(0))
            self.head.feature_std[width:].copy_(rows.std(0).clamp_min(1e-6) if len(rows) > 1 else torch.ones_like(rows[0]))
        self.backbone.requires_grad_(True)
        self._built = None  # its weights leave ImageNet's: never taken over by a later build
        opt, sched = self.optimizer(epochs)
        model = Joined(self.backbone, self.head)

        def train_epoch() -> float:
            model.train()
            total, n = 0.0, 0
            for _ in range(steps):
                draw = train_idx[stratified_draw(train_domains, quotas, rng)].tolist()
                pred, ids = self._step_predictions(model, data, draw, batch_size, generator, handcrafted)
                if not ids:  # every drawn image was undecodable (and skipped)
                    continue
                loss = self.loss(pred, y[ids], [samples[i].dataset for i in ids], ids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + loss.item(), n + 1
            return total / max(n, 1)

        def val_loss() -> float:
            model.eval()
            preds, ids = [], []
            with torch.no_grad():
                for batch in data.batches(val_idx, batch_size=batch_size):
                    preds.append(self.predict_images(batch.images))
                    ids.extend(batch.indices)
            return self.validation_loss(torch.cat(preds), y[ids], [samples[i].dataset for i in ids], [samples[i].domain for i in ids])

        self.train_loop(epochs, patience, train_epoch, val_loss if len(val_idx) else None, sched, lambda: model)
        self.backbone.eval()

    def _step_predictions(self, model, data: TrainingData, draw: list[int], batch_size: int, generator, handcrafted) -> tuple[torch.Tensor, list[int]]:
        """Predictions (with gradients) for the drawn samples, and the sample position of each. The
        loader decodes one image size per batch; the training crops of all those batches that share
        a shape go through the network together, so batch norm sees the step's mix of domains."""
        import torch

        views, positions = [], []
        for batch in data.batches(draw, batch_size=batch_size, loader="threads"):  # one call per step
            views += list(self.policy.train_views(batch.images.to(self.device), generator))
            positions += list(batch.indices)
        by_shape: dict[tuple, list[int]] = {}
        for k, v in enumerate(views):
            by_shape.setdefault(tuple(v.shape), []).append(k)
        preds, ids = [], []
        for members in by_shape.values():
            x = torch.stack([views[k] for k in members])
            if self.on_cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            rows = [positions[k] for k in members]
            extra = handcrafted[rows] if handcrafted is not None else None
            with self.autocast():
                preds.append(model(x, extra).float())
            ids += rows
        return (torch.cat(preds) if preds else torch.zeros(0, device=self.device)), ids

    def predict_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scores averaged over the eval views (hand-crafted features, when used, are computed on
        the whole image and shared by its views)."""
        import torch

        from diqa_cross_domain.networks import Joined

        images = images.to(self.device)
        extra = None
        if self.uses_handcrafted:
            extra = self.handcrafted(images).repeat_interleave(self.policy.views_per_image, 0)
        views = self.policy.eval_views(images)
        if self.on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            scores = Joined(self.backbone, self.head)(views, extra).float()
        return scores.view(images.shape[0], self.policy.views_per_image).mean(1)

    def score_batch(self, batch: Batch) -> torch.Tensor:
        import torch

        self.head.eval()
        with torch.inference_mode():
            return self.predict_images(batch.images).cpu()

    def state(self) -> dict[str, Any]:
        return {**super().state(), "backbone": self.backbone.state_dict()}

    def restore(self, checkpoint: dict[str, Any], previous: Strategy | None) -> None:
        self.build(pretrained=False, previous=previous)
        self.backbone.load_state_dict(checkpoint["backbone"])
        super().restore(checkpoint, previous)


STRATEGIES: dict[str, type[Strategy]] = {s.mode: s for s in (HeadStrategy, FinetuneStrategy)}


def input_policy(opts: dict[str, Any]) -> InputPolicy:
    from diqa_cross_domain.inputs import InputPolicy

    return InputPolicy(opts["input_policy"], opts["image_size"], opts["crop_grid"], opts["max_short_side"])


def describe(mode: str | None, opts: dict[str, Any], features: str | None = None) -> dict[str, Any]:
    """Which model runs: what a checkpoint's ``describe`` and a cell's description.json record.
    ``features``: what the head reads from the backbone, when the options do not decide it."""
    return {
        "mode": mode,
        "backbone": opts["backbone"],
        "input_policy": input_policy(opts).token(),
        "features": features or opts["features"],
        "handcrafted": opts["handcrafted"],
        "loss": opts["loss"],
    }


def describe_training(data: TrainingData, train_idx, val_idx, history) -> dict[str, Any]:
    per_dataset: dict[str, dict[str, Any]] = {}
    for s in data.samples:
        d = per_dataset.setdefault(s.dataset, {"domain": s.domain, "n": 0, "mos_min": s.mos, "mos_max": s.mos})
        d["n"] += 1
        d["mos_min"], d["mos_max"] = min(d["mos_min"], s.mos), max(d["mos_max"], s.mos)
    with_val = [h for h in history if "val_loss" in h]
    best = min(with_val, key=lambda h: h["val_loss"]) if with_val else (history[-1] if history else {})
    return {
        "datasets": per_dataset,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "epochs_run": len(history),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "history": history,
    }
