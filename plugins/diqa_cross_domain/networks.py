"""The torch modules and training contexts of the cross-domain model (imported only when it runs)."""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn


class QualityHead(nn.Module):
    """Feature standardisation (statistics of the training features in head mode, identity in
    finetune mode) followed by a one-hidden-layer MLP predicting normalised MOS."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float() - self.feature_mean) / self.feature_std
        return self.mlp(x).squeeze(-1)


class Joined(nn.Module):
    def __init__(self, backbone: nn.Module, head: QualityHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """``extra``: per-view features appended to the backbone's (the hand-crafted block)."""
        features = self.backbone(x)
        if extra is not None:
            features = torch.cat([features.float(), extra.float()], 1)
        return self.head(features)


@contextlib.contextmanager
def deterministic(seed: int, cuda: bool):
    """Seeded, deterministic where torch allows; the global flags are restored afterwards."""
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    prev_algos = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_algos, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench


class MultiLevelFeatures(nn.Module):
    """A frozen backbone read at several depths: for every stage timm lists in ``feature_info``, the
    spatial mean and standard deviation of its activations, next to the final pooled embedding.

    Why: the final embedding of an ImageNet classifier is trained to ignore blur, noise and
    compression (they do not change the class), while early stages respond to exactly those; the
    standard deviation of a stage's activations tracks lost texture and added noise. Quality
    models on frozen features commonly read several depths for this reason."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        info = list(getattr(backbone, "feature_info", []) or [])
        self._stage_outputs: list[torch.Tensor] = []
        for stage in info:
            backbone.get_submodule(stage["module"]).register_forward_hook(self._keep)
        self.pooled_features = backbone.num_features
        self.stage_channels = [int(stage["num_chs"]) for stage in info]
        self.num_features = backbone.num_features + 2 * sum(self.stage_channels)

    def _keep(self, module, inputs, output) -> None:
        self._stage_outputs.append(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._stage_outputs = []
        pooled = self.backbone(x).float()
        parts = [pooled]
        for out in self._stage_outputs:
            out = out.float()
            parts += [out.mean((2, 3)), out.std((2, 3))]
        self._stage_outputs = []
        return torch.cat(parts, 1)

    def columns(self, selection: str) -> list[int]:
        """Positions, in :meth:`forward`'s output, of the features a head reads: ``multilevel``
        (all), ``pooled`` (the final embedding), ``stages`` (every stage's mean and std), ``early``
        (the first half of the stages, rounded up: the resolutions where noise and blur live)."""
        f = self.pooled_features
        if selection == "multilevel":
            return list(range(self.num_features))
        if selection == "pooled":
            return list(range(f))
        if selection == "none":
            return []
        n_stages = len(self.stage_channels) if selection == "stages" else (len(self.stage_channels) + 1) // 2
        return list(range(f, f + 2 * sum(self.stage_channels[:n_stages])))
