"""Photometric training losses: L = 0.8·L1 + 0.2·(1 − SSIM) (``docs/paper.md`` §5).

The paper adds 0.01·LPIPS late in training (after ~86 % of the steps). LPIPS needs pretrained
network weights that this project neither ships nor downloads, so ``photometric_loss`` takes an
optional ``perceptual`` callable instead: pass one (e.g. an LPIPS module you loaded yourself) and
its term is added with ``perceptual_weight``; without one the term is absent, not faked.

Letters: N images, H/W pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# Stability constants of Wang et al. for images in 0..1 (as in 3DGS).
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
L1_WEIGHT = 0.8
SSIM_WEIGHT = 0.2

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_window_cache: dict[tuple[str, torch.dtype, int], torch.Tensor] = {}


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """``[size, size]`` normalised 2D Gaussian kernel."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def _window(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (str(device), dtype, channels)
    if key not in _window_cache:
        _window_cache[key] = gaussian_window().to(device=device, dtype=dtype).expand(channels, 1, -1, -1).contiguous()
    return _window_cache[key]


def ssim(x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Structural similarity as in 3DGS (Gaussian window 11, sigma 1.5, zero padding).

    Args:
        x, y: ``[N, C, H, W]`` images in 0..1 (C = 3 usually).
        reduction: ``mean`` (a scalar over everything), ``none`` (``[N]``, one per image) or
            ``map`` (``[N, C, H, W]``, per pixel, for SSIM inside a mask).

    Returns:
        SSIM, 1 for identical images.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two [N, C, H, W] tensors of one shape, got {list(x.shape)} and {list(y.shape)}")
    c = x.shape[1]
    # SSIM's products of small numbers lose too much in bf16/fp16.
    x, y = x.float(), y.float()
    win = _window(c, x.device, x.dtype)
    pad = SSIM_WINDOW // 2
    mu_x = F.conv2d(x, win, padding=pad, groups=c)
    mu_y = F.conv2d(y, win, padding=pad, groups=c)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = F.conv2d(x * x, win, padding=pad, groups=c) - mu_xx
    var_y = F.conv2d(y * y, win, padding=pad, groups=c) - mu_yy
    cov = F.conv2d(x * y, win, padding=pad, groups=c) - mu_xy
    ssim_map = ((2 * mu_xy + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_xx + mu_yy + SSIM_C1) * (var_x + var_y + SSIM_C2))
    if reduction == "mean":
        return ssim_map.mean()
    if reduction == "none":
        return ssim_map.flatten(1).mean(dim=1)
    if reduction == "map":
        return ssim_map
    raise ValueError(f"unknown reduction {reduction!r} (mean, none, map)")


@dataclass
class LossParts:
    """A loss and its terms (the terms are detached, for logging).

    Attributes:
        total: scalar to backpropagate.
        l1: mean absolute error.
        ssim: mean SSIM (the loss uses 1 − ssim).
        perceptual: the perceptual term, or None when no perceptual network was given.
    """

    total: torch.Tensor
    l1: torch.Tensor
    ssim: torch.Tensor
    perceptual: torch.Tensor | None = None

    def to_dict(self) -> dict[str, float | None]:
        """Plain floats for the log."""
        return {
            "loss": float(self.total.detach()),
            "l1": float(self.l1),
            "ssim": float(self.ssim),
            "perceptual": None if self.perceptual is None else float(self.perceptual),
        }


def photometric_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    perceptual: Perceptual | None = None,
    perceptual_weight: float = 0.01,
    pixel_weights: torch.Tensor | None = None,
) -> LossParts:
    """0.8·L1 + 0.2·(1 − SSIM) [+ perceptual_weight·perceptual(pred, target)].

    Args:
        pred, target: ``[N, 3, H, W]`` in 0..1 (pred may leave the range; it is not clamped, so
            its gradient is not cut).
        perceptual: optional callable ``(pred, target) -> scalar`` (e.g. LPIPS on images in
            0..1); the hook for the paper's late LPIPS term.
        perceptual_weight: its weight (paper: 0.01).
        pixel_weights: optional ``[N, 1, H, W]`` weights of the L1 term (e.g. emphasis on the
            pixels the expression changes); the logged ``l1`` stays the plain mean.

    Returns:
        ``LossParts``.
    """
    pred, target = pred.float(), target.float()
    error = (pred - target).abs()
    l1 = error.mean()
    weighted_l1 = l1 if pixel_weights is None else (error * pixel_weights.to(error)).mean()
    s = ssim(pred, target)
    total = L1_WEIGHT * weighted_l1 + SSIM_WEIGHT * (1.0 - s)
    p_term = None
    if perceptual is not None:
        p_term = perceptual(pred, target).mean()
        total = total + perceptual_weight * p_term
        p_term = p_term.detach()
    return LossParts(total=total, l1=l1.detach(), ssim=s.detach(), perceptual=p_term)
