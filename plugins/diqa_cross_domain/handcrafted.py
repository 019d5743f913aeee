"""Hand-crafted quality features, computed in torch on the image at native resolution.

Why: the frozen ImageNet backbone is trained to be invariant to the very distortions a quality
model must see (noise, blur, compression, exposure, colour cast), and a head trained on a few
hundred images cannot recover what the embedding discarded. Natural-scene statistics carry that
evidence directly, in a few dozen numbers that a small head can use without overfitting.

Two sets (option ``handcrafted`` of the method):

- ``nss`` (36 numbers): the BRISQUE features of Mittal et al. (TIP 2012). Mean-subtracted
  contrast-normalised (MSCN) luminance coefficients, a generalised Gaussian fitted to them (shape,
  variance) and an asymmetric generalised Gaussian fitted to the products of neighbouring
  coefficients in 4 orientations (shape, mean, left and right variance), at full and half scale.
  Moment-matching fits as in the paper; the shape is read off a fine grid.
- ``full`` (36 + 24): ``nss`` plus global statistics that BRISQUE's grey, contrast-normalised view
  cannot see: exposure (luminance mean, spread, percentiles, clipped fractions), colour (opponent
  channel means and spreads, colourfulness, mean saturation), sharpness (log Laplacian energy at two
  scales and their ratio, gradient energy), noise (Immerkaer's sigma estimate), JPEG blockiness (8x8
  grid edge energy against the rest), and glare (bright, unsaturated pixels).

All features are deterministic functions of the pixels (no randomness, no learned weights), float32,
one row per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diqa_bench.threads import single_thread

KINDS = ("none", "nss", "full")
NSS_DIM = 36
STATS_DIM = 24
_LUMA = (0.299, 0.587, 0.114)
_MSCN_C = 1.0 / 255.0  # BRISQUE's C = 1 on the 0-255 scale


def feature_dim(kind: str) -> int:
    return {"none": 0, "nss": NSS_DIM, "full": NSS_DIM + STATS_DIM}[kind]


def features(images: torch.Tensor, kind: str) -> torch.Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> [B, feature_dim(kind)] float32."""
    # many cheap elementwise passes: one CPU thread is as fast as two, and far faster on shared cores
    with single_thread(images.is_cuda):
        return _features(images.float(), kind)


