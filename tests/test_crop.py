"""Head crops: the intrinsics follow the crop exactly, and the head has one size in every crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.preprocess.crop import HEAD_CENTER, HEAD_RADIUS, CropBox, crop_camera, crop_photo, head_crop_box


def project(cam: Camera, points: torch.Tensor) -> torch.Tensor:
    p = points @ cam.world_to_cam[:3, :3].T + cam.world_to_cam[:3, 3]
    uv = p @ cam.K.T
    return uv[:, :2] / uv[:, 2:]


def photo_camera(height: int, width: int, distance: float, yaw_deg: float = 0.0) -> Camera:
    yaw = np.radians(yaw_deg)
    eye = torch.tensor([distance * np.sin(yaw), 0.0, -distance * np.cos(yaw)], dtype=torch.float32)
    return Camera(intrinsics_from_fov(40.0, height, width), look_at(eye, torch.zeros(3), torch.tensor([0.0, -1, 0])), height, width)


def test_crop_intrinsics_map_photo_points_to_crop_points():
    cam = photo_camera(480, 640, 0.8, yaw_deg=20.0)
    box = head_crop_box(cam)
    crop_cam = crop_camera(cam, box, 128)
    points = torch.randn(50, 3) * 0.05
    uv_photo = project(cam, points)
    uv_crop = project(crop_cam, points)
    expected = (uv_photo - torch.tensor([box.x0, box.y0])) * (128 / box.size)
    torch.testing.assert_close(uv_crop, expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("distance,size", [(0.5, (480, 640)), (1.2, (1200, 900)), (0.8, (300, 300))])
def test_head_sphere_has_the_same_size_in_every_crop(distance, size):
    cam = photo_camera(*size, distance)
    crop_cam = crop_camera(cam, head_crop_box(cam), 96)
    # The sphere's silhouette touches the crop borders: sample its tangent points.
    centre = torch.tensor(HEAD_CENTER)
    cam_pos = cam.center
    axis = torch.nn.functional.normalize(centre - cam_pos, dim=0)
    side = torch.nn.functional.normalize(torch.linalg.cross(axis, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    d = float(torch.linalg.norm(centre - cam_pos))
    r = HEAD_RADIUS
    # Tangent point from the camera: along the sphere at angle asin(r/d) from the axis.
    tangent = cam_pos + (axis * np.sqrt(d * d - r * r) * np.sqrt(d * d - r * r) / d + side * np.sqrt(d * d - r * r) * r / d)
    uv = project(crop_cam, tangent[None])[0]
    # The centre projects near the crop centre and the tangent reaches the crop's side border.
    centre_uv = project(crop_cam, centre[None])[0]
    assert abs(float(centre_uv[1]) - 48) < 1.0
    assert float(abs(uv[0] - 48)) == pytest.approx(48.0, abs=1.0)


def test_crop_photo_resamples_the_box_and_pads_outside():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = (255, 0, 0)
    image[:, 100:] = (0, 0, 255)
    # A box straddling the red/blue edge and sticking out of the top of the photo.
    out = crop_photo(image, CropBox(x0=50.0, y0=-50.0, size=100.0), 20)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[10, 2, 0] > 200 and out[10, 2, 2] < 50  # left half red
    assert out[10, 17, 2] > 200 and out[10, 17, 0] < 50  # right half blue
    assert out[0, 2, 0] > 200  # above the photo: the border colour repeats, no black frame


def test_camera_behind_head_is_refused():
    cam = Camera(intrinsics_from_fov(40.0, 100, 100), torch.eye(4), 100, 100)  # camera at the head centre
    with pytest.raises(ValueError):
        head_crop_box(cam)
