"""The ``cross-domain`` method: an ImageNet-pretrained backbone with a quality regression head,
trained on one or several domains at once (Hernandez Montilla et al., ICBRA 2025).

Training (``fit``):

- targets are ``TrainSample.mos_norm`` (MOS normalised within each dataset, higher is better);
- each step draws a domain-balanced batch (option ``domain_weights``, equal shares by default);
- loss ``l1``, ``mse``, ``fidelity`` (UNIQUE's pairwise ranking loss on pairs drawn within one
  dataset only) or ``mix`` (``(1 - mix_weight) * l1 + mix_weight * fidelity``);
- AdamW, cosine learning-rate schedule over the epochs, early stopping on a validation split carved
  group-aware out of the train set (``val_ratio``), best epoch restored; seeded from ``ctx.seed``;
- ``mode: head`` freezes the backbone and reads it at several depths (``features: multilevel``:
  mean and std of every stage plus the pooled embedding; see
  :class:`diqa_cross_domain.networks.MultiLevelFeatures`): each image's features are computed once and kept in the
  shared feature cache (keyed by image content hash, namespaced by backbone, weights and input
  policy), so every cell of a benchmark reuses them and only a small MLP trains. ``mode: finetune``
  trains everything (bf16 autocast and channels_last on CUDA). ``mode: auto`` (default) picks
  finetune on CUDA, head elsewhere.

Input handling (no blur or colour augmentation; flips and random crops in finetune training only;
policy for large images) is described in :mod:`diqa_cross_domain.inputs`. Scores are predicted
normalised MOS: higher is better.
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
from diqa_bench.splits import split_items
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
    within_dataset_pairs,
)

if TYPE_CHECKING:  # torch is imported inside the methods: `diqa-bench list` must not pay for it
    import torch
    from torch import nn

    from diqa_cross_domain.inputs import InputPolicy
    from diqa_cross_domain.networks import QualityHead

CHECKPOINT_NAME = "cross_domain.pt"
CHECKPOINT_FORMAT = 1
FEATURE_VERSION = "2"  # bump when the way features are computed changes
MIN_VAL_GROUPS = 4  # fewer content groups than this: no validation split, train on everything

DEFAULTS: dict[str, Any] = {
    "backbone": DEFAULT_BACKBONE,
    "backbone_weights": None,
    "mode": "auto",
    "loss": "mix",
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
    "input_policy": "resize",
    "image_size": 224,
    "crop_grid": 3,
    "max_short_side": 768,
    "features": "multilevel",
}
MODE_DEFAULTS = {"head": {"epochs": 150, "patience": 10, "batch_size": 64}, "finetune": {"epochs": 20, "patience": 4}}


class CrossDomain(Method):
    name = "cross-domain"
    version = "2"
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
        "input_policy": {"enum": ["resize", "crops"]},
        "image_size": {"type": "integer", "minimum": 32},
        "crop_grid": {"type": "integer", "minimum": 1, "maximum": 5},
        "max_short_side": {"type": "integer", "minimum": 32},
        "features": {"enum": ["multilevel", "pooled"], "description": "head mode: mean+std of every stage plus the pooled embedding, or the pooled embedding alone"},
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
        precision = "bf16" if self._on_cuda else "fp32"
        return f"cross-domain/f{FEATURE_VERSION}/{self.opts['backbone']}/{self.weights_id}/{self.policy.token()}/{precision}/{self.opts['features']}"

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
        self._build_backbone(pretrained=True)
        self.head = None  # built by fit, or by load

    def _build_backbone(self, pretrained: bool) -> None:
        """The backbone on the device; ``pretrained=False`` skips the ImageNet weights (a finetune
        checkpoint brings its own)."""
        import torch

        built = (self.opts["backbone"], self.opts["backbone_weights"], self.mode, pretrained, str(self.device))
        if self.backbone is not None and self._built == built:
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
            model.requires_grad_(False)
            if self.opts["features"] == "multilevel":
                from diqa_cross_domain.networks import MultiLevelFeatures

                model = MultiLevelFeatures(model)
        self.backbone = model.eval()
        self.feature_cache = self.ctx.feature_cache(self._feature_namespace()) if (self.ctx and self.mode == "head") else None

    def _new_head(self) -> QualityHead:
        from diqa_cross_domain.networks import QualityHead

        return QualityHead(self.backbone.num_features, self.opts["head_hidden"]).to(self.device)

    def teardown(self) -> None:
        import torch

        self.backbone = None
        self.head = None
        if self._on_cuda:
            torch.cuda.empty_cache()

    # -- features ----------------------------------------------------------------------------------
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of the eval views, averaged over views: [B, F] float32."""
        import torch

        views = self.policy.eval_views(images.to(self.device))
        if self._on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.backbone(views).float()
        return out.view(images.shape[0], self.policy.views_per_image, -1).mean(1)

    def _cached_features(self, keys: list[str], compute) -> dict[str, np.ndarray]:
        """Features for ``keys`` from the cache; ``compute(missing_keys)`` yields (keys, images)
        batches for the rest, which are embedded and stored."""
        import torch

        found = self.feature_cache.get_many(keys) if self.feature_cache is not None else {}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            with torch.inference_mode():
                for batch_keys, images in compute(missing):
                    feats = self._embed(images).cpu().numpy().astype(np.float32)
                    new = dict(zip(batch_keys, feats))
                    self.features_extracted += len(new)
                    if self.feature_cache is not None:
                        self.feature_cache.put_many(new)
                    found.update(new)
        return found

    def _training_features(self, data: TrainingData, ctx: MethodContext) -> torch.Tensor:
        import torch

        samples = data.samples
        first_position = {}
        for i, s in enumerate(samples):
            first_position.setdefault(s.key, i)

        def compute(missing):
            for batch in data.batches([first_position[k] for k in missing], batch_size=ctx.batch_size):
                yield batch.keys, batch.images

        found = self._cached_features([s.key for s in samples], compute)
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
        # head mode: images whose backbone features are cached need no decoding
        import torch

        if self.mode != "head" or self.head is None or self.feature_cache is None:
            return {}
        found = self.feature_cache.get_many(keys)
        have = [k for k in dict.fromkeys(keys) if k in found]
        if not have:
            return {}
        self.head.eval()
        with torch.inference_mode():
            feats = torch.from_numpy(np.stack([found[k] for k in have])).to(self.device)
            return dict(zip(have, self.head(feats).float().cpu().tolist()))

    def _predict_images(self, images: torch.Tensor) -> torch.Tensor:
        """Finetune mode: scores averaged over the eval views."""
        import torch

        views = self.policy.eval_views(images.to(self.device))
        if self._on_cuda:
            views = views.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            scores = self.head(self.backbone(views)).float()
        return scores.view(images.shape[0], self.policy.views_per_image).mean(1)

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
        groups = [s.group for s in samples]
        val_ratio = self.opts["val_ratio"]
        if val_ratio > 0 and len(set(groups)) >= MIN_VAL_GROUPS:
            train_idx, val_idx = split_items(samples, groups, val_ratio, ctx.seed)
        else:
            train_idx, val_idx = list(range(len(samples))), []

        # Features first: decoding draws from torch's global RNG only when something is missing
        # from the cache, so seeding afterwards makes a fit independent of the cache's state.
        features = self._training_features(data, ctx) if self.mode == "head" else None
        with deterministic(ctx.seed, self._on_cuda):
            self.head = self._new_head()
            if self.mode == "head":
                with single_thread(self._on_cuda):
                    self._fit_head(features, samples, targets, train_idx, val_idx, ctx)
            else:
                self._fit_finetune(data, targets, train_idx, val_idx, ctx)
        self.training_info = _describe_training(data, train_idx, val_idx, self.history)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, datasets: list[str], sample_ids) -> torch.Tensor:
        import torch

        from diqa_cross_domain.losses import quality_loss

        pairs = within_dataset_pairs(datasets, sample_ids)
        pair_tensor = torch.from_numpy(pairs).to(pred.device) if len(pairs) else None
        return quality_loss(self.opts["loss"], pred, target, pair_tensor, self.opts["mix_weight"], self.opts["rank_sigma"])

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
        train_idx = np.asarray(train_idx)
        steps = max(1, math.ceil(len(train_idx) / batch_size))
        opt, sched = self._optimizer(epochs)

        def val_loss() -> float:
            import torch

            self.head.eval()
            with torch.no_grad():
                return float(self._loss(self.head(features[val_idx]), y[val_idx], datasets[val_idx], None))

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

    def _fit_finetune(self, data: TrainingData, targets, train_idx, val_idx, ctx) -> None:
        import torch

        from diqa_cross_domain.networks import Joined

        rng = np.random.default_rng(ctx.seed)
        generator = torch.Generator().manual_seed(ctx.seed)
        epochs, patience, batch_size = (self._setting(k, ctx) for k in ("epochs", "patience", "batch_size"))
        samples = data.samples
        probs = sample_probabilities([samples[i].domain for i in train_idx], self.opts["domain_weights"])
        train_idx = np.asarray(train_idx)
        y = torch.from_numpy(targets).to(self.device)
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
                with self._autocast():
                    pred = model(views).float()
                ids = batch.indices
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
            return float(self._loss(torch.cat(preds), y[ids], [samples[i].dataset for i in ids], None))

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
