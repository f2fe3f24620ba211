"""The dataset layout and the view sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.errors import InputFileError
from avat3r_cli.data.layout import cameras_to_json, list_subjects, read_subject, write_dataset_index
from avat3r_cli.data.sampler import farthest_viewpoints, sample_views


def ring(n: int) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.sin(a), np.zeros(n), -np.cos(a)], axis=1)


def make_subject(root, timesteps=3, cameras=4):
    cams = {}
    for i, c in enumerate(ring(cameras)):
        cams[f"cam_{i:02d}"] = Camera(intrinsics_from_fov(30, 32, 32), look_at(torch.tensor(c, dtype=torch.float32),
                                      torch.zeros(3), torch.tensor([0.0, -1, 0])), 32, 32)
    root.mkdir(parents=True)
    (root / "cameras.json").write_text(json.dumps(cameras_to_json(cams)))
    np.save(root / "expressions.npy", np.random.default_rng(0).random((timesteps, 52)).astype(np.float32))
    for t in range(timesteps):
        (root / "images" / f"{t:03d}").mkdir(parents=True)
        for name in cams:
            Image.new("RGB", (32, 32), (t * 50, 0, 0)).save(root / "images" / f"{t:03d}" / f"{name}.png")
    return cams


def test_subject_round_trip(tmp_path):
    cams = make_subject(tmp_path / "ds" / "alice")
    write_dataset_index(tmp_path / "ds", ["alice"])
    assert list_subjects(tmp_path / "ds") == ["alice"]
    subject = read_subject(tmp_path / "ds" / "alice")
    assert subject.camera_names == tuple(sorted(cams)) and subject.timesteps == ("000", "001", "002")
    assert subject.expressions.shape == (3, 52)
    torch.testing.assert_close(subject.cameras["cam_01"].world_to_cam, cams["cam_01"].world_to_cam)
    assert subject.image_path(2, "cam_03").name == "cam_03.png"
    assert subject.mask_path(0, "cam_00") is None


def test_bad_subjects_name_the_file(tmp_path):
    make_subject(tmp_path / "bob")
    np.save(tmp_path / "bob" / "expressions.npy", np.zeros((2, 52), np.float32))
    with pytest.raises(InputFileError, match="2 expression codes"):
        read_subject(tmp_path / "bob")
    np.save(tmp_path / "bob" / "expressions.npy", np.zeros((3, 10), np.float32))
    with pytest.raises(InputFileError, match=r"expected \[T, 52\]"):
        read_subject(tmp_path / "bob")
    np.save(tmp_path / "bob" / "expressions.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputFileError, match="pickles"):
        read_subject(tmp_path / "bob")
    (tmp_path / "bob" / "cameras.json").write_text("{")
    with pytest.raises(InputFileError, match="cameras.json"):
        read_subject(tmp_path / "bob")


def test_farthest_viewpoints_spread_out():
    centers = ring(12)
    chosen = farthest_viewpoints(centers, 4, first=0)
    assert chosen[0] == 0 and chosen[1] == 6  # the opposite camera comes next
    assert sorted(chosen) == [0, 3, 6, 9]


def test_samples_use_different_input_timesteps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        spec = sample_views(rng, num_timesteps=6, camera_centers=ring(8), num_inputs=4, num_targets=3)
        assert len(set(spec.input_timesteps)) == 4
        assert len(set(spec.input_cameras)) == 4 and len(spec.target_cameras) == 3
    spec = sample_views(rng, 6, ring(8), 4, 3, consistent_inputs=True)
    assert len(set(spec.input_timesteps)) == 1


def sphere_rig() -> tuple[np.ndarray, np.ndarray]:
    """12 cameras all round a head: 6 in front (input candidates), 6 behind, above and below."""
    front = [(y, p) for y in (-60, -20, 20, 60) for p in (0,)] + [(0, 20), (0, -20)]
    rest = [(180, 0), (150, 10), (-150, -10), (0, 55), (120, 50), (0, -45)]
    angles = np.radians(np.array(front + rest, dtype=np.float64))
    yaw, pitch = angles[:, 0], angles[:, 1]
    centers = np.stack([-np.sin(yaw) * np.cos(pitch), -np.sin(pitch), -np.cos(yaw) * np.cos(pitch)], axis=1)
    return centers, np.arange(12) < 6


def test_inputs_come_only_from_input_candidates():
    centers, candidates = sphere_rig()
    rng = np.random.default_rng(0)
    targets = set()
    for _ in range(200):
        spec = sample_views(rng, 6, centers, num_inputs=4, num_targets=3, input_candidates=candidates)
        assert all(candidates[c] for c in spec.input_cameras), spec
        assert len(set(spec.input_cameras)) == 4
        targets |= set(spec.target_cameras)
    assert targets == set(range(12))  # targets from every camera, behind and above included
    # Farthest-viewpoint within the candidates: the frontal ring's ends, not the back cameras.
    chosen = farthest_viewpoints(centers, 3, first=4, candidates=candidates)
    assert chosen[0] == 4 and all(candidates[c] for c in chosen)
    assert {chosen[1], chosen[2]} <= {0, 3, 5}
    with pytest.raises(ValueError, match="not a candidate"):
        farthest_viewpoints(centers, 3, first=8, candidates=candidates)
    with pytest.raises(ValueError, match="no camera"):
        sample_views(rng, 6, centers, 4, 3, input_candidates=np.zeros(12, dtype=bool))
    # Fewer candidates than inputs: candidates repeat, never another camera.
    two = np.zeros(12, dtype=bool)
    two[[1, 2]] = True
    spec = sample_views(rng, 6, centers, 4, 3, input_candidates=two)
    assert set(spec.input_cameras) == {1, 2}


def test_datasets_without_the_flag_sample_as_before():
    """All cameras as candidates (older datasets) gives the very same draws as no flag at all."""
    centers, _ = sphere_rig()
    for seed in range(5):
        a = sample_views(np.random.default_rng(seed), 6, centers, 4, 3)
        b = sample_views(np.random.default_rng(seed), 6, centers, 4, 3, input_candidates=np.ones(12, dtype=bool))
        assert a == b


def test_input_flags_round_trip(tmp_path):
    cams = make_subject(tmp_path / "old")
    subject = read_subject(tmp_path / "old")
    assert subject.input_views == {} and subject.input_candidates().tolist() == [True] * 4
    doc = cameras_to_json(cams, {"cam_01": False, "cam_03": True})
    assert "input" not in doc["cameras"]["cam_00"] and doc["cameras"]["cam_01"]["input"] is False
    (tmp_path / "old" / "cameras.json").write_text(json.dumps(doc))
    subject = read_subject(tmp_path / "old")
    assert subject.input_candidates().tolist() == [True, False, True, True]  # unflagged cameras stay candidates
    doc["cameras"]["cam_01"]["input"] = "no"
    (tmp_path / "old" / "cameras.json").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="must be true or false"):
        read_subject(tmp_path / "old")
    doc = cameras_to_json(cams, {name: False for name in cams})
    (tmp_path / "old" / "cameras.json").write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="no camera is an input view"):
        read_subject(tmp_path / "old")
