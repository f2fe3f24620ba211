"""The CUDA path: gsplat's rasteriser with the same conventions as the PyTorch one."""

from __future__ import annotations

import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.gaussians import Gaussians


def rasterize_gsplat(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render with ``gsplat.rasterization`` (CUDA only); outputs as ``rasterize_torch``."""
    from gsplat import rasterization  # deferred: gsplat is imported only where CUDA is used

    colors, alphas, _ = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=gaussians.sh,
        viewmats=camera.world_to_cam[None],
        Ks=camera.K[None],
        width=camera.width,
        height=camera.height,
        sh_degree=gaussians.sh_degree,
        backgrounds=background[None],
        render_mode="RGB+ED",
        near_plane=near_plane,
        eps2d=eps2d,
        packed=False,
        rasterize_mode="classic",
    )
    image = colors[0, ..., :3].permute(2, 0, 1)
    depth = colors[0, ..., 3:].permute(2, 0, 1)
    alpha = alphas[0].permute(2, 0, 1)
    return image, alpha, depth
