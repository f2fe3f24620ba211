"""``render``: one entry point for every device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.gaussians import Gaussians

BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "gray": (0.5, 0.5, 0.5), "grey": (0.5, 0.5, 0.5)}


@dataclass
class RenderOutput:
    """What ``render`` returns.

    Attributes:
        image: ``[3, H, W]`` colour composited over the background (not clamped).
        alpha: ``[1, H, W]`` accumulated opacity.
        depth: ``[1, H, W]`` expected camera-space depth (0 where alpha is 0).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def parse_background(value: str | tuple[float, float, float] | torch.Tensor) -> torch.Tensor:
    """A background colour ``[3]`` from a name (white, black, gray), ``#rrggbb``, ``r,g,b`` or a tuple."""
    if isinstance(value, torch.Tensor):
        return value.to(torch.float32).reshape(3)
    if isinstance(value, tuple):
        return torch.tensor(value, dtype=torch.float32)
    text = value.strip().lower()
    if text in BACKGROUNDS:
        return torch.tensor(BACKGROUNDS[text])
    try:
        if text.startswith("#") and len(text) == 7:
            return torch.tensor([int(text[i : i + 2], 16) / 255.0 for i in (1, 3, 5)])
        parts = [float(p) for p in text.split(",")]
        if len(parts) == 3 and all(0.0 <= p <= 1.0 for p in parts):
            return torch.tensor(parts)
    except ValueError:
        pass
    raise ValueError(f"background {value!r} is not a colour: use white, black, gray, #rrggbb or r,g,b in 0..1")


def render(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor | tuple[float, float, float] | str = (1.0, 1.0, 1.0),
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    backend: str = "auto",
) -> RenderOutput:
    """Render ``gaussians`` (N Gaussians) from ``camera``; differentiable.

    ``backend`` is ``auto`` (gsplat for CUDA tensors, the PyTorch rasteriser otherwise),
    ``gsplat`` or ``torch``. Camera and background are moved to the Gaussians' device.
    """
    device = gaussians.device
    bg = parse_background(background).to(device)
    camera = camera.to(device, torch.float32)
    use_gsplat = backend == "gsplat" or (backend == "auto" and device.type == "cuda")
    if use_gsplat:
        from avat3r_cli.render.gsplat_backend import rasterize_gsplat

        image, alpha, depth = rasterize_gsplat(gaussians, camera, bg, eps2d=eps2d, near_plane=near_plane)
    elif backend in ("auto", "torch"):
        from avat3r_cli.render.rasterize_torch import rasterize_torch

        image, alpha, depth = rasterize_torch(gaussians, camera, bg, eps2d=eps2d, near_plane=near_plane)
    else:
        raise ValueError(f"unknown render backend {backend!r} (auto, gsplat, torch)")
    return RenderOutput(image, alpha, depth)
