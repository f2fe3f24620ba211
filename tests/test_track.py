"""pipeline/track.py and ``avat3r track``: codes and head motion from a video, gaps filled.

The test video is built from skimage's photos: the astronaut (a face), the cameraman (no face
MediaPipe finds) and the astronaut rotated in the image plane about its centre, which is a pure
rotation of the camera about its optical axis, so the tracked head motion has a known angle.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from avat3r_cli.cli.app import Avat3rGroup
from avat3r_cli.cli.track_cmd import track
from avat3r_cli.io.video import write_video
from avat3r_cli.pipeline.track import fill_missing, fill_missing_poses, relative_poses, track_video

skimage_data = pytest.importorskip("skimage.data")

ROLL_DEG = 10.0
# Frames 0-3 astronaut, 4-5 no face, 6-11 astronaut rolled by ROLL_DEG.
NO_FACE = [4, 5]

# A local app with the project's error boundary; the callback keeps Typer from collapsing a
# one-command app into a bare command (which would bypass Avat3rGroup.invoke).
app = typer.Typer(cls=Avat3rGroup, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """Test root."""


app.command("track")(track)
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["track", *args], env={"AVAT3R_DEBUG": None})


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{result.stderr}"
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _rolled(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    # Centre (w/2, h/2) in continuous pixel coordinates is the principal point solve_camera uses.
    matrix = cv2.getRotationMatrix2D((w / 2.0 - 0.5, h / 2.0 - 0.5), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _no_face_frame() -> np.ndarray:
    return np.repeat(skimage_data.camera()[..., None], 3, axis=2)


def _angle_deg(rotation: np.ndarray) -> float:
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(rotation.astype(np.float64))[0])))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The 12-frame test video tracked once through the CLI."""
    root = tmp_path_factory.mktemp("track")
    astronaut = skimage_data.astronaut()
    frames = [astronaut] * 4 + [_no_face_frame()] * 2 + [_rolled(astronaut, ROLL_DEG)] * 6
    video = root / "driver.mp4"
    write_video(video, frames, fps=12, crf=12)
    expr, pose = root / "expr.npy", root / "pose.npy"
    result = invoke(str(video), "-o", str(expr), "--pose", str(pose), "--json")
    return {"video": video, "expr": expr, "pose": pose, "result": result}


def test_cli_writes_codes_and_pose(tracked: dict) -> None:
    result = tracked["result"]
    assert result.exit_code == 0, result.output
    expected = (
        f"Tracked 12 frames (2 frames without a face, filled from neighbours) -> "
        f"{tracked['expr']} + {tracked['pose']} in "
    )
    assert result.stderr.strip().startswith(expected), result.stderr
    summary = json.loads(result.stdout)
    assert summary["frames"] == 12 and summary["filled"] == 2 and summary["filled_frames"] == NO_FACE
    assert summary["fps"] == pytest.approx(12.0) and (summary["height"], summary["width"]) == (512, 512)

    codes = np.load(tracked["expr"], allow_pickle=False)
    assert codes.shape == (12, 52) and codes.dtype == np.float32
    assert np.isfinite(codes).all() and codes.min() >= 0.0 and codes.max() <= 1.0
    # The filled frames lie on the line between their found neighbours, frames 3 and 6.
    for t in NO_FACE:
        s = (t - 3) / 3
        np.testing.assert_allclose(codes[t], (1 - s) * codes[3] + s * codes[6], atol=1e-6)
    # The same photo gives (nearly) the same code; tracking must not blur it into the filler.
    assert np.abs(codes[1:4] - codes[0]).max() < 0.05
    assert not np.allclose(codes[0], codes[6], atol=1e-4)


