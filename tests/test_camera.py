"""core/camera.py: intrinsics, look_at, turntable orbits, orbit fitting; and render() agrees.

OpenCV convention throughout: x right, y down, z forward; a world point p lands on pixel
``K @ (R p + t)`` (divided by depth), pixel centres at integer + 0.5.
"""

from __future__ import annotations

import math

import pytest
import torch

from avat3r_cli.core.camera import Camera, fit_orbit_radius, intrinsics_from_fov, look_at, orbit_cameras
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.render.api import render


def project(camera: Camera, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``[N, 2]`` (u, v) and depths ``[N]`` of world points ``[N, 3]``."""
    cam = points @ camera.world_to_cam[:3, :3].T + camera.world_to_cam[:3, 3]
    uvw = cam @ camera.K.T
    return uvw[:, :2] / uvw[:, 2:], cam[:, 2]


def fibonacci_sphere(n: int) -> torch.Tensor:
    """``[n, 3]`` points spread evenly over the unit sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.acos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    return torch.stack(
        [torch.sin(polar) * torch.cos(azimuth), torch.sin(polar) * torch.sin(azimuth), torch.cos(polar)], dim=1
    ).float()


# --- intrinsics ------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(64, 64), (48, 80)])
def test_intrinsics_90_degrees(height: int, width: int) -> None:
    K = intrinsics_from_fov(90.0, height, width)
    assert K[0, 0].item() == pytest.approx(height / 2)  # tan(45°) = 1
    assert K[1, 1].item() == pytest.approx(height / 2)  # square pixels
    assert K[0, 2].item() == width / 2 and K[1, 2].item() == height / 2
    assert K[2].tolist() == [0.0, 0.0, 1.0] and K[0, 1].item() == 0.0 and K[1, 0].item() == 0.0


def test_intrinsics_fov_edge_matches_image_edge() -> None:
    K = intrinsics_from_fov(40.0, 100, 100)
    # A ray at half the FOV above the axis hits the top edge (v = 0).
    v = K[1, 1] * -math.tan(math.radians(20.0)) + K[1, 2]
    assert v.item() == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError):
        intrinsics_from_fov(180.0, 10, 10)


# --- look_at ---------------------------------------------------------------------------------


def test_look_at_maps_eye_target_and_up() -> None:
    eye = torch.tensor([1.0, -0.5, -3.0])
    target = torch.tensor([0.2, 0.1, 0.3])
    up = torch.tensor([0.0, -1.0, 0.0])
    w2c = look_at(eye, target, up)
    rot, t = w2c[:3, :3], w2c[:3, 3]
    assert torch.allclose(rot @ rot.T, torch.eye(3), atol=1e-6)
    assert torch.det(rot).item() == pytest.approx(1.0, abs=1e-6)  # a rotation, not a reflection
    assert torch.allclose(rot @ eye + t, torch.zeros(3), atol=1e-6)
    target_cam = rot @ target + t
    assert torch.allclose(target_cam[:2], torch.zeros(2), atol=1e-5)
    assert target_cam[2].item() == pytest.approx(torch.linalg.norm(target - eye).item(), rel=1e-5)
    # A point above the target (world up) projects above the image centre: smaller v.
    cam = Camera(intrinsics_from_fov(40.0, 64, 64), w2c, 64, 64)
    uv, depth = project(cam, torch.stack([target, target + 0.1 * up]))
    assert (depth > 0).all()
    assert uv[0].tolist() == pytest.approx([32.0, 32.0], abs=1e-3)
    assert uv[1, 1].item() < 32.0 - 1.0
    assert abs(uv[1, 0].item() - 32.0) < 1e-3  # straight up, not sideways
    assert torch.allclose(cam.center, eye, atol=1e-5)


def test_look_at_rejects_degenerate_input() -> None:
    with pytest.raises(ValueError):
        look_at(torch.zeros(3), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    with pytest.raises(ValueError):
        look_at(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]))


# --- orbit_cameras ---------------------------------------------------------------------------


