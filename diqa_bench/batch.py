"""The two types a method, the image decoder and the caches all share, kept in a module of their
own that imports nothing of the package: :class:`Batch` (images handed to a method) and
:class:`FeatureCache` (the per-image feature cache a method asks its context for). Plugins import
both from :mod:`diqa_bench.methods`, which re-exports them as part of the method contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # torch is imported only where a method actually runs
    import torch


@dataclass
class Batch:
    """Images handed to :meth:`Method.score_batch`.

    ``images`` is float32, shape [B, 3, H, W], RGB in [0, 1], already on the context's device;
    for a method whose :meth:`Method.numpy_pixels` is True, on the CPU path, a numpy array
    [B, H, W, 3] as decoded (uint8; float32 in [0, 1] for 16-bit files), so that scoring needs no
    torch. All images of a batch have the same size: the image loader (:mod:`diqa_bench.images`) groups images by size (or resizes them to
    ``Method.input_size`` when the method declares one), so no metric sees padding.
    """

    images: "torch.Tensor"
    keys: list[str]  # content hash of each image file: a stable key for per-image caches
    paths: list[str]
    indices: list[int]  # positions in the sequence being scored


class FeatureCache:
    """Per-image feature vectors on disk, keyed by image content hash (see :mod:`diqa_bench.cache`)."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def put_many(self, items: dict[str, Any]) -> None:  # pragma: no cover - interface
        raise NotImplementedError