def test_pose_file_is_relative_head_motion(tracked: dict) -> None:
    pose = np.load(tracked["pose"], allow_pickle=False)
    assert pose.shape == (12, 4, 4) and pose.dtype == np.float32 and np.isfinite(pose).all()
    np.testing.assert_array_equal(pose[0], np.eye(4, dtype=np.float32))
    rotations = pose[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (12, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pose[:, 3], np.broadcast_to([0, 0, 0, 1], (12, 4)))
    angles = [_angle_deg(r) for r in rotations]
    assert max(angles[1:4]) < 1.0, angles  # same photo: no motion
    for t in range(6, 12):
        assert abs(angles[t] - ROLL_DEG) < 1.5, angles  # rolled photo: the roll, measured
    # Filled rotations advance evenly from frame 3 to frame 6 (slerp, not a copy).
    for t in NO_FACE:
        s = (t - 3) / 3
        assert abs(angles[t] - ((1 - s) * angles[3] + s * angles[6])) < 0.3, angles


def test_track_video_api_pose_definition(tracked: dict, tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    out = tmp_path / "codes.npy"
    result = track_video(tracked["video"], out, progress=lambda done, total: calls.append((done, total)))
    assert result.pose_output is None and sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy"]
    assert calls[0] == (0, 12) and calls[-1] == (12, 12) and len(calls) == 13
    assert result.filled == 2 and result.filled_frames == NO_FACE
    # pose[t] = inverse(head_to_cam[0]) @ head_to_cam[t]: camera 0 sees the moved head as frame t's camera.
    h2c = result.head_to_cam
    np.testing.assert_allclose(h2c[0] @ result.pose.astype(np.float64), h2c, atol=1e-4)
    # An image-plane roll is a rotation about the optical axis: in head axes, R0^T @ z.
    axis = cv2.Rodrigues(result.pose[8, :3, :3].astype(np.float64))[0].ravel()
    optical_in_head = h2c[0, :3, :3].T @ np.array([0.0, 0.0, 1.0])
    assert abs(float(axis @ optical_in_head)) / np.linalg.norm(axis) > 0.98


def test_png_folder_input(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    write_video(frames, [skimage_data.astronaut()] * 3)
    result = track_video(frames, tmp_path / "e.npy", tmp_path / "p.npy")
    assert (result.frames, result.filled, result.fps) == (3, 0, 30.0)
    assert np.load(tmp_path / "e.npy", allow_pickle=False).shape == (3, 52)
    assert np.load(tmp_path / "p.npy", allow_pickle=False).shape == (3, 4, 4)


def test_fill_missing_interpolates_and_copies_edges() -> None:
    values = np.array([[0.0, 0.0], [9, 9], [2.0, 4.0], [9, 9], [9, 9], [5.0, 1.0], [9, 9]])
    found = np.array([False, False, True, False, False, True, False])
    values[0] = 9
    out = fill_missing(values, found)
    np.testing.assert_allclose(
        out, [[2, 4], [2, 4], [2, 4], [3, 3], [4, 2], [5, 1], [5, 1]], atol=1e-12
    )
    with pytest.raises(ValueError):
        fill_missing(values, np.zeros(7, bool))


def _rz(degrees: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([0.0, 0.0, np.radians(degrees)]))[0]


def test_fill_missing_poses_slerps_rotations() -> None:
    base = cv2.Rodrigues(np.array([0.3, -0.2, 0.1]))[0]  # off-axis, so a naive matrix lerp would fail
    poses = np.tile(np.eye(4), (6, 1, 1))
    poses[1, :3, :3], poses[1, :3, 3] = base, [0.0, 0.0, 1.0]
    poses[4, :3, :3], poses[4, :3, 3] = base @ _rz(90.0), [0.3, 0.0, 1.6]
    poses[[0, 2, 3, 5]] = 7.0  # garbage where nothing was found
    found = np.array([False, True, False, False, True, False])
    out = fill_missing_poses(poses, found)
    np.testing.assert_allclose(out[0], poses[1])
    np.testing.assert_allclose(out[5], poses[4])
    np.testing.assert_allclose(out[2, :3, :3], base @ _rz(30.0), atol=1e-9)
    np.testing.assert_allclose(out[3, :3, :3], base @ _rz(60.0), atol=1e-9)
    np.testing.assert_allclose(out[3, :3, 3], [0.2, 0.0, 1.4], atol=1e-12)
    np.testing.assert_allclose(out[2, 3], [0, 0, 0, 1])


def test_relative_poses_compose_back() -> None:
    rng = np.random.default_rng(0)
    h2c = np.tile(np.eye(4), (3, 1, 1))
    for t in range(3):
        h2c[t, :3, :3] = cv2.Rodrigues(rng.normal(size=3) * 0.3)[0]
        h2c[t, :3, 3] = rng.normal(size=3) + [0, 0, 3]
    rel = relative_poses(h2c)
    np.testing.assert_array_equal(rel[0], np.eye(4))
    np.testing.assert_allclose(h2c[0] @ rel, h2c, atol=1e-12)


def test_no_face_in_any_frame(tmp_path: Path) -> None:
    video = tmp_path / "empty_room.mp4"
    write_video(video, [_no_face_frame()] * 3, fps=10)
    out = tmp_path / "expr.npy"
    assert_one_line_error(invoke(str(video), "-o", str(out)), str(video), "no face found in any of 3 frames")
    assert list(tmp_path.iterdir()) == [video]


def test_missing_video(tmp_path: Path) -> None:
    video = tmp_path / "nope.mp4"
    assert_one_line_error(invoke(str(video), "-o", str(tmp_path / "e.npy")), str(video), "no such file")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_video(tmp_path: Path) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_one_line_error(invoke(str(video), "-o", str(tmp_path / "e.npy")), str(video))
    assert list(tmp_path.iterdir()) == [video]


def test_output_must_be_npy(tracked: dict, tmp_path: Path) -> None:
    out = tmp_path / "expr.txt"
    assert_one_line_error(invoke(str(tracked["video"]), "-o", str(out)), str(out), ".npy")
    pose = tmp_path / "p.npy"
    result = invoke(str(tracked["video"]), "-o", str(pose), "--pose", str(pose))
    assert_one_line_error(result, "must differ")
    assert list(tmp_path.iterdir()) == []


def test_small_face_is_found_by_the_still_image_search(tmp_path: Path) -> None:
    # Padded to 1112 px wide, the astronaut's face is too small for the whole-frame detector
    # (VIDEO mode alone finds nothing here, checked when this test was written; at 896 px it does).
    astronaut = skimage_data.astronaut()
    wide = np.pad(astronaut, ((0, 0), (300, 300), (0, 0)), mode="edge")
    video = tmp_path / "wide.mp4"
    write_video(video, [wide] * 2, fps=10)
    result = track_video(video, tmp_path / "e.npy")
    assert (result.frames, result.filled, result.width) == (2, 0, 1112)
    assert result.redetected >= 1
