"""The README's example photos: reproducible from their script, and their poses recovered."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avat3r_cli.pipeline.preprocess import run_preprocess

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_script():
    spec = importlib.util.spec_from_file_location("make_example_photos", EXAMPLES / "make_example_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_reproduces_the_committed_photos():
    script = load_script()
    photos = script.render_photos(424242)
    assert sorted(photos) == sorted(p.name for p in (EXAMPLES / "photos").glob("*.jpg"))
    for name, image in photos.items():
        committed = np.asarray(Image.open(EXAMPLES / "photos" / name), dtype=np.float32)
        assert committed.shape == image.shape
        assert np.abs(committed - image).mean() < 2.0, name  # JPEG loses a little


def test_preprocess_recovers_the_known_head_poses(tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    script = load_script()
    report = run_preprocess(sorted((EXAMPLES / "photos").glob("*.jpg")), tmp_path / "out", resolution=64)
    truth = {name: (yaw, pitch) for name, yaw, pitch in script.SHOTS}
    assert len(report["views"]) == 4
    for view in report["views"]:
        yaw, pitch = truth[view["photo"]]
        assert view["pose"]["yaw_deg"] == pytest.approx(yaw, abs=5.0), view
        assert view["pose"]["pitch_deg"] == pytest.approx(pitch, abs=5.0), view
