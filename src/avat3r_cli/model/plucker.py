"""Per-pixel camera rays: Plücker coordinates and pixel footprints (OpenCV convention)."""

from __future__ import annotations

import torch


def pixel_rays(
    K: torch.Tensor, world_to_cam: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions in the world frame for every pixel centre.

    Args:
        K: ``[..., 3, 3]`` intrinsics in pixels (pixel centres at integer + 0.5).
        world_to_cam: ``[..., 4, 4]`` rigid world-to-camera transforms.
        height, width: image size (H, W).

    Returns:
        origins ``[..., 3]`` (camera centres) and directions ``[..., H, W, 3]`` (unit length).
    """
    dtype = torch.promote_types(K.dtype, torch.float32)
    K, world_to_cam = K.to(dtype), world_to_cam.to(dtype)
    ys = torch.arange(height, device=K.device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=K.device, dtype=dtype) + 0.5
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy, skew = K[..., 0, 2, None, None], K[..., 1, 2, None, None], K[..., 0, 1, None, None]
    # Invert K in closed form (upper triangular) so batched shapes stay simple.
    y_cam = (ys[:, None] - cy) / fy
    x_cam = (xs[None, :] - cx - skew * y_cam) / fx
    x_cam, y_cam = torch.broadcast_tensors(x_cam, y_cam)
    d_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)  # [..., H, W, 3]
    rot = world_to_cam[..., :3, :3]
    # World direction = R^T d_cam; with row vectors that is d_cam @ R.
    d_world = torch.einsum("...hwi,...ij->...hwj", d_cam, rot)
    d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = -torch.einsum("...ji,...j->...i", rot, world_to_cam[..., :3, 3])
    return origins, d_world


def plucker_rays(K: torch.Tensor, world_to_cam: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Plücker ray coordinates ``[o x d, d]`` per pixel.

    Args:
        K: ``[B, V, 3, 3]`` intrinsics in pixels.
        world_to_cam: ``[B, V, 4, 4]``.
        height, width: image size (H, W).

    Returns:
        ``[B, V, 6, H, W]``: channels 0..2 the moment o x d, 3..5 the unit direction d.
    """
    origins, dirs = pixel_rays(K, world_to_cam, height, width)
    moment = torch.linalg.cross(origins[..., None, None, :].expand_as(dirs), dirs, dim=-1)
    return torch.cat([moment, dirs], dim=-1).movedim(-1, -3)


def pixel_footprint(
    positions: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor, min_depth: float = 1e-3
) -> torch.Tensor:
    """World-space size of one pixel at each position-map point: depth / focal.

    Args:
        positions: ``[B, V, 3, H, W]`` world points.
        K: ``[B, V, 3, 3]``; world_to_cam: ``[B, V, 4, 4]``.
        min_depth: floor for the camera-space depth (points behind the camera are unreliable).

    Returns:
        ``[B, V, 1, H, W]`` in metres (> 0).
    """
    rot = world_to_cam[..., 2, :3]  # third row: camera z axis
    depth = torch.einsum("bvc,bvchw->bvhw", rot.to(positions.dtype), positions) + world_to_cam[..., 2, 3, None, None]
    focal = torch.sqrt(K[..., 0, 0] * K[..., 1, 1]).to(positions.dtype)[..., None, None]
    return (depth.clamp_min(min_depth) / focal).unsqueeze(2)
