"""The ``cross-domain`` method: an ImageNet-pretrained backbone with a quality regression head,
trained on one or several domains at once (Hernandez Montilla et al., ICBRA 2025).

Training (``fit``):

- targets are ``TrainSample.mos_norm`` (MOS normalised within each dataset, higher is better);
- each step draws a domain-balanced batch (option ``domain_weights``, equal shares by default);
- loss ``fidelity`` (default: UNIQUE's pairwise ranking loss on pairs drawn within one dataset
  only), ``l1``, ``mse`` or ``mix`` (``(1 - mix_weight) * l1 + mix_weight * fidelity``);
- AdamW, cosine learning-rate schedule over the epochs, early stopping on a validation split carved
  out of the train set (``val_ratio`` of each domain's content groups, whole groups; the validation
  loss averages the domains with equal weight), best epoch restored; seeded from ``ctx.seed``.
  Test data is never seen by the fit;
- ``mode: head`` freezes the backbone and reads it at several depths (see
  :class:`diqa_cross_domain.networks.MultiLevelFeatures`; option ``features`` picks which: by
  default the mean and std of every stage, without the pooled embedding), next to hand-crafted
  quality features (option ``handcrafted``, default ``full``: BRISQUE's natural-scene statistics
  plus exposure, colour, sharpness, noise, blockiness and glare statistics; see
  :mod:`diqa_cross_domain.handcrafted`). Each image's features are computed once and kept in the
  shared feature cache (keyed by image content hash, namespaced by backbone, weights and input
  policy; every stage is cached whatever ``features`` selects), so every cell of a benchmark reuses
  them and only a small MLP trains. ``mode: finetune`` trains the backbone too (its pooled embedding
  plus the hand-crafted block feed the head; bf16 autocast and channels_last on CUDA).
  ``mode: auto`` (default) picks finetune on CUDA, head elsewhere: :meth:`CrossDomain.describe`
  and the checkpoint's ``cross_domain.json`` say which one a fit ran as.

Input handling (no blur or colour augmentation; flips and random crops in finetune training only;
by default the whole image at native resolution) is described in :mod:`diqa_cross_domain.inputs`.
Scores are predicted normalised MOS: higher is better. docs/cross_domain.md holds the ablation
behind the defaults.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from diqa_bench.errors import ConfigError, DataError, MethodUnavailable
from diqa_bench.methods import Batch, Method, MethodContext, TrainingData
from diqa_cross_domain.backbones import (
    DEFAULT_BACKBONE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    resolve_weights,
)
from diqa_cross_domain.sampling import (
    balanced_draw,
    sample_probabilities,
    validation_split,
    within_dataset_pairs,
)

if TYPE_CHECKING:  # torch is imported inside the methods: `diqa-bench list` must not pay for it
    import torch
    from torch import nn

    from diqa_cross_domain.inputs import InputPolicy
    from diqa_cross_domain.networks import QualityHead

CHECKPOINT_NAME = "cross_domain.pt"
CHECKPOINT_FORMAT = 1
FEATURE_VERSION = "3"  # bump when the way backbone features are computed changes
HANDCRAFTED_VERSION = "1"  # bump when diqa_cross_domain.handcrafted changes
MIN_VAL_GROUPS = 4  # a domain with fewer content groups than this gives none to the validation split

DEFAULTS: dict[str, Any] = {
    "backbone": DEFAULT_BACKBONE,
    "backbone_weights": None,
    "mode": "auto",
    "loss": "fidelity",
    "mix_weight": 0.5,
    "rank_sigma": 0.1,
    "domain_weights": None,
    "epochs": None,  # head: 150, finetune: 20
    "patience": None,  # head: 10, finetune: 4
    "batch_size": None,  # head: 64, finetune: the run's batch size
    "lr": 1e-3,
    "backbone_lr_scale": 0.1,
    "weight_decay": 0.01,
    "val_ratio": 0.2,
    "head_hidden": 256,
    "input_policy": "native",
    "image_size": 224,
    "crop_grid": 3,
    "max_short_side": 768,
    "features": "stages",
    "handcrafted": "full",
}
MODE_DEFAULTS = {"head": {"epochs": 150, "patience": 10, "batch_size": 64}, "finetune": {"epochs": 20, "patience": 4}}


class CrossDomain(Method):
    name = "cross-domain"
    version = "4"
    description = "ImageNet backbone + quality head trained across domains (domain-balanced, within-dataset ranking)"
    lower_better = False
    trainable = True
    input_size = None  # native resolution; the input policy resizes or crops
    options_schema: ClassVar[dict[str, Any]] = {
        "backbone": {"type": "string", "description": "timm model name"},
        "backbone_weights": {"type": ["string", "null"], "description": "ImageNet weights file of the backbone"},
        "mode": {"enum": ["auto", "head", "finetune"]},
        "loss": {"enum": ["l1", "mse", "fidelity", "mix"]},
        "mix_weight": {"type": "number", "minimum": 0, "maximum": 1},
        "rank_sigma": {"type": "number", "exclusiveMinimum": 0},
        "domain_weights": {"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": 0}},
        "epochs": {"type": ["integer", "null"], "minimum": 1},
        "patience": {"type": ["integer", "null"], "minimum": 1},
        "batch_size": {"type": ["integer", "null"], "minimum": 2},
        "lr": {"type": "number", "exclusiveMinimum": 0},
        "backbone_lr_scale": {"type": "number", "minimum": 0},
        "weight_decay": {"type": "number", "minimum": 0},
        "val_ratio": {"type": "number", "minimum": 0, "maximum": 0.5},
        "head_hidden": {"type": "integer", "minimum": 1},
        "image_size": {"type": "integer", "minimum": 32},
        "crop_grid": {"type": "integer", "minimum": 1, "maximum": 5},
        "max_short_side": {"type": "integer", "minimum": 32},
        "features": {
            "enum": ["multilevel", "pooled", "stages", "early", "none"],
            "description": "head mode: which backbone features feed the head: mean+std of every stage plus the pooled embedding, "
            "the pooled embedding alone, the stages alone, the first half of the stages, or none (hand-crafted features only)",
        },
        "handcrafted": {"enum": ["none", "nss", "full"], "description": "hand-crafted quality features beside the backbone's: BRISQUE's NSS, or NSS plus global statistics"},
        "input_policy": {"enum": ["resize", "crops", "native"]},
    }

    def __init__(self, **options: Any) -> None:
        import torch

        super().__init__(**options)
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"cross-domain: unknown option(s) {', '.join(unknown)}")
        self.opts = {**DEFAULTS, **options}
        self.ctx: MethodContext | None = None
        self.device = torch.device("cpu")
        self.mode: str | None = None
        self.backbone: nn.Module | None = None
        self.head: QualityHead | None = None
        self.weights_id: str | None = None
        self.feature_cache = None
        self.handcrafted_cache = None
        self._columns: list[int] = []  # head mode: which cached backbone features the head reads
        self._built: tuple | None = None  # what the current backbone was built from
        self.features_extracted = 0  # images sent through the backbone for the feature cache
        self.history: list[dict[str, float]] = []
        self.training_info: dict[str, Any] = {}
        self._checkpoint: dict[str, Any] | None = None

    # -- configuration -----------------------------------------------------------------------------
    @property
    def policy(self) -> InputPolicy:
        from diqa_cross_domain.inputs import InputPolicy

        o = self.opts
        return InputPolicy(o["input_policy"], o["image_size"], o["crop_grid"], o["max_short_side"])

    def _setting(self, key: str, ctx: MethodContext) -> Any:
        if self.opts[key] is not None:
            return self.opts[key]
        if key == "batch_size" and self.mode == "finetune":
            return max(2, ctx.batch_size)
        return MODE_DEFAULTS[self.mode][key]

    @property
    def _on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def _autocast(self):
        import torch

        if self._on_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _feature_namespace(self) -> str:
        # every stage is cached, whatever ``features`` selects: one extraction serves every selection
        precision = "bf16" if self._on_cuda else "fp32"
        return f"cross-domain/f{FEATURE_VERSION}/{self.opts['backbone']}/{self.weights_id}/{self.policy.token()}/{precision}/multilevel"

    def _handcrafted_namespace(self) -> str:
        return f"cross-domain/hc{HANDCRAFTED_VERSION}/{self.opts['handcrafted']}/m{self.opts['max_short_side']}"

    @property
    def _uses_backbone_features(self) -> bool:
        return self.mode == "finetune" or self.opts["features"] != "none"

    @property
    def _uses_handcrafted(self) -> bool:
        return self.opts["handcrafted"] != "none"

    def describe(self) -> dict[str, Any]:
        """What this instance runs as, once set up or loaded: which model a cell's row stands for
        (``mode: auto`` trains a frozen-backbone head on CPU and finetunes the whole network on
        CUDA, under one method name)."""
        o = self.opts
        return {
            "mode": self.mode,
            "backbone": o["backbone"],
            "input_policy": self.policy.token(),
            "features": o["features"] if self.mode == "head" else "pooled",
            "handcrafted": o["handcrafted"],
            "loss": o["loss"],
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        import torch

        self.ctx = ctx
        self.device = torch.device(ctx.device)
        if self._checkpoint is not None:
            self._apply_checkpoint()
            return
        mode = self.opts["mode"]
        self.mode = ("finetune" if self._on_cuda else "head") if mode == "auto" else mode
        if self.mode == "head" and not self._uses_backbone_features and not self._uses_handcrafted:
            raise ConfigError("cross-domain: features: none needs hand-crafted features (option handcrafted: nss or full)")
        self._build_backbone(pretrained=True)
        self.head = None  # built by fit, or by load

    def _build_backbone(self, pretrained: bool) -> None:
        """The backbone on the device; ``pretrained=False`` skips the ImageNet weights (a finetune
        checkpoint brings its own)."""
        import torch

        built = (self.opts["backbone"], self.opts["backbone_weights"], self.mode, pretrained, str(self.device))
        if self.backbone is not None and self._built == built:
            self._open_caches()  # the options (input policy, feature selection) may come from a checkpoint
            return  # e.g. the runner's setup() followed by load() of a fit made with the same backbone
        self._built = built
        if pretrained:
            from diqa_bench.cache import file_hash

            weights = resolve_weights(self.opts["backbone"], self.opts["backbone_weights"], self.ctx.weights_dir if self.ctx else None)
            self.weights_id = file_hash(weights)
            model = build_backbone(self.opts["backbone"], weights)
        else:
            import timm

            model = timm.create_model(self.opts["backbone"], pretrained=False, num_classes=0)
        model = model.to(self.device)
        if self._on_cuda:
            model = model.to(memory_format=torch.channels_last)
        if self.mode == "head":
            from diqa_cross_domain.networks import MultiLevelFeatures

            model.requires_grad_(False)
            model = MultiLevelFeatures(model)
        self.backbone = model.eval()
        self._open_caches()

    def _open_caches(self) -> None:
        """The feature caches and backbone columns that the current options read."""
        if self.mode == "head":
            self._columns = self.backbone.columns(self.opts["features"])
        self.feature_cache = self.ctx.feature_cache(self._feature_namespace()) if (self.ctx and self.mode == "head") else None
        self.handcrafted_cache = self.ctx.feature_cache(self._handcrafted_namespace()) if (self.ctx and self._uses_handcrafted) else None

    def _new_head(self) -> QualityHead:
        from diqa_cross_domain.handcrafted import feature_dim
        from diqa_cross_domain.networks import QualityHead

        width = len(self._columns) if self.mode == "head" else self.backbone.num_features
        return QualityHead(width + feature_dim(self.opts["handcrafted"]), self.opts["head_hidden"]).to(self.device)

    def teardown(self) -> None:
        import torch

        self.backbone = None
        self.head = None
        if self._on_cuda:
            torch.cuda.empty_cache()

    # -- features ----------------------------------------------------------------------------------
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features of the eval views, averaged over views: [B, F] float32."""
        import torch

        views = self.policy.eval_views(images.to(self.device))
        if self._on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.backbone(views).float()
        return out.view(images.shape[0], self.policy.views_per_image, -1).mean(1)

    def _handcrafted(self, images: torch.Tensor) -> torch.Tensor:
        """Hand-crafted features of whole images ([B, D] float32), at native resolution up to a
        short side of ``max_short_side`` (larger images are downscaled to it, bounding the cost)."""
        import torch.nn.functional as F

        from diqa_cross_domain import handcrafted

        h, w = images.shape[-2:]
        cap = self.opts["max_short_side"]
        if min(h, w) > cap:
            scale = cap / min(h, w)
            images = F.interpolate(images, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return handcrafted.features(images.float(), self.opts["handcrafted"])

    def _sources(self) -> list[tuple[Any, Any]]:
        """(cache, extractor) of each feature block the head reads, in input order (head mode)."""
        out = []
        if self._uses_backbone_features:
            out.append((self.feature_cache, self._embed))
        if self._uses_handcrafted:
            out.append((self.handcrafted_cache, self._handcrafted))
        return out

    def _head_input(self, parts: list[np.ndarray]) -> np.ndarray:
        """The head's input row from the cached blocks (backbone block: the selected columns)."""
        if self._uses_backbone_features and self.mode == "head":
            parts = [parts[0][self._columns], *parts[1:]]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _cached_features(self, keys: list[str], compute, sources=None) -> dict[str, np.ndarray]:
        """Head inputs for ``keys`` from the caches; ``compute(missing_keys)`` yields (keys, images)
        batches for the rest, whose missing blocks are computed and stored. ``sources``: the
        (cache, extractor) blocks to read, by default every block the head reads."""
        import torch

        sources = self._sources() if sources is None else sources
        unique = list(dict.fromkeys(keys))
        found = [cache.get_many(unique) if cache is not None else {} for cache, _ in sources]
        missing = [k for k in unique if any(k not in f for f in found)]
        if missing:
            from diqa_cross_domain.networks import single_thread

            # One CPU thread: when other processes share the cores, threads wait on each other
            # (measured on a shared 2-core machine, load ~6: 83 ms per 192 px image with one thread,
            # 290 ms with two); an idle machine loses at most the second core.
            with torch.inference_mode(), single_thread(self._on_cuda):
                for batch_keys, images in compute(missing):
                    images = images.to(self.device)
                    for (cache, extract), have in zip(sources, found):
                        todo = [i for i, k in enumerate(batch_keys) if k not in have]
                        if not todo:
                            continue
                        feats = extract(images[todo] if len(todo) < len(batch_keys) else images).cpu().numpy().astype(np.float32)
                        new = {batch_keys[i]: f for i, f in zip(todo, feats)}
                        if extract == self._embed:
                            self.features_extracted += len(new)
                        if cache is not None:
                            cache.put_many(new)
                        have.update(new)
        return {k: self._head_input([f[k] for f in found]) for k in unique}

    def _training_features(self, data: TrainingData, ctx: MethodContext, sources=None) -> torch.Tensor:
        import torch

        samples = data.samples
        first_position = {}
        for i, s in enumerate(samples):
            first_position.setdefault(s.key, i)

        def compute(missing):
            for batch in data.batches([first_position[k] for k in missing], batch_size=ctx.batch_size):
                yield batch.keys, batch.images

        found = self._cached_features([s.key for s in samples], compute, sources)
        return torch.from_numpy(np.stack([found[s.key] for s in samples])).to(self.device)

    # -- scoring -----------------------------------------------------------------------------------
    def score_batch(self, batch: Batch) -> torch.Tensor:
        import torch

        if self.head is None:
            raise RuntimeError("cross-domain: fit() or load() a checkpoint before scoring")
        self.head.eval()
        with torch.inference_mode():
            if self.mode == "head":
                found = self._cached_features(batch.keys, lambda missing: [(batch.keys, batch.images)])
                feats = torch.from_numpy(np.stack([found[k] for k in batch.keys])).to(self.device)
                return self.head(feats).float().cpu()
            return self._predict_images(batch.images).cpu()

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        # head mode: images whose features (every block the head reads) are cached need no decoding
        import torch

        if self.mode != "head" or self.head is None:
            return {}
        sources = self._sources()
        if any(cache is None for cache, _ in sources):
            return {}
        unique = list(dict.fromkeys(keys))
        found = [cache.get_many(unique) for cache, _ in sources]
        have = [k for k in unique if all(k in f for f in found)]
        if not have:
            return {}
        self.head.eval()
        with torch.inference_mode():
            feats = torch.from_numpy(np.stack([self._head_input([f[k] for f in found]) for k in have])).to(self.device)
            return dict(zip(have, self.head(feats).float().cpu().tolist()))

    def _predict_images(self, images: torch.Tensor) -> torch.Tensor:
        """Finetune mode: scores averaged over the eval views (hand-crafted features, when used,
        are computed on the whole image and shared by its views)."""
        import torch

        images = images.to(self.device)
        extra = None
        if self._uses_handcrafted:
            extra = self._handcrafted(images).repeat_interleave(self.policy.views_per_image, 0)
        views = self.policy.eval_views(images)
        if self._on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            scores = self._joined()(views, extra).float()
        return scores.view(images.shape[0], self.policy.views_per_image).mean(1)

    def _joined(self):
        from diqa_cross_domain.networks import Joined

        return Joined(self.backbone, self.head)

    # -- training ----------------------------------------------------------------------------------
    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        from diqa_cross_domain.networks import deterministic, single_thread

        if self.ctx is None or self.backbone is None:
            self.setup(ctx)
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
        if self.mode == "head":
            features = self._training_features(data, ctx)
        elif self._uses_handcrafted:  # finetune: the hand-crafted block of every training image, once
            features = self._training_features(data, ctx, [(self.handcrafted_cache, self._handcrafted)])
        else:
            features = None
        with deterministic(ctx.seed, self._on_cuda):
            self.head = self._new_head()
            if self.mode == "head":
                with single_thread(self._on_cuda):
                    self._fit_head(features, samples, targets, train_idx, val_idx, ctx)
            else:
                self._fit_finetune(data, targets, train_idx, val_idx, ctx, features)
        self.training_info = _describe_training(data, train_idx, val_idx, self.history)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, datasets: list[str], sample_ids) -> torch.Tensor:
        import torch

        from diqa_cross_domain.losses import quality_loss

        pairs = within_dataset_pairs(datasets, sample_ids)
        pair_tensor = torch.from_numpy(pairs).to(pred.device) if len(pairs) else None
        return quality_loss(self.opts["loss"], pred, target, pair_tensor, self.opts["mix_weight"], self.opts["rank_sigma"])

    def _validation_loss(self, pred, target, datasets, domains) -> float:
        """The loss on each domain's validation images, averaged over domains with equal weight (as
        training draws them), so the larger domain does not choose the epoch alone."""
        import torch

        datasets, domains = np.asarray(datasets), np.asarray(domains)
        losses = []
        for d in np.unique(domains):
            rows = np.flatnonzero(domains == d)
            at = torch.from_numpy(rows).to(pred.device)
            losses.append(float(self._loss(pred[at], target[at], datasets[rows], None)))
        return float(np.mean(losses))

    def _optimizer(self, epochs: int):
        import torch

        groups = [{"params": list(self.head.parameters()), "lr": self.opts["lr"]}]
        if self.mode == "finetune":
            groups.append({"params": list(self.backbone.parameters()), "lr": self.opts["lr"] * self.opts["backbone_lr_scale"]})
        opt = torch.optim.AdamW(groups, weight_decay=self.opts["weight_decay"])
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    def _fit_head(self, features, samples, targets, train_idx, val_idx, ctx) -> None:
        import torch

        rng = np.random.default_rng(ctx.seed)
        epochs, patience, batch_size = (self._setting(k, ctx) for k in ("epochs", "patience", "batch_size"))
        x_train = features[train_idx]
        self.head.feature_mean.copy_(x_train.mean(0))
        self.head.feature_std.copy_(x_train.std(0).clamp_min(1e-6) if len(train_idx) > 1 else torch.ones_like(x_train[0]))
        y = torch.from_numpy(targets).to(self.device)
        _, datasets = np.unique([s.dataset for s in samples], return_inverse=True)  # int codes: cheap pairing
        probs = sample_probabilities([samples[i].domain for i in train_idx], self.opts["domain_weights"])
        val_domains = [samples[i].domain for i in val_idx]
        train_idx = np.asarray(train_idx)
        steps = max(1, math.ceil(len(train_idx) / batch_size))
        opt, sched = self._optimizer(epochs)

        def val_loss() -> float:
            import torch

            self.head.eval()
            with torch.no_grad():
                return self._validation_loss(self.head(features[val_idx]), y[val_idx], datasets[val_idx], val_domains)

        def train_epoch() -> float:
            import torch

            self.head.train()
            total = 0.0
            for _ in range(steps):
                ids = train_idx[balanced_draw(probs, batch_size, rng)]
                rows = torch.from_numpy(ids).to(self.device)
                loss = self._loss(self.head(features[rows]), y[rows], datasets[ids], ids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
            return total / steps

        self._train_loop(epochs, patience, train_epoch, val_loss if len(val_idx) else None, sched, lambda: self.head)

    def _fit_finetune(self, data: TrainingData, targets, train_idx, val_idx, ctx, handcrafted=None) -> None:
        """``handcrafted``: [N, D] hand-crafted features of the training images (or None); the head
        standardises them with their training statistics, the backbone block passes unchanged."""
        import torch

        from diqa_cross_domain.networks import Joined

        rng = np.random.default_rng(ctx.seed)
        generator = torch.Generator().manual_seed(ctx.seed)
        epochs, patience, batch_size = (self._setting(k, ctx) for k in ("epochs", "patience", "batch_size"))
        samples = data.samples
        probs = sample_probabilities([samples[i].domain for i in train_idx], self.opts["domain_weights"])
        train_idx = np.asarray(train_idx)
        y = torch.from_numpy(targets).to(self.device)
        if handcrafted is not None:
            width = self.backbone.num_features
            rows = handcrafted[train_idx]
            self.head.feature_mean[width:].copy_(rows.mean(0))
            self.head.feature_std[width:].copy_(rows.std(0).clamp_min(1e-6) if len(rows) > 1 else torch.ones_like(rows[0]))
        self.backbone.requires_grad_(True)
        opt, sched = self._optimizer(epochs)
        model = Joined(self.backbone, self.head)

        def train_epoch() -> float:
            import torch

            model.train()
            total, n = 0.0, 0
            draw = train_idx[balanced_draw(probs, len(train_idx), rng)].tolist()
            for batch in data.batches(draw, batch_size=batch_size):
                views = self.policy.train_views(batch.images.to(self.device), generator)
                if self._on_cuda:
                    views = views.contiguous(memory_format=torch.channels_last)
                ids = batch.indices
                extra = handcrafted[ids] if handcrafted is not None else None
                with self._autocast():
                    pred = model(views, extra).float()
                loss = self._loss(pred, y[ids], [samples[i].dataset for i in ids], ids)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + loss.item(), n + 1
            return total / max(n, 1)

        def val_loss() -> float:
            import torch

            model.eval()
            preds, ids = [], []
            with torch.no_grad():
                for batch in data.batches(val_idx, batch_size=batch_size):
                    preds.append(self._predict_images(batch.images))
                    ids.extend(batch.indices)
            return self._validation_loss(torch.cat(preds), y[ids], [samples[i].dataset for i in ids], [samples[i].domain for i in ids])

        self._train_loop(epochs, patience, train_epoch, val_loss if len(val_idx) else None, sched, lambda: model)
        self.backbone.eval()

    def _train_loop(self, epochs, patience, train_epoch, val_loss, sched, trained) -> None:
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

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        import torch

        if self.head is None:
            raise RuntimeError("cross-domain: nothing to save before fit()")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "method": self.name,
            "method_version": self.version,
            "mode": self.mode,
            "describe": self.describe(),  # what ran: head or finetune, inputs, features, loss
            "options": self.options,  # as given: the cache token is recomputed from them
            "resolved_options": self.opts,
            "backbone_weights_id": self.weights_id,
            "input_policy": asdict(self.policy),
            "normalisation": {
                "image": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "range": "RGB [0, 1]"},
                "target": "mos_norm: MOS normalised within each training dataset, higher is better",
            },
            "training": self.training_info,
            "versions": _versions(),
        }
        state = {"meta": json.dumps(meta), "head": self.head.state_dict()}
        if self.mode == "finetune":  # a frozen backbone is the ImageNet file itself: not duplicated
            state["backbone"] = self.backbone.state_dict()
        torch.save(state, folder / CHECKPOINT_NAME)
        (folder / "cross_domain.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load(self, folder: Path) -> None:
        import torch

        path = Path(folder)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise DataError(f"cross-domain: checkpoint {path} not found")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        meta = json.loads(state["meta"])
        if meta.get("method") != self.name or meta.get("format") != CHECKPOINT_FORMAT:
            raise DataError(f"{path}: not a cross-domain checkpoint (format {CHECKPOINT_FORMAT})")
        # The checkpoint's options win, except where this machine keeps the backbone file.
        local = {k: v for k, v in self.options.items() if k == "backbone_weights"}
        self.options = {**meta["options"], **local}  # the cache token follows the checkpoint's options
        self.opts = {**DEFAULTS, **self.options}
        self._checkpoint = {**state, "meta": meta}
        if self.ctx is not None:
            self._apply_checkpoint()

    def _apply_checkpoint(self) -> None:
        meta = self._checkpoint["meta"]
        self.mode = meta["mode"]
        self.training_info = meta.get("training", {})
        if self.mode == "head":
            self._build_backbone(pretrained=True)
            if meta["backbone_weights_id"] != self.weights_id:
                raise MethodUnavailable(
                    f"cross-domain: the checkpoint's head was trained on other {self.opts['backbone']} weights "
                    f"(id {meta['backbone_weights_id']}, found {self.weights_id}); set option backbone_weights to the original file"
                )
        else:
            self._build_backbone(pretrained=False)
            self.backbone.load_state_dict(self._checkpoint["backbone"])
        self.head = self._new_head()
        self.head.load_state_dict(self._checkpoint["head"])
        self.head.eval()


def _describe_training(data: TrainingData, train_idx, val_idx, history) -> dict[str, Any]:
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


def _versions() -> dict[str, str]:
    import timm
    import torch

    import diqa_bench

    return {
        "diqa_bench": diqa_bench.__version__,
        "cross_domain": CrossDomain.version,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": sys.version.split()[0],
    }
