"""One sample through the model and the renderer: what a training or validation step computes.

Letters: V input views, M target views, R crop side, N Gaussians.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from avat3r_cli.core.camera import Camera
from avat3r_cli.data.prepared import TrainingSample
from avat3r_cli.model.avat3r import maps_to_gaussians
from avat3r_cli.model.inputs import GaussianMaps
from avat3r_cli.render.api import render


@dataclass
class RenderedSample:
    """Predictions and targets of one sample; unpacks as ``pred, target = rendered``.

    Attributes:
        pred: ``[M, 3, R, R]`` renders over the background (not clamped).
        target: ``[M, 3, R, R]`` targets composited over the same background.
        num_gaussians: N, Gaussians above the confidence threshold plus any anchor Gaussians
            (0 = nothing was drawn).
    """

    pred: torch.Tensor
    target: torch.Tensor
    num_gaussians: int

    def __iter__(self):
        return iter((self.pred, self.target))


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def composite_targets(images: torch.Tensor, masks: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``images [M, 3, R, R] · masks [M, 1, R, R] + background [3] · (1 − masks)``."""
    bg = background.to(images)[None, :, None, None]
    return images * masks + bg * (1.0 - masks)


def random_background(generator: torch.Generator) -> torch.Tensor:
    """``[3]`` uniform random colour: a fresh background per step (as FlexAvatar trains), so the
    model cannot bake one background colour into semi-transparent Gaussians."""
    return torch.rand(3, generator=generator)


def render_maps(
    maps: GaussianMaps,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    size: tuple[int, int],
    background: torch.Tensor,
    confidence_threshold: float,
) -> tuple[torch.Tensor, int]:
    """Render batch element 0 of ``maps`` from M cameras.

    Args:
        maps: ``GaussianMaps`` with B >= 1.
        K: ``[M, 3, 3]``; world_to_cam ``[M, 4, 4]``.
        size: (H, W) of the renders.
        background: ``[3]``.
        confidence_threshold: tau for ``maps_to_gaussians``.

    Returns:
        (``[M, 3, H, W]`` images, N).
    """
    gaussians = maps_to_gaussians(maps, confidence_threshold)
    device = gaussians.device
    background = background.to(device=device, dtype=torch.float32)
    h, w = size
    if gaussians.count == 0:
        # Every pixel was below tau: the render is the background. Tie it to the maps with a zero
        # so backward still reaches every parameter (zero gradients; DDP needs all of them).
        anchor = 0.0 * (maps.means.sum() + maps.sh.sum() + maps.opacities.sum() + maps.scales.sum() + maps.quats.sum())
        flat = background[None, :, None, None].expand(K.shape[0], 3, h, w)
        return flat + anchor, 0
    images = []
    for k, w2c in zip(K, world_to_cam):
        out = render(gaussians, Camera(k.float(), w2c.float(), h, w), background)
        images.append(out.image)
    return torch.stack(images), gaussians.count


def render_sample(
    model: nn.Module,
    sample: TrainingSample,
    background: torch.Tensor,
    device: torch.device | str,
    autocast: bool = False,
    expression: torch.Tensor | None = None,
) -> RenderedSample:
    """Model forward -> Gaussians above tau -> a render per target camera over ``background``.

    Args:
        model: ``Avat3r`` (or a DDP wrapper around one).
        sample: a ``TrainingSample`` (B = 1; M targets of R x R).
        background: ``[3]`` colour for the renders and the composited targets.
        device: where to compute.
        autocast: bf16 autocast around the network (honoured on CUDA only; rendering stays fp32).
        expression: ``[1, E]`` to use instead of the sample's own code (e.g. zeros for a baseline).

    Returns:
        ``RenderedSample`` with ``pred`` and ``target`` ``[M, 3, R, R]``.
    """
    device = torch.device(device)
    inputs = sample.inputs.to(device)
    code = (sample.expression if expression is None else expression).to(device)
    use_autocast = autocast and device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if use_autocast else nullcontext()
    with ctx:
        maps = model(inputs, code)
    tau = unwrap(model).config.confidence_threshold
    size = (int(sample.target_images.shape[-2]), int(sample.target_images.shape[-1]))
    pred, count = render_maps(
        maps, sample.target_K.to(device), sample.target_world_to_cam.to(device), size, background, tau
    )
    target = composite_targets(sample.target_images.to(device), sample.target_masks.to(device), background.to(device))
    return RenderedSample(pred=pred, target=target, num_gaussians=count)