def test_orbit_cameras_circle_the_centre() -> None:
    center = torch.tensor([0.1, 0.05, 0.2])
    radius, n, h, w = 1.5, 8, 40, 56
    cams = orbit_cameras(center, radius, n, h, w, fov_y_deg=35.0)
    assert len(cams) == n
    up = torch.tensor([0.0, -1.0, 0.0])
    front = torch.tensor([0.0, 0.0, -1.0])
    offsets = torch.stack([c.center - center for c in cams])
    assert torch.linalg.norm(offsets, dim=1).tolist() == pytest.approx([radius] * n, rel=1e-5)
    # The first camera sits in front of the face; elevation 0 keeps every camera on the equator.
    assert torch.allclose(offsets[0], radius * front, atol=1e-5)
    assert (offsets @ up).abs().max().item() < 1e-5
    # Consecutive cameras are 360/n degrees apart.
    cos = (offsets[:-1] * offsets[1:]).sum(1) / radius**2
    assert torch.rad2deg(torch.acos(cos.clamp(-1, 1))).tolist() == pytest.approx([360.0 / n] * (n - 1), abs=1e-3)
    for cam in cams:
        assert (cam.height, cam.width) == (h, w)
        uv, depth = project(cam, center[None])
        assert uv[0].tolist() == pytest.approx([w / 2, h / 2], abs=1e-3)  # all look at the centre
        assert depth.item() == pytest.approx(radius, rel=1e-5)
        # Upright: a point above the centre appears above the image centre.
        uv_up, _ = project(cam, (center + 0.1 * up)[None])
        assert uv_up[0, 1].item() < h / 2 - 0.5


def test_orbit_elevation_lifts_the_camera() -> None:
    cams = orbit_cameras(torch.zeros(3), 2.0, 4, 32, 32, elevation_deg=30.0)
    up = torch.tensor([0.0, -1.0, 0.0])
    heights = torch.stack([c.center for c in cams]) @ up
    assert heights.tolist() == pytest.approx([2.0 * math.sin(math.radians(30.0))] * 4, abs=1e-5)


# --- fit_orbit_radius ------------------------------------------------------------------------


def test_fit_orbit_radius_frames_a_sphere() -> None:
    points = fibonacci_sphere(4000) + torch.tensor([0.3, -0.2, 0.5])
    fov, size = 30.0, 128
    center, radius = fit_orbit_radius(points, fov)
    assert center.tolist() == pytest.approx([0.3, -0.2, 0.5], abs=0.02)
    for cam in orbit_cameras(center, radius, 6, size, size, fov_y_deg=fov, elevation_deg=20.0):
        uv, depth = project(cam, points)
        assert (depth > 0).all()
        lo, hi = uv.min(0).values, uv.max(0).values
        assert lo.min().item() > 0 and hi.max().item() < size  # everything inside the frame
        # ... and the sphere is not a speck: it spans a sizeable part of the view.
        assert (hi - lo).min().item() > 0.4 * size


def test_fit_orbit_radius_ignores_a_stray_point() -> None:
    points = fibonacci_sphere(2000)
    _, clean = fit_orbit_radius(points, 30.0)
    _, stray = fit_orbit_radius(torch.cat([points, torch.tensor([[50.0, 0.0, 0.0]])]), 30.0)
    assert stray == pytest.approx(clean, rel=0.05)


# --- render agrees with the projection -------------------------------------------------------


@pytest.mark.parametrize("pixel", [(20, 11), (5, 40), (47, 30)])
def test_render_puts_a_gaussian_on_the_projected_pixel(pixel: tuple[int, int]) -> None:
    """A tiny Gaussian at a world point lights up the pixel that ``K @ (R p + t)`` predicts."""
    h, w = 48, 56
    eye = torch.tensor([0.7, -0.4, -2.5])
    w2c = look_at(eye, torch.tensor([0.0, 0.1, 0.2]), torch.tensor([0.0, -1.0, 0.0]))
    cam = Camera(intrinsics_from_fov(40.0, h, w), w2c, h, w)
    # Back-project the centre of pixel (row, col) at depth 2.3 to a world point.
    row, col = pixel
    depth = 2.3
    ray = torch.linalg.inv(cam.K) @ torch.tensor([col + 0.5, row + 0.5, 1.0])
    p_cam = ray * depth / ray[2]
    p_world = w2c[:3, :3].T @ (p_cam - w2c[:3, 3])
    uv, _ = project(cam, p_world[None])
    assert uv[0].tolist() == pytest.approx([col + 0.5, row + 0.5], abs=1e-3)

    g = Gaussians.from_colors(
        means=p_world[None],
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), 0.004),
        opacities=torch.tensor([0.9]),
        colors=torch.tensor([[1.0, 0.0, 0.0]]),
    )
    out = render(g, cam, "black")
    alpha = out.alpha[0]
    assert alpha.max().item() > 0.5
    flat = int(torch.argmax(alpha))
    assert (flat // w, flat % w) == (row, col)
    assert out.depth[0, row, col].item() == pytest.approx(depth, rel=1e-3)  # expected (normalised) depth
    # Red on black: the pixel's colour is red times its alpha.
    assert out.image[:, row, col].tolist() == pytest.approx([alpha[row, col].item(), 0.0, 0.0], abs=1e-4)
