"""Per-image features of pyiqa's classical metrics, computed in float64 and cached per image.

``brisque_features`` is the 36-vector pyiqa's BRISQUE feeds its SVR (two scales of natural scene
statistics on the rounded Y channel); ``niqe_block_features`` are the 36 features per 96x96 block
that pyiqa's NIQE fits its Gaussian to. Both follow pyiqa's own functions step by step, so a refitted
model differs from the published one only by what it was fitted on (the tests check both against
pyiqa's scores with the LIVE parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from importlib.metadata import version

import numpy as np

from diqa_bench.errors import DataError

# Bump when what an extractor returns changes: it is part of every feature cache namespace.
EXTRACTOR_VERSION = "1"
NIQE_BLOCK = 96
BRISQUE_MIN = 7  # its 7x7 Gaussian window: below, pyiqa's half-scale resize fails obscurely


@cache
def feature_namespace(kind: str) -> str:
    return f"diqa_pyiqa/{kind}/v{EXTRACTOR_VERSION}/pyiqa-{version('pyiqa')}/float64"


def brisque_features(images, paths: Sequence[str] = ()) -> np.ndarray:
    """[B, 3, H, W] RGB in [0, 1] -> [B, 36] float64."""
    import torch
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    h, w = images.shape[-2:]
    if min(h, w) < BRISQUE_MIN:
        where = paths[0] if paths else "image"
        raise DataError(f"{where}: BRISQUE needs at least {BRISQUE_MIN}x{BRISQUE_MIN} pixels, got {h}x{w}")
    with torch.inference_mode():
        luma = to_y_channel(images.to(torch.float64), 255.0)
        scales = []
        for _ in range(2):
            scales.append(natural_scene_statistics(luma, 7, 7 / 6))
            luma = imresize(luma, scale=0.5, antialiasing=True)
        return torch.cat(scales, dim=-1).cpu().numpy()


def niqe_block_features(images, paths: Sequence[str] = ()) -> np.ndarray:
    """[B, 3, H, W] RGB in [0, 1] -> [B, blocks, 36] float64 (pyiqa's ``calculate_niqe``/``niqe``)."""
    import torch
    from pyiqa.archs.func_util import normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize
    from pyiqa.utils.color_util import to_y_channel

    h, w = images.shape[-2:]
    rows, cols = math.floor(h / NIQE_BLOCK), math.floor(w / NIQE_BLOCK)
    if rows == 0 or cols == 0:
        where = paths[0] if paths else "image"
        raise DataError(f"{where}: NIQE needs at least {NIQE_BLOCK}x{NIQE_BLOCK} pixels, got {h}x{w}")
    with torch.inference_mode():
        img = to_y_channel(images.to(torch.float64), 255, "yiq").round()
        img = img[..., : rows * NIQE_BLOCK, : cols * NIQE_BLOCK]
        per_scale = []
        for scale in (1, 2):
            normalised = normalize_img_with_gauss(img, padding="replicate")
            per_scale.append(blockproc(normalised, [NIQE_BLOCK // scale, NIQE_BLOCK // scale], fun=compute_feature))
            if scale == 1:
                img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
        return torch.cat(per_scale, dim=-1).cpu().numpy()


def niqe_distance(blocks: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    """NIQE quality of one image: distance between its block Gaussian and the pristine one (Eq. 10)."""
    import torch
    from pyiqa.matlab_utils import nancov, nanmean

    feats = torch.from_numpy(np.asarray(blocks, dtype=np.float64))[None]
    mu_d, cov_d = nanmean(feats, dim=1), nancov(feats)
    mu_p, cov_p = torch.from_numpy(mu)[None], torch.from_numpy(cov)[None]
    inv = torch.linalg.pinv((cov_p + cov_d) / 2)
    diff = (mu_p - mu_d).unsqueeze(1)
    return float(torch.sqrt(torch.bmm(torch.bmm(diff, inv), diff.transpose(1, 2))).squeeze())


def cached_batch_features(cache, extract: Callable, batch, device: str) -> list[np.ndarray]:
    """Features of each image of ``batch``, extracting only those not in ``cache``."""
    found = cache.get_many(batch.keys)
    missing = [i for i, k in enumerate(batch.keys) if k not in found]
    if missing:
        images = batch.images[missing].to(device)
        new = dict(zip((batch.keys[i] for i in missing), extract(images, [batch.paths[i] for i in missing])))
        cache.put_many(new)
        found.update(new)
    return [np.asarray(found[k]) for k in batch.keys]


def training_features(cache, extract: Callable, data, device: str, batch_size: int | None = None) -> list[np.ndarray]:
    """Features of every training sample; only images missing from ``cache`` are decoded."""
    keys = [s.key for s in data.samples]
    found = cache.get_many(keys)
    first_missing: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in found:
            first_missing.setdefault(k, i)
    if first_missing:
        for batch in data.batches(indices=sorted(first_missing.values()), batch_size=batch_size):
            new = dict(zip(batch.keys, extract(batch.images.to(device), batch.paths)))
            cache.put_many(new)
            found.update(new)
    return [np.asarray(found[k]) for k in keys]
