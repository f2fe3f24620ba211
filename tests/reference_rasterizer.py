"""A dense brute-force Gaussian rasteriser for tests: every pixel against every Gaussian.

Written plainly, in float64, on gsplat's own pure-PyTorch projection helpers, so it shares no
code with the project's tiled rasteriser.
"""

from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics


def dense_render(means, quats, scales, opacities, sh, K, world_to_cam, height, width, background):
    """Image ``[3, H, W]``, alpha ``[1, H, W]``, expected depth ``[1, H, W]``; differentiable."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, world_to_cam[None], K[None], width, height, eps2d=0.3, near_plane=0.01
    )
    means2d, depths, conics = means2d[0], depths[0], conics[0]
    in_front = (radii[0] > 0).all(dim=-1)  # behind the near plane or fully off-screen -> 0
    campos = torch.linalg.inv(world_to_cam)[:3, 3]
    degree = int(round(sh.shape[1] ** 0.5)) - 1
    colors = torch.clamp_min(_spherical_harmonics(degree, means - campos, sh) + 0.5, 0.0)

    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means.dtype) + 0.5, torch.arange(width, dtype=means.dtype) + 0.5, indexing="ij"
    )
    transmittance = torch.ones(height, width, dtype=means.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    rgb = torch.zeros(3, height, width, dtype=means.dtype)
    depth_acc = torch.zeros(height, width, dtype=means.dtype)
    for i in torch.argsort(depths.detach(), stable=True).tolist():
        if not bool(in_front[i]) or float(opacities[i].detach()) < 1.0 / 255.0:
            continue
        dx = means2d[i, 0] - xs
        dy = means2d[i, 1] - ys
        a, b, c = conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.999)
        use = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
        next_t = transmittance * (1 - alpha)
        stop = use & (next_t <= 1e-4)
        done = done | stop
        use = use & ~stop
        weight = torch.where(use, alpha * transmittance, torch.zeros_like(alpha))
        rgb = rgb + weight * colors[i][:, None, None]
        depth_acc = depth_acc + weight * depths[i]
        transmittance = torch.where(use, next_t, transmittance)
    alpha_img = 1 - transmittance
    image = rgb + transmittance * background[:, None, None]
    depth = depth_acc / alpha_img.clamp(min=1e-10)
    return image, alpha_img[None], depth[None]
