"""Helping a model learn the expression: loss emphasis on changed pixels, code statistics.

A reconstruction model can reach a low loss by drawing an average face for every code: the
expression-dependent pixels (mouth, eyelids, brows) are a few percent of each image, so their
gradient is swamped by the rest of the head and the expression code is learned last, if at all.
``--changed-weight W`` multiplies the L1 term on those pixels by ``1 + W``. They are found the way
``evaluate`` finds them for its ``psnr_changed``: the target cameras are also read at a
*reference* timestep (an input view's timestep that differs from the target's), and a pixel counts
as changed where the two differ (``changed_pixel_mask``).

Letters: M target views, R crop side.
"""

from __future__ import annotations

import torch

from avat3r_cli.data.prepared import PreparedSubject
from avat3r_cli.data.sampler import SampleSpec
from avat3r_cli.train.step import composite_targets

# Per-pixel max-over-channels absolute difference above which a pixel counts as "changed by the
# expression": 0.05 is ~13 grey levels, above 8-bit noise and blending seams, below the contrast
# of a mouth opening or an eyelid.
CHANGED_THRESHOLD = 0.05


def changed_pixel_mask(
    target: torch.Tensor, same_view_at_input_expression: torch.Tensor, threshold: float = CHANGED_THRESHOLD
) -> torch.Tensor:
    """Pixels the expression changes: where the target differs from the same camera's view at the
    input expression by more than ``threshold`` in some channel.

    Args:
        target: ``[N, 3, H, W]`` the target view at the target expression.
        same_view_at_input_expression: ``[N, 3, H, W]`` the same camera at the inputs' timestep,
            composited over the same background.
        threshold: on the per-pixel max over channels of the absolute difference (0..1 scale).

    Returns:
        ``[N, 1, H, W]`` float mask (1 = changed).
    """
    diff = (target.float() - same_view_at_input_expression.float()).abs().amax(dim=1, keepdim=True)
    return (diff > threshold).float()


def reference_timestep(spec: SampleSpec) -> int | None:
    """The first input timestep that differs from the target's, or None when all are equal."""
    return next((t for t in spec.input_timesteps if t != spec.target_timestep), None)


def changed_pixel_weights(
    subject: PreparedSubject, spec: SampleSpec, target: torch.Tensor, background: torch.Tensor, weight: float
) -> torch.Tensor | None:
    """Per-pixel L1 weights ``[M, 1, R, R]``: ``1 + weight`` where the expression changes, else 1.

    Args:
        subject: the sample's prepared subject.
        spec: the sample's views.
        target: ``[M, 3, R, R]`` the targets composited over ``background``.
        background: ``[3]``.
        weight: the extra weight W (0 turns emphasis off).

    Returns:
        The weights on ``target``'s device, or None when ``weight`` is 0 or every input shares the
        target's timestep (nothing to compare against).
    """
    ref_time = reference_timestep(spec)
    if weight <= 0 or ref_time is None:
        return None
    ref = subject.views([ref_time] * len(spec.target_cameras), list(spec.target_cameras))
    reference = composite_targets(ref["images"], ref["masks"], background.cpu()).to(target.device)
    return 1.0 + weight * changed_pixel_mask(target.detach(), reference)


# Channels that hardly vary in the training codes (``_neutral`` is ~0 everywhere) keep this
# spread rather than being blown up by a near-zero one.
MIN_CODE_STD = 0.05


def expression_statistics(subjects: list[PreparedSubject]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and spread ``[52]`` of the training subjects' codes (for
    ``Avat3r.set_expression_stats``); the spread is floored at ``MIN_CODE_STD``."""
    codes = torch.cat([s.expressions.float() for s in subjects])
    return codes.mean(dim=0), codes.std(dim=0, unbiased=False).clamp(min=MIN_CODE_STD)