def _features(images: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "none":
        return images.new_zeros(images.shape[0], 0)
    if kind not in KINDS:
        raise ValueError(f"unknown hand-crafted feature set {kind!r}: use {', '.join(KINDS)}")
    gray = luminance(images)
    parts = [brisque(gray)]
    if kind == "full":
        parts.append(global_stats(images, gray))
    return torch.cat(parts, 1)


def luminance(images: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True)


# -- BRISQUE ---------------------------------------------------------------------------------------
def _gaussian_window(device, dtype, size: int = 7, sigma: float = 7.0 / 6.0) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, replicate padding (no dark border from zero padding). Written as
    shifted sums: single-channel conv2d is many times slower on CPU."""
    k = g.numel()
    x = F.pad(x, (k // 2, k // 2, k // 2, k // 2), mode="replicate")
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(g[i] * x[..., :, i : i + w] for i in range(k))
    return sum(g[i] * rows[..., i : i + h, :] for i in range(k))


def mscn(gray: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] luminance in [0, 1] -> MSCN coefficients, same shape."""
    g = _gaussian_window(gray.device, gray.dtype)
    mu = _blur(gray, g)
    sigma = (_blur(gray * gray, g) - mu * mu).clamp_min(0).sqrt()
    return (gray - mu) / (sigma + _MSCN_C)


_ALPHA_GRID = torch.arange(0.2, 10.0, 0.001, dtype=torch.float64)


def _ggd_ratio_table() -> torch.Tensor:
    a = _ALPHA_GRID
    return torch.exp(torch.lgamma(2 / a) * 2 - torch.lgamma(1 / a) - torch.lgamma(3 / a))


_RATIO = _ggd_ratio_table()  # Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)), decreasing in 1/a


def _shape_from_ratio(ratio: torch.Tensor) -> torch.Tensor:
    """The GGD shape whose moment ratio is nearest to ``ratio`` ([B] float64)."""
    table = _RATIO.to(ratio.device)
    idx = (table[None, :] - ratio[:, None]).abs().argmin(1)
    return _ALPHA_GRID.to(ratio.device)[idx]


def _ggd(x: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B, 2]: shape and variance of a zero-mean generalised Gaussian."""
    var = (x * x).sum(1, dtype=torch.float64) / x.shape[1]
    ratio = (x.abs().sum(1, dtype=torch.float64) / x.shape[1]) ** 2 / var.clamp_min(1e-20)
    return torch.stack([_shape_from_ratio(ratio), var], 1)


def _aggd(x: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B, 4]: shape, mean, left variance and right variance of an asymmetric GGD."""
    sq = x * x
    neg = x < 0
    n_neg = neg.sum(1)
    n_pos = (x > 0).sum(1)
    total = sq.sum(1, dtype=torch.float64)
    left_sum = torch.where(neg, sq, 0).sum(1, dtype=torch.float64)
    left_var = left_sum / n_neg.clamp_min(1)
    right_var = (total - left_sum) / n_pos.clamp_min(1)
    left, right = left_var.sqrt(), right_var.sqrt()
    gamma = left / right.clamp_min(1e-20)
    r_hat = (x.abs().sum(1, dtype=torch.float64) / x.shape[1]) ** 2 / (total / x.shape[1]).clamp_min(1e-20)
    r_norm = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    alpha = _shape_from_ratio(r_norm)
    lg1, lg2, lg3 = torch.lgamma(1 / alpha), torch.lgamma(2 / alpha), torch.lgamma(3 / alpha)
    scale = torch.exp(0.5 * (lg1 - lg3))
    mean = (right - left) * scale * torch.exp(lg2 - lg1)
    return torch.stack([alpha, mean, left_var, right_var], 1)


def _brisque_scale(gray: torch.Tensor) -> torch.Tensor:
    m = mscn(gray)[:, 0]
    b = m.shape[0]
    feats = [_ggd(m.reshape(b, -1))]
    shifts = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals
    h, w = m.shape[1:]
    for dy, dx in shifts:
        a = m[:, : h - dy, max(0, -dx) : w - max(0, dx)]  # pixel (y, x)
        c = m[:, dy:, max(0, dx) : w - max(0, -dx)]  # its neighbour (y + dy, x + dx)
        feats.append(_aggd((a * c).reshape(b, -1)))
    return torch.cat(feats, 1)


def brisque(gray: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] luminance in [0, 1] -> [B, 36] BRISQUE features (full and half scale)."""
    half = F.interpolate(gray, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return torch.cat([_brisque_scale(gray), _brisque_scale(half)], 1).float()


# -- global statistics -----------------------------------------------------------------------------
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def _filter(gray: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """3x3 correlation without padding (no border effects), as shifted sums (see _blur)."""
    h, w = gray.shape[-2] - 2, gray.shape[-1] - 2
    return sum(float(kernel[i, j]) * gray[..., i : i + h, j : j + w] for i in range(3) for j in range(3) if kernel[i, j] != 0)


def _blockiness(gray: torch.Tensor) -> torch.Tensor:
    """log of (mean |step| across 8-pixel grid lines) / (mean |step| elsewhere), both directions."""
    out = []
    for dim in (3, 2):
        d = gray.diff(dim=dim).abs()
        n = d.shape[dim]
        pos = torch.arange(n, device=gray.device)
        on = (pos % 8) == 7  # the step between pixel 8k+7 and 8k+8
        if not on.any() or on.all():
            out.append(gray.new_zeros(gray.shape[0]))
            continue
        view = [1, 1, 1, 1]
        view[dim] = n
        mask = on.view(view).to(d.dtype)
        grid = (d * mask).sum((1, 2, 3)) / (mask.sum() * d.numel() / (d.shape[0] * n))
        rest = (d * (1 - mask)).sum((1, 2, 3)) / ((1 - mask).sum() * d.numel() / (d.shape[0] * n))
        out.append(torch.log((grid + 1e-4) / (rest + 1e-4)))
    return torch.stack(out, 1)


def global_stats(images: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W], [B, 1, H, W] -> [B, 24]."""
    b = images.shape[0]
    flat = gray.reshape(b, -1)
    q = torch.quantile(flat, torch.tensor([0.01, 0.5, 0.99], device=flat.device, dtype=flat.dtype), dim=1).T
    exposure = torch.cat(
        [flat.mean(1, keepdim=True), flat.std(1, keepdim=True), q, (flat < 0.02).float().mean(1, keepdim=True), (flat > 0.98).float().mean(1, keepdim=True)],
        1,
    )  # 7
    r, g, bl = images[:, 0], images[:, 1], images[:, 2]
    rg = (r - g).reshape(b, -1)
    yb = (0.5 * (r + g) - bl).reshape(b, -1)
    mx, mn = images.amax(1), images.amin(1)
    sat = ((mx - mn) / mx.clamp_min(1e-3)).reshape(b, -1)
    colourfulness = (rg.std(1) ** 2 + yb.std(1) ** 2).sqrt() + 0.3 * (rg.mean(1) ** 2 + yb.mean(1) ** 2).sqrt()
    colour = torch.stack([rg.mean(1), yb.mean(1), rg.std(1), yb.std(1), colourfulness, sat.mean(1)], 1)  # 6
    half = F.interpolate(gray, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    lap1 = _filter(gray, _LAPLACE).reshape(b, -1).var(1).clamp_min(1e-10).log()
    lap2 = _filter(half, _LAPLACE).reshape(b, -1).var(1).clamp_min(1e-10).log()
    grad = (gray.diff(dim=3)[:, :, :-1] ** 2 + gray.diff(dim=2)[:, :, :, :-1] ** 2).mean((1, 2, 3)).clamp_min(1e-10).log()
    hp = _filter(gray, _LAPLACE).abs().reshape(b, -1)
    sharp = torch.stack([lap1, lap2, lap1 - lap2, grad, (hp.mean(1) + 1e-6).log()], 1)  # 5
    h, w = gray.shape[-2:]
    immerkaer = _filter(gray, _IMMERKAER).abs().sum((1, 2, 3)) * math.sqrt(math.pi / 2) / (6 * max(w - 2, 1) * max(h - 2, 1))
    # median high-pass magnitude: a noise level robust to edges
    noise = torch.stack([(immerkaer + 1e-6).log(), (hp.median(1).values + 1e-6).log()], 1)  # 2
    blocks = _blockiness(gray)  # 2
    glare = ((flat > 0.9) & (sat < 0.15)).float().mean(1, keepdim=True)
    clipped_channels = (images > 0.98).float().mean((2, 3)).amax(1, keepdim=True)
    return torch.cat([exposure, colour, sharp, noise, blocks, glare, clipped_channels], 1).float()  # 24
