"""Pinhole cameras in the OpenCV convention (x right, y down, z forward).

A camera is intrinsics ``K [3, 3]`` in pixels, ``world_to_cam [4, 4]`` and the image size (H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Camera:
    """One pinhole camera.

    Attributes:
        K: ``[3, 3]`` intrinsics in pixels; pixel centres sit at integer + 0.5.
        world_to_cam: ``[4, 4]`` rigid transform from world to camera coordinates.
        height: image height H in pixels.
        width: image width W in pixels.
    """

    K: torch.Tensor
    world_to_cam: torch.Tensor
    height: int
    width: int

    def __post_init__(self) -> None:
        if tuple(self.K.shape) != (3, 3):
            raise ValueError(f"Camera.K has shape {list(self.K.shape)}, expected [3, 3]")
        if tuple(self.world_to_cam.shape) != (4, 4):
            raise ValueError(f"Camera.world_to_cam has shape {list(self.world_to_cam.shape)}, expected [4, 4]")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Camera image size must be positive, got (H, W) = ({self.height}, {self.width})")

    @property
    def cam_to_world(self) -> torch.Tensor:
        """``[4, 4]`` inverse of ``world_to_cam``."""
        return torch.linalg.inv(self.world_to_cam)

    @property
    def center(self) -> torch.Tensor:
        """``[3]`` camera centre in world coordinates."""
        rot = self.world_to_cam[:3, :3]
        return -rot.T @ self.world_to_cam[:3, 3]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Camera:
        """Copy to ``device`` (and ``dtype`` when given)."""
        return Camera(self.K.to(device, dtype), self.world_to_cam.to(device, dtype), self.height, self.width)


def intrinsics_from_fov(fov_y_deg: float, height: int, width: int) -> torch.Tensor:
    """``[3, 3]`` intrinsics with square pixels, vertical field of view ``fov_y_deg``, centred."""
    if not 0.0 < fov_y_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_y_deg}")
    focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
    return torch.tensor(
        [[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float32
    )


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``[4, 4]`` world-to-camera matrix of a camera at ``eye [3]`` looking at ``target [3]``.

    ``up [3]`` is the world direction that should appear upwards in the image (OpenCV: -y).
    """
    eye, target, up = (t.to(torch.float32) for t in (eye, target, up))
    forward = target - eye
    if torch.linalg.norm(forward) < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    forward = forward / torch.linalg.norm(forward)
    right = torch.linalg.cross(forward, up)
    if torch.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: up is parallel to the viewing direction")
    right = right / torch.linalg.norm(right)
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = torch.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c


def orbit_cameras(
    center: torch.Tensor,
    radius: float,
    num_frames: int,
    height: int,
    width: int,
    fov_y_deg: float = 30.0,
    up: torch.Tensor | None = None,
    front: torch.Tensor | None = None,
    elevation_deg: float = 0.0,
    start_deg: float = 0.0,
) -> list[Camera]:
    """Cameras on a horizontal circle around ``center [3]`` at distance ``radius`` (a turntable).

    ``up [3]`` is the world up direction and ``front [3]`` the direction from the centre to the
    first camera (defaults: -y up and -z front, i.e. a head facing an OpenCV camera at the origin).
    The orbit turns about ``up``; ``elevation_deg`` lifts it above the equator.
    """
    up = torch.tensor([0.0, -1.0, 0.0]) if up is None else up.to(torch.float32)
    front = torch.tensor([0.0, 0.0, -1.0]) if front is None else front.to(torch.float32)
    up = up / torch.linalg.norm(up)
    front = front - (front @ up) * up
    if torch.linalg.norm(front) < 1e-9:
        raise ValueError("orbit_cameras: front is parallel to up")
    front = front / torch.linalg.norm(front)
    side = torch.linalg.cross(up, front)
    K = intrinsics_from_fov(fov_y_deg, height, width)
    elev = math.radians(elevation_deg)
    cams = []
    for i in range(num_frames):
        angle = math.radians(start_deg) + 2.0 * math.pi * i / num_frames
        direction = math.cos(elev) * (math.cos(angle) * front + math.sin(angle) * side) + math.sin(elev) * up
        eye = center.to(torch.float32) + radius * direction
        cams.append(Camera(K.clone(), look_at(eye, center, up), height, width))
    return cams


def fit_orbit_radius(
    means: torch.Tensor,
    fov_y_deg: float,
    margin: float = 1.1,
    up: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Centre ``[3]`` and the distance at which a turntable around ``up`` keeps points ``[N, 3]`` in view.

    The avatar turns about the vertical axis through its centre, so what must fit is a cylinder:
    its radius (the farthest point from the axis) and its half height, seen from the camera's
    distance minus that radius (the near side is closest). Robust bounds (0.5 and 99.5
    percentiles) keep stray Gaussians from shrinking the avatar. ``up`` defaults to -y.
    """
    up = torch.tensor([0.0, -1.0, 0.0]) if up is None else up.to(torch.float32)
    up = up / torch.linalg.norm(up)
    pts = means.detach().float()
    if pts.shape[0] > 1:
        lo, hi = torch.quantile(pts, 0.005, dim=0), torch.quantile(pts, 0.995, dim=0)
        inside = ((pts >= lo) & (pts <= hi)).all(dim=1)
        pts = pts[inside] if bool(inside.any()) else pts
    center = (pts.min(dim=0).values + pts.max(dim=0).values) / 2.0
    rel = pts - center
    height = rel @ up
    half_height = float(height.abs().max()) if rel.shape[0] else 0.0
    radial = float(torch.linalg.norm(rel - height[:, None] * up, dim=1).max()) if rel.shape[0] else 0.0
    half_height, radial = max(half_height, 1e-3), max(radial, 1e-3)
    tan_half = math.tan(math.radians(fov_y_deg) / 2.0)
    # Vertically: half_height / (d - radial) <= tan; sideways (square images): radial fits too.
    distance = max(radial + half_height / tan_half, radial / math.sin(math.radians(fov_y_deg) / 2.0))
    return center, margin * distance
