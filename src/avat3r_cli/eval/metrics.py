"""Image metrics for evaluation: PSNR and SSIM (whole, masked), silhouette IoU, the changed-pixel mask, LPIPS.

All images are ``[N, 3, H, W]`` (or ``[3, H, W]``) in 0..1; predictions are clamped to 0..1 before
scoring, as an image saved to disk would be.

LPIPS needs the ``lpips`` package *and* its AlexNet backbone weights already on disk (torch hub
cache); nothing is downloaded. Without them ``lpips_metric()`` is None and results report null.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import torch

from avat3r_cli.train.emphasis import CHANGED_THRESHOLD, changed_pixel_mask  # noqa: F401 (part of this API)
from avat3r_cli.train.losses import ssim as _ssim

_MAX_PSNR = 100.0  # identical images: report a finite ceiling rather than inf
_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.ndim == 3 else x


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, one value per image (peak 1).

    Args:
        pred, target: ``[N, 3, H, W]`` (or ``[3, H, W]``) in 0..1; pred is clamped.
        mask: optional ``[N, 1, H, W]``; only pixels with mask > 0.5 count (all three channels).

    Returns:
        ``[N]`` PSNR; NaN for an image whose mask selects no pixel; capped at 100 dB.
    """
    pred, target = _batch(pred).float().clamp(0, 1), _batch(target).float()
    err = (pred - target) ** 2
    if mask is None:
        mse = err.flatten(1).mean(dim=1)
    else:
        sel = (_batch(mask).float() > 0.5).expand_as(err).float()
        count = sel.flatten(1).sum(dim=1)
        mse = (err * sel).flatten(1).sum(dim=1) / count.clamp(min=1)
        mse = torch.where(count > 0, mse, torch.full_like(mse, float("nan")))
    return -10.0 * torch.log10(mse.clamp(min=10 ** (-_MAX_PSNR / 10)))


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[N]`` SSIM per image (``train.losses.ssim``: Gaussian window 11, sigma 1.5); pred clamped.

    Args:
        pred, target: ``[N, 3, H, W]`` (or ``[3, H, W]``) in 0..1.
        mask: optional ``[N, 1, H, W]``: the SSIM map is averaged over pixels with mask > 0.5
            only (the windows still see the whole image); NaN where it selects no pixel.
    """
    pred, target = _batch(pred).float().clamp(0, 1), _batch(target).float()
    if mask is None:
        return _ssim(pred, target, reduction="none")
    values = _ssim(pred, target, reduction="map")
    sel = (_batch(mask).float() > 0.5).expand_as(values).float()
    count = sel.flatten(1).sum(dim=1)
    mean = (values * sel).flatten(1).sum(dim=1) / count.clamp(min=1)
    return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))


def silhouette_iou(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` intersection over union of ``alpha > 0.5`` and ``mask > 0.5`` (both ``[N, 1, H, W]``).

    NaN for an image where both are empty (nothing to compare).
    """
    a, b = _batch(alpha).float() > 0.5, _batch(mask).float() > 0.5
    inter = (a & b).flatten(1).sum(dim=1).float()
    union = (a | b).flatten(1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, float("nan")))


def _alexnet_weights() -> Path | None:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / _ALEXNET_FILE
    return hub if hub.is_file() else None


def lpips_metric(device: torch.device | str = "cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """An LPIPS (AlexNet) scorer ``(pred, target) -> [N]``, or None when package or weights are absent.

    Never downloads: the backbone must already be in the torch hub cache.
    """
    if importlib.util.find_spec("lpips") is None or _alexnet_weights() is None:
        return None
    try:
        import lpips  # type: ignore[import-not-found]

        net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception:  # a broken install or a backbone it cannot load: report null, not a crash
        return None

    @torch.no_grad()
    def score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, t = _batch(pred).float().clamp(0, 1), _batch(target).float()
        return net(p.to(device) * 2 - 1, t.to(device) * 2 - 1).flatten().cpu()  # LPIPS expects -1..1

    return score


def mean_finite(values: list[float]) -> float | None:
    """Mean of the finite values, None when there are none (JSON null)."""
    good = [v for v in values if v is not None and math.isfinite(v)]
    return sum(good) / len(good) if good else None
