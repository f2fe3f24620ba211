"""Test-time fitting (``create --refine N``): per-pixel residuals that make the input photos render back.

The model's prediction is kept frozen; Adam optimises residual maps ``[V, H, W, C]`` (means
offset, SH dc, log-scale, opacity logit; see ``bundle.py``) with the training loss 0.8·L1 +
0.2·(1 − SSIM). Each input photo is compared with the avatar rendered from that photo's camera
and decoded at that photo's own blendshapes, so the fit does not bake one photo's expression
into the others. Because the residuals are pixel-aligned, ``animate`` re-applies them at every
expression. Anchor Gaussians (a model's Gaussians that belong to no pixel) are rendered with the
rest but keep the model's prediction: they exist for what the photos do not show, so the photos
say little about them, and the bundle's residuals stay per pixel.

Targets: each crop over a plain background outside the person (MediaPipe's selfie segmenter,
``preprocess/person_mask.py``), as the training targets are matted by their subjects' masks.
Fitting the photo's real background would only smear Gaussians over it; matting by the position
map's confidence instead (the template head's oval) would turn hair beyond the oval into
background and fade the Gaussians that reach it.

Regularisation (what keeps unseen views from getting worse): the photos constrain every
Gaussian only from the few directions they were taken from, so an unpenalised fit moves depth,
shrinks and hides Gaussians in ways that match the inputs and break every other view. Two terms
hold the residuals back, each in units of a per-attribute spread (``SPREADS``): a proximity
term (mean squared residual: stay close to the network's prediction) and a smoothness term (mean
absolute difference between neighbouring pixels' residuals: neighbours change together, so depth
stays smooth and no single Gaussian is tuned to one photo's pixel).

The residuals returned are those of the step with the best mean input-view PSNR (step 0 is
the model's own prediction), so refinement never reports a worse fit than it started from.

Letters: V views, H/W crop pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from avat3r_cli.model.avat3r import maps_to_gaussians
from avat3r_cli.pipeline.avatar import Avatar
from avat3r_cli.pipeline.bundle import apply_residuals, zero_residuals
from avat3r_cli.preprocess.person_mask import person_masks
from avat3r_cli.render.api import render
from avat3r_cli.train.losses import photometric_loss
from avat3r_cli.train.step import composite_targets

# Per-attribute learning rates, in the units of each residual. Larger than 3DGS's (which runs
# 30k steps) because test-time fitting runs tens to hundreds; offsets stay sub-millimetre per step.
LEARNING_RATES: dict[str, float] = {"offset": 2e-4, "sh_dc": 1e-2, "log_scale": 1e-2, "opacity_logit": 5e-2}
# Residual sizes the penalties count as "one unit": 2 mm of offset, about 0.14 of colour (SH dc
# 0.5), a factor e^0.5 of scale, and a logit shift of 2.
SPREADS: dict[str, float] = {"offset": 2e-3, "sh_dc": 0.5, "log_scale": 0.5, "opacity_logit": 2.0}
# Chosen on held-out real photos (the bundled model's card, benchmarks/refine_penalty.py): at 0.3
# each, 50 steps beat no refinement on every leave-one-out score; at 0.1 they cost face PSNR, at
# 0.5 they give back most of the landmark gain.
PROXIMITY_WEIGHT = 0.3
SMOOTHNESS_WEIGHT = 0.3
BACKGROUND = (1.0, 1.0, 1.0)
MAX_STEPS = 100_000


@dataclass
class RefineResult:
    """What ``refine_avatar`` found.

    Attributes:
        residuals: ``{name: [V, H, W, C]}`` float32 on the CPU.
        psnr_before: mean input-view PSNR (dB) of the model's prediction.
        psnr_after: mean input-view PSNR (dB) with ``residuals``.
        steps: optimiser steps run; best_step: the step whose residuals were kept (0 = none).
        seconds: wall time.
    """

    residuals: dict[str, torch.Tensor]
    psnr_before: float
    psnr_after: float
    steps: int
    best_step: int
    seconds: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "steps": self.steps,
            "best_step": self.best_step,
            "psnr_before": round(self.psnr_before, 3),
            "psnr_after": round(self.psnr_after, 3),
            "seconds": round(self.seconds, 3),
        }


def psnr(mse: float) -> float:
    """PSNR in dB of images in 0..1 from their mean squared error."""
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def refine_targets(avatar: Avatar, background: tuple[float, float, float] = BACKGROUND) -> torch.Tensor:
    """Input crops ``[V, 3, H, W]`` in 0..1 over ``background`` outside the person (soft mask)."""
    b = avatar.bundle
    images = b.images.permute(0, 3, 1, 2).float().to(avatar.device) / 255.0
    masks = torch.from_numpy(person_masks(b.images.cpu().numpy())).to(images)
    return composite_targets(images, masks, torch.tensor(background))


def residual_penalty(residuals: dict[str, torch.Tensor]) -> torch.Tensor:
    """Proximity + smoothness penalty (module docstring) of residual maps ``{name: [V, H, W, C]}``; a scalar."""
    total = torch.zeros((), device=next(iter(residuals.values())).device)
    for name, r in residuals.items():
        unit = r / SPREADS[name]
        along_w = (unit[:, :, 1:] - unit[:, :, :-1]).abs().mean()
        along_h = (unit[:, 1:] - unit[:, :-1]).abs().mean()
        total = total + PROXIMITY_WEIGHT * unit.square().mean() + SMOOTHNESS_WEIGHT * (along_w + along_h)
    return total


def refine_avatar(
    avatar: Avatar,
    steps: int,
    learning_rates: dict[str, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RefineResult:
    """Fit residual maps for ``steps`` Adam steps over all input views, penalised (module docstring).

    Args:
        avatar: the avatar to refine (its current residuals are ignored; fitting starts at 0).
        steps: optimiser steps (>= 0; 0 only measures the PSNR).
        learning_rates: per residual name, default ``LEARNING_RATES``.
        progress: ``progress(done, total)`` after each step.

    Returns:
        ``RefineResult``; the avatar itself is not changed.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be a whole number in 0..{MAX_STEPS}, got {steps!r}")
    start = time.perf_counter()
    rates = {**LEARNING_RATES, **(learning_rates or {})}
    v = avatar.bundle.num_views
    h, w = avatar.image_size
    cams = avatar.input_cameras()
    targets = refine_targets(avatar)
    bg = torch.tensor(BACKGROUND, device=avatar.device)
    # The frozen prediction per view, decoded once at that photo's expression: every step reuses it.
    raw = [avatar.raw_maps_at(avatar.bundle.blendshapes[i]) for i in range(v)]
    params = {k: t.requires_grad_(True) for k, t in zero_residuals(v, h, w, avatar.device).items()}
    optimizer = torch.optim.Adam([{"params": [p], "lr": rates[k]} for k, p in params.items()])
    tau = avatar.confidence_threshold

    best_psnr, best_step, before = -math.inf, 0, math.nan
    best = {k: p.detach().clone() for k, p in params.items()}
    for step in range(steps + 1):
        # The last pass only measures the final residuals; it needs no graph.
        train = step < steps
        optimizer.zero_grad(set_to_none=True)
        mses = []
        with torch.set_grad_enabled(train):
            for i in range(v):
                gaussians = maps_to_gaussians(apply_residuals(raw[i], params), tau)
                image = render(gaussians, cams[i], bg).image
                if train:
                    # Backward per view: one view's graph alive at a time keeps memory flat.
                    (photometric_loss(image[None], targets[i][None]).total / v).backward()
                mses.append(float(((image.detach().clamp(0.0, 1.0) - targets[i]) ** 2).mean()))
            if train:
                residual_penalty(params).backward()
        score = sum(psnr(m) for m in mses) / v
        if step == 0:
            before = score
        if score > best_psnr:
            best_psnr, best_step = score, step
            best = {k: p.detach().clone() for k, p in params.items()}
        if train:
            optimizer.step()
            if progress is not None:
                progress(step + 1, steps)
    return RefineResult(
        residuals={k: t.cpu() for k, t in best.items()},
        psnr_before=before,
        psnr_after=best_psnr,
        steps=steps,
        best_step=best_step,
        seconds=time.perf_counter() - start,
    )
