"""core/frames.py: the head frame -> viewer frame turn, and moving Gaussians (quaternions, SH) rigidly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.frames import (
    HEAD_FRONT,
    HEAD_TO_VIEWER,
    HEAD_UP,
    VIEWER_FRONT,
    VIEWER_UP,
    head_to_viewer,
    quat_multiply,
    rotation_to_quat,
    transform_gaussians,
)
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.io.ply import read_ply
from avat3r_cli.pipeline.turntable import turntable_cameras
from avat3r_cli.render import render

M = torch.tensor(HEAD_TO_VIEWER)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    return Gaussians(
        means=(torch.rand(n, 3, generator=g) - 0.5) * 0.2,
        quats=quats / quats.norm(dim=1, keepdim=True),
        scales=torch.rand(n, 3, generator=g) * 0.01 + 0.003,
        opacities=torch.rand(n, generator=g) * 0.5 + 0.4,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g) * 0.5,
    )


def camera(eye: tuple[float, float, float], up: tuple[float, float, float], size: int = 40) -> Camera:
    w2c = look_at(torch.tensor(eye), torch.zeros(3), torch.tensor(up))
    return Camera(intrinsics_from_fov(40.0, size, size), w2c, size, size)


def test_the_turn_takes_the_head_frame_to_y_up_face_on_plus_z() -> None:
    rot = M[:3, :3]
    assert torch.equal(rot @ torch.tensor(HEAD_UP), torch.tensor(VIEWER_UP))
    assert torch.equal(rot @ torch.tensor(HEAD_FRONT), torch.tensor(VIEWER_FRONT))
    assert float(torch.linalg.det(rot)) == pytest.approx(1.0)  # a rotation: the face is not mirrored
    assert torch.equal(M @ M, torch.eye(4))


def test_real_face_landmarks_face_plus_z_upright_in_the_viewer_frame() -> None:
    # MediaPipe's canonical face in the head frame: nose tip (1), forehead (10), chin (152),
    # the subject's left eye's outer corner (263) and right eye's (33).
    face = torch.from_numpy(load_canonical_face().vertices).float()
    v = face @ M[:3, :3].T
    nose, forehead, chin, left_eye, right_eye = v[1], v[10], v[152], v[263], v[33]
    assert int(v[:, 2].argmax()) in (1, 4)  # the nose is what is nearest a camera on +z
    assert float(forehead[1]) > float(chin[1]) + 0.08  # upright: forehead above the chin
    assert float(nose[2]) > float(v[:, 2].mean()) + 0.02
    # A camera on +z looking at the origin with y up has +x on its right: the subject's left eye
    # appears on the right of the image, as when facing a person.
    assert float(left_eye[0]) > float(right_eye[0])


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_the_turned_avatar_renders_the_same_from_the_turned_camera(degree: int) -> None:
    g = random_gaussians(300, degree)
    moved = head_to_viewer(g)
    cam = camera((0.1, -0.15, -0.5), HEAD_UP)
    # The same camera expressed in the viewer frame: world_to_cam composed with the inverse turn.
    cam_viewer = Camera(cam.K, cam.world_to_cam @ torch.linalg.inv(M), cam.height, cam.width)
    a, b = render(g, cam, (1.0, 1.0, 1.0)).image, render(moved, cam_viewer, (1.0, 1.0, 1.0)).image
    assert float((a - 1.0).abs().mean()) > 0.02  # something is in view
    torch.testing.assert_close(b, a, atol=2e-5, rtol=0)


def test_a_general_rotation_moves_means_and_rotations_and_refuses_view_dependent_colour() -> None:
    angle = math.radians(37.0)
    matrix = torch.eye(4)
    matrix[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    matrix[:3, 3] = torch.tensor([0.01, -0.02, 0.03])
    g = random_gaussians(50, 0)
    moved = transform_gaussians(g, matrix)
    torch.testing.assert_close(moved.means, g.means @ matrix[:3, :3].T + matrix[:3, 3], atol=1e-6, rtol=0)
    torch.testing.assert_close(quat_to_matrix(moved.quats), matrix[:3, :3] @ quat_to_matrix(g.quats), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.scales, g.scales, atol=0, rtol=0)
    with pytest.raises(ValueError, match="axis flips"):
        transform_gaussians(random_gaussians(5, 1), matrix)
    with pytest.raises(ValueError, match="not a rigid"):
        transform_gaussians(g, torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match="not a rigid"):
        transform_gaussians(g, torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0])))  # a mirror


def test_rotation_to_quat_round_trips_every_kind_of_rotation() -> None:
    g = torch.Generator().manual_seed(3)
    rotations = [torch.eye(3), M[:3, :3], torch.diag(torch.tensor([-1.0, -1.0, 1.0])), torch.diag(torch.tensor([-1.0, 1.0, -1.0]))]
    rotations += [quat_to_matrix(q) for q in torch.randn(20, 4, generator=g)]
    for rot in rotations:
        q = rotation_to_quat(rot.double())
        torch.testing.assert_close(quat_to_matrix(q).float(), rot.float(), atol=1e-6, rtol=0)
    a, b = torch.randn(2, 4, generator=g)
    torch.testing.assert_close(quat_to_matrix(quat_multiply(a, b)), quat_to_matrix(a) @ quat_to_matrix(b), atol=1e-5, rtol=0)


def test_a_turntable_of_the_example_ply_starts_at_its_face_upright() -> None:
    # examples/head.ply is written as avatar.ply is (viewer frame); `avat3r render` orbits it so.
    g = read_ply(Path(__file__).resolve().parents[1] / "examples" / "head.ply")
    cams, _ = turntable_cameras(g, 4, 64)
    first, back = ((render(g, cams[i], (1.0, 1.0, 1.0)).image.permute(1, 2, 0) * 255).numpy() for i in (0, 2))

    def masks(image: np.ndarray) -> dict[str, np.ndarray]:
        r, gr, b = image[..., 0], image[..., 1], image[..., 2]
        return {
            "skin": (r > 170) & (r < 240) & (r - b > 50) & (gr > 120),
            "hair": (r < 110) & (r > b + 10),
            "shirt": (b > r + 40) & (b > 90),
        }

    front, rear = masks(first), masks(back)
    centre = (slice(20, 32), slice(24, 40))  # eyes and cheeks in the first frame, hair from behind
    assert front["skin"][centre].mean() > 0.6 and rear["skin"][centre].mean() < 0.2
    assert rear["hair"][centre].mean() > 0.5
    rows = {name: float(np.nonzero(mask)[0].mean()) for name, mask in front.items()}
    assert rows["hair"] + 8 < rows["skin"] < rows["shirt"] - 8  # hair on top, the collar below: upright
