"""Training losses on normalised MOS.

- ``l1`` / ``mse``: regression of the predicted score onto ``mos_norm``.
- ``fidelity``: the pairwise ranking fidelity loss of UNIQUE (Zhang et al., TIP 2021). For a pair
  (i, j) the model's probability that i looks better than j is ``p_hat = Phi((s_i - s_j) / (sqrt(2)
  * sigma))`` (Thurstone with equal score variance sigma^2); the target ``p`` is 1, 0.5 or 0 from the
  MOS order. Loss = ``1 - sqrt(p * p_hat) - sqrt((1 - p) * (1 - p_hat))``. Pairs are only ever drawn
  within one dataset (see :func:`diqa_cross_domain.sampling.within_dataset_pairs`), so MOS on
  different scales are never compared.
- ``mix``: ``(1 - w) * regression + w * fidelity`` (L1 for the regression part).
"""

from __future__ import annotations

import math

import torch

_EPS = 1e-12  # keeps sqrt differentiable at 0 while changing the loss by ~1e-6 only


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def pair_targets(target_i: torch.Tensor, target_j: torch.Tensor) -> torch.Tensor:
    """1 where i is better, 0 where j is better, 0.5 on ties."""
    return 0.5 * (torch.sign(target_i - target_j) + 1.0)


def fidelity_loss(score_i: torch.Tensor, score_j: torch.Tensor, p: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Mean fidelity loss over pairs; ``p`` is the target probability that i is better than j."""
    diff = (score_i - score_j) / (math.sqrt(2.0) * sigma)
    p_hat = 0.5 * (1.0 + torch.erf(diff / math.sqrt(2.0)))  # standard normal CDF
    loss = 1.0 - torch.sqrt(p * p_hat + _EPS) - torch.sqrt((1.0 - p) * (1.0 - p_hat) + _EPS)
    return loss.mean()


def quality_loss(
    kind: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    pairs: torch.Tensor | None,
    mix_weight: float = 0.5,
    sigma: float = 0.1,
) -> torch.Tensor:
    """The configured loss for one batch. ``pairs`` is a [P, 2] index tensor of within-dataset pairs
    (needed by ``fidelity`` and ``mix``; with no pair the ranking part is zero)."""
    pred = pred.float()
    target = target.float()
    if kind == "l1":
        return l1_loss(pred, target)
    if kind == "mse":
        return mse_loss(pred, target)
    if kind in ("fidelity", "mix"):
        if pairs is None or len(pairs) == 0:
            rank = pred.sum() * 0.0  # keeps the graph, contributes nothing
        else:
            i, j = pairs[:, 0], pairs[:, 1]
            rank = fidelity_loss(pred[i], pred[j], pair_targets(target[i], target[j]), sigma)
        if kind == "fidelity":
            return rank
        return (1.0 - mix_weight) * l1_loss(pred, target) + mix_weight * rank
    raise ValueError(f"unknown loss {kind!r}: use l1, mse, fidelity or mix")
