"""The template position-map backend on a face whose camera and landmarks are known exactly."""

from __future__ import annotations

import numpy as np
import torch

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.preprocess.crop import crop_camera, head_crop_box
from avat3r_cli.preprocess.template_geometry import (
    FACE_CONFIDENCE,
    PROXY_CONFIDENCE,
    PositionMap,
    extend_to_person,
    lift_landmarks,
    render_position_map,
    template_gaussians,
)

UP = torch.tensor([0.0, -1.0, 0.0])


def photo_camera(yaw_deg: float) -> Camera:
    yaw = np.radians(yaw_deg)
    eye = torch.tensor([0.6 * np.sin(yaw), -0.05, -0.6 * np.cos(yaw)], dtype=torch.float32)
    return Camera(intrinsics_from_fov(35.0, 480, 640), look_at(eye, torch.zeros(3), UP), 480, 640)


def project(cam: Camera, points: np.ndarray) -> np.ndarray:
    p = torch.as_tensor(points, dtype=torch.float32) @ cam.world_to_cam[:3, :3].T + cam.world_to_cam[:3, 3]
    uv = p @ cam.K.T
    return (uv[:, :2] / uv[:, 2:]).numpy()


def test_lifting_exact_landmarks_gives_back_the_canonical_face():
    canonical = load_canonical_face()
    cam = photo_camera(25.0)
    lifted = lift_landmarks(project(cam, canonical.vertices), cam, canonical)
    assert np.abs(lifted - canonical.vertices).max() < 1e-5


def test_lifting_follows_a_moved_landmark_in_the_image_plane():
    canonical = load_canonical_face()
    cam = photo_camera(0.0)
    landmarks = project(cam, canonical.vertices)
    landmarks[152, 1] += 20.0  # chin 20 px lower: the mouth opened
    lifted = lift_landmarks(landmarks, cam, canonical)
    moved = lifted[152] - canonical.vertices[152]
    assert moved[1] > 0.01 and abs(moved[0]) < 1e-4  # down in the head frame, not sideways


def test_position_map_points_sit_on_the_face_and_confidence_marks_it():
    canonical = load_canonical_face()
    cam = photo_camera(15.0)
    crop = crop_camera(cam, head_crop_box(cam), 96)
    template = template_gaussians(lift_landmarks(project(cam, canonical.vertices), cam, canonical), canonical)
    pmap = render_position_map(template, crop)
    assert pmap.points.shape == (3, 96, 96) and pmap.confidence.shape == (1, 96, 96)
    # Visible face vertices: the point at their pixel is within a few millimetres of them.
    for k in (1, 4, 152, 10):  # nose tip, nose bridge, chin, forehead
        u, v = project(crop, canonical.vertices[k : k + 1])[0]
        point = pmap.points[:, int(v), int(u)].numpy()
        assert np.linalg.norm(point - canonical.vertices[k]) < 0.01, k
        assert abs(float(pmap.confidence[0, int(v), int(u)]) - FACE_CONFIDENCE) < 0.01
    # Corners of the crop are background: no confidence.
    assert float(pmap.confidence[0, 0, 0]) == 0.0 and float(pmap.confidence[0, -1, -1]) == 0.0
    coverage = float((pmap.confidence > 0.5).float().mean())
    assert 0.2 < coverage < 0.8


def _front_map() -> tuple[PositionMap, Camera]:
    canonical = load_canonical_face()
    cam = photo_camera(0.0)
    crop = crop_camera(cam, head_crop_box(cam), 64)
    template = template_gaussians(lift_landmarks(project(cam, canonical.vertices), cam, canonical), canonical)
    return render_position_map(template, crop), crop


def test_extension_puts_person_pixels_past_the_template_on_their_rays_at_the_nearest_depth():
    pmap, crop = _front_map()
    covered = pmap.confidence[0] > 0.5
    person = torch.ones(64, 64, dtype=torch.bool)
    person[:, :4] = False  # a strip of background stays background
    out = extend_to_person(pmap, person, crop)
    extra = person & ~covered
    assert bool(extra.any())
    assert torch.equal(out.points[:, covered], pmap.points[:, covered])  # the template is kept
    assert torch.equal(out.confidence[0, covered], pmap.confidence[0, covered])
    assert torch.all(out.confidence[0, extra] == PROXY_CONFIDENCE)
    assert torch.all(out.confidence[0, ~person & ~covered] == 0.0)
    w2c = crop.world_to_cam
    cam_points = torch.einsum("ij,jhw->ihw", w2c[:3, :3], out.points) + w2c[:3, 3, None, None]
    uv = torch.einsum("ij,jhw->ihw", crop.K, cam_points)
    ys, xs = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    # Each new point projects back onto its own pixel...
    assert (uv[0] / uv[2] - xs)[extra].abs().max() < 1e-3 and (uv[1] / uv[2] - ys)[extra].abs().max() < 1e-3
    # ...at the depth of a covered pixel: the nearest one, for the pixel right of the head's outline.
    depth = cam_points[2]
    row = 32
    right = int(torch.nonzero(covered[row]).max())
    assert abs(float(depth[row, right + 3]) - float(depth[row, right])) < 1e-5


def test_extension_changes_nothing_when_the_person_is_inside_the_template():
    pmap, crop = _front_map()
    inside = pmap.confidence[0] > 0.5
    out = extend_to_person(pmap, inside, crop)
    assert out is pmap
