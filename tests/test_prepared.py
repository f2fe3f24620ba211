"""Prepared subjects: write, read lazily, assemble samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avat3r_cli.core.camera import intrinsics_from_fov, look_at
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.data.prepared import POSITION_MAPS, PreparedSubject, is_current, prepared_name, save_prepared
from avat3r_cli.data.sampler import sample_views


def fake_prepared(path, t=4, c=5, r=16, metadata=None):
    rng = np.random.default_rng(0)
    angles = np.linspace(-1, 1, c)
    w2c = np.stack([look_at(torch.tensor([np.sin(a), 0.0, -np.cos(a)], dtype=torch.float32), torch.zeros(3),
                            torch.tensor([0.0, -1, 0])).numpy() for a in angles])
    arrays = {
        "images": rng.integers(0, 255, (t, c, r, r, 3), dtype=np.uint8),
        "masks": np.full((t, c, r, r), 255, np.uint8),
        "positions": rng.normal(size=(t, c, 3, r, r)).astype(np.float16),
        "confidence": rng.integers(0, 255, (t, c, r, r), dtype=np.uint8),
        "K": np.repeat(intrinsics_from_fov(30, r, r).numpy()[None], c, 0),
        "world_to_cam": w2c.astype(np.float32),
        "expressions": rng.random((t, 52)).astype(np.float32),
    }
    save_prepared(path, arrays, {"resolution": str(r), **(metadata or {})})
    return arrays


def test_samples_carry_the_right_views(tmp_path):
    path = tmp_path / prepared_name(16, "template")
    arrays = fake_prepared(path)
    subject = PreparedSubject(path)
    assert (subject.num_timesteps, subject.num_cameras, subject.resolution) == (4, 5, 16)
    spec = sample_views(np.random.default_rng(1), 4, subject.camera_centers(), num_inputs=3, num_targets=2)
    s = subject.sample(spec)
    assert s.inputs.images.shape == (1, 3, 3, 16, 16) and s.target_images.shape == (2, 3, 16, 16)
    t, c = spec.input_timesteps[1], spec.input_cameras[1]
    expected = torch.from_numpy(arrays["images"][t, c]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(s.inputs.images[0, 1], expected)
    torch.testing.assert_close(s.inputs.positions[0, 1], torch.from_numpy(arrays["positions"][t, c]).float())
    torch.testing.assert_close(s.expression[0], torch.from_numpy(arrays["expressions"][spec.target_timestep]))
    torch.testing.assert_close(s.target_world_to_cam[0], torch.from_numpy(arrays["world_to_cam"][spec.target_cameras[0]]))


def test_missing_or_corrupt_files_are_named(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        PreparedSubject(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="bad.safetensors"):
        PreparedSubject(tmp_path / "bad.safetensors")


def test_input_views_flag_is_optional(tmp_path):
    old = tmp_path / "old.safetensors"
    arrays = fake_prepared(old)
    assert PreparedSubject(old).input_views.tolist() == [True] * 5  # files from before the flag
    flagged = tmp_path / "new.safetensors"
    save_prepared(flagged, {**arrays, "input_views": np.array([1, 1, 0, 1, 0], np.uint8)}, {"resolution": "16"})
    assert PreparedSubject(flagged).input_views.tolist() == [True, True, False, True, False]
    bad = tmp_path / "bad.safetensors"
    save_prepared(bad, {**arrays, "input_views": np.zeros(5, np.uint8)}, {"resolution": "16"})
    with pytest.raises(InputFileError, match="no input camera"):
        PreparedSubject(bad)


def test_files_without_silhouette_maps_are_stale_and_training_names_the_fix(tmp_path):
    from avat3r_cli.pipeline.dataset import missing_prepared
    from avat3r_cli.train.subjects import find_subjects

    name = prepared_name(16, "template")
    fake_prepared(tmp_path / "subject_0000" / name, metadata={"position_maps": POSITION_MAPS})
    fake_prepared(tmp_path / "subject_0001" / name)  # written before the stamp: template maps only
    (tmp_path / "subject_0002").mkdir()
    (tmp_path / "subject_0002" / name).write_bytes(b"garbage")
    (tmp_path / "dataset.json").write_text(
        '{"subjects": ["subject_0000", "subject_0001", "subject_0002"]}', encoding="utf-8")
    assert is_current(tmp_path / "subject_0000" / name)
    assert not is_current(tmp_path / "subject_0001" / name)
    assert not is_current(tmp_path / "subject_0002" / name) and not is_current(tmp_path / "nope" / name)
    assert missing_prepared(tmp_path, 16, "template") == ["subject_0001", "subject_0002"]
    with pytest.raises(Avat3rError, match=r"2 subject\(s\), first subject_0001.*prepare-data .* --resolution 16"):
        find_subjects(tmp_path, 16, "template")
