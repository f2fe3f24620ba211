"""The project's pure-PyTorch rasteriser (CPU and MPS): project, sort, tile, composite."""

from __future__ import annotations

import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.render.composite import composite_tiles, tiles_to_image
from avat3r_cli.render.projection import project_gaussians
from avat3r_cli.render.sh import sh_to_color
from avat3r_cli.render.tiles import build_tile_lists


def rasterize_torch(
    gaussians: Gaussians,
    camera: Camera,
    background: torch.Tensor,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render ``gaussians`` seen by ``camera`` over ``background [3]``.

    Returns image ``[3, H, W]``, alpha ``[1, H, W]`` and expected depth ``[1, H, W]`` (0 where
    nothing was drawn); differentiable in every Gaussian attribute.
    """
    h, w = camera.height, camera.width
    proj = project_gaussians(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        camera.K,
        camera.world_to_cam,
        h,
        w,
        eps2d=eps2d,
        near_plane=near_plane,
    )
    visible = torch.nonzero(proj.visible).squeeze(1)
    visible = visible[torch.argsort(proj.depths.detach()[visible], stable=True)]
    colors = sh_to_color(gaussians.sh[visible], gaussians.means[visible], camera.center)
    feats = torch.cat([colors, proj.depths[visible, None]], dim=1)
    means2d, conics, opacities = proj.means2d[visible], proj.conics[visible], gaussians.opacities[visible]
    lists = build_tile_lists(means2d.detach(), conics.detach(), opacities.detach(), proj.radii[visible], h, w)
    acc, transmittance = composite_tiles(means2d, conics, opacities, feats, lists)
    acc = tiles_to_image(acc, lists, h, w)
    transmittance = tiles_to_image(transmittance[:, None, :], lists, h, w)
    alpha = 1.0 - transmittance
    image = acc[:3] + transmittance * background[:, None, None]
    depth = acc[3:] / alpha.clamp(min=1e-10)
    return image, alpha, depth
