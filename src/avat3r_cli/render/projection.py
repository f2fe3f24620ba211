"""EWA projection of 3D Gaussians into one pinhole camera (gsplat's conventions).

Matches ``gsplat.cuda._torch_impl._fully_fused_projection`` with opacity-aware radii as in
gsplat's CUDA kernel: eps2d added to the 2D covariance, the Jacobian evaluated at a point clamped
to 1.3x the field of view, Gaussians at or before the near plane, below 1/255 opacity or outside
the image culled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA_THRESHOLD = 1.0 / 255.0
# exp(-3.33^2 / 2) < 1/255, so the 3.33-sigma box is conservative for every opacity <= 1.
MAX_EXTENT_SIGMAS = 3.33


@dataclass
class ProjectedGaussians:
    """Screen-space Gaussians of one camera.

    Attributes:
        means2d: ``[N, 2]`` pixel coordinates (x, y); pixel centres sit at integer + 0.5.
        conics: ``[N, 3]`` inverse 2D covariance (a, b, c) with sigma = a dx^2/2 + b dx dy + c dy^2/2.
        depths: ``[N]`` camera-space z.
        radii: ``[N, 2]`` half-extent in pixels of the box outside which alpha < 1/255 (x, y).
        visible: ``[N]`` bool: in front of the near plane, opaque enough and on screen.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    visible: torch.Tensor


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` from quaternions ``[N, 4]`` (wxyz, normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip


def project_gaussians(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    height: int,
    width: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> ProjectedGaussians:
    """Project ``means [N, 3]``, ``quats [N, 4]``, ``scales [N, 3]``, ``opacities [N]``.

    ``K [3, 3]`` and ``world_to_cam [4, 4]`` describe the camera; differentiable in every input.
    """
    rot_c = world_to_cam[:3, :3]
    means_c = means @ rot_c.T + world_to_cam[:3, 3]
    # Covariance in the camera frame: (W R S)(W R S)^T.
    m = rot_c @ quat_to_rotmat(quats) * scales[:, None, :]
    cov_c = m @ m.transpose(1, 2)

    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # The Jacobian is evaluated at a point clamped near the frustum: far off-screen Gaussians
    # otherwise get huge, distorted footprints (gsplat and 3DGS do the same).
    safe_z = torch.where(tz.abs() < 1e-9, torch.full_like(tz, 1e-9), tz)
    lim_x = ((width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx)
    lim_y = ((height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy)
    jx = safe_z * torch.clamp(tx / safe_z, min=-lim_x[1], max=lim_x[0])
    jy = safe_z * torch.clamp(ty / safe_z, min=-lim_y[1], max=lim_y[0])
    zero = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / safe_z, zero, -fx * jx / safe_z**2, zero, fy / safe_z, -fy * jy / safe_z**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = jac @ cov_c @ jac.transpose(1, 2)
    c00 = cov2d[:, 0, 0] + eps2d
    c11 = cov2d[:, 1, 1] + eps2d
    c01 = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    det = c00 * c11 - c01 * c01
    inv_det = 1.0 / det.clamp(min=1e-10)
    conics = torch.stack([c11 * inv_det, -c01 * inv_det, c00 * inv_det], dim=-1)
    means2d = torch.stack([fx * tx / safe_z + cx, fy * ty / safe_z + cy], dim=-1)

    with torch.no_grad():
        opac = opacities.detach()
        extent = torch.sqrt(2.0 * torch.log(opac.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extent = extent.clamp(max=MAX_EXTENT_SIGMAS)
        radii = torch.stack([torch.ceil(extent * c00.sqrt()), torch.ceil(extent * c11.sqrt())], dim=-1)
        mx, my = means2d.detach().unbind(-1)
        visible = (
            (det > 0)
            & (tz > near_plane)
            & (tz < far_plane)
            & (opac >= ALPHA_THRESHOLD)
            & (mx + radii[:, 0] > 0)
            & (mx - radii[:, 0] < width)
            & (my + radii[:, 1] > 0)
            & (my - radii[:, 1] < height)
            & torch.isfinite(means2d.detach()).all(dim=-1)
        )
    return ProjectedGaussians(means2d, conics, tz, radii, visible)
