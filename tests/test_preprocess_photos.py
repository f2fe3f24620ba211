"""``avat3r preprocess`` on real photos that packages ship (none are committed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from avat3r_cli.cli.app import app
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.tensors import load_tensors
from avat3r_cli.pipeline.preprocess import run_preprocess

skimage_data = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace_hopper.jpg")
    Image.fromarray(skimage_data.camera()).save(folder / "camera.png")
    return folder


def test_preprocess_two_faces_and_skip_the_photo_without_one(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    report = run_preprocess(
        [photos / "astronaut.png", photos / "grace_hopper.jpg", photos / "camera.png"], tmp_path / "out", resolution=64
    )
    assert [v["photo"] for v in report["views"]] == ["astronaut.png", "grace_hopper.jpg"]
    assert report["skipped"] == [{"photo": str(photos / "camera.png"), "reason": "no face found"}]
    tensors, meta = load_tensors(tmp_path / "out" / "inputs.safetensors")
    assert tensors["images"].shape == (2, 3, 64, 64) and tensors["positions"].shape == (2, 3, 64, 64)
    assert tensors["confidence"].shape == (2, 1, 64, 64) and tensors["K"].shape == (2, 3, 3)
    assert tensors["blendshapes"].shape == (2, 52)
    # Both near-frontal portraits: the cameras look at the face from the front (negative z).
    centres = -(tensors["world_to_cam"][:, :3, :3].transpose(1, 2) @ tensors["world_to_cam"][:, :3, 3:])[..., 0]
    assert bool((centres[:, 2] < -0.2).all())
    # The crop centre's position-map point lies on the face, near the head frame's origin.
    assert float(tensors["positions"][0, :, 32, 32].norm()) < 0.12
    assert float(tensors["confidence"][0, 0, 32, 32]) > 0.9 and float(tensors["confidence"][0, 0, 0, 0]) == 0.0
    assert json.loads(meta["report"])["geometry"] == "template"
    sheet = Image.open(tmp_path / "out" / "contact_sheet.png")
    assert sheet.height >= 2 * 64 and sheet.width > 3 * 64
    assert json.loads((tmp_path / "out" / "preprocess.json").read_text())["views"][0]["photo"] == "astronaut.png"


def test_results_are_cached_by_content(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    run_preprocess([photos / "astronaut.png"], tmp_path / "a", resolution=64)
    cached = list((tmp_path / "cache" / "preprocess").glob("*.safetensors"))
    assert len(cached) == 1

    import avat3r_cli.preprocess.photos as photos_module

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(photos_module, "prepare_photo", fail)
    # Same content under another name: still a cache hit, recorded under the name it was given.
    shutil.copy(photos / "astronaut.png", tmp_path / "copy.png")
    report = run_preprocess([tmp_path / "copy.png"], tmp_path / "b", resolution=64)
    assert [v["photo"] for v in report["views"]] == ["copy.png"]
    a, _ = load_tensors(tmp_path / "a" / "inputs.safetensors")
    b, _ = load_tensors(tmp_path / "b" / "inputs.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cache_entries_of_other_preprocessing_code_are_not_used(photos, tmp_path, monkeypatch):
    """A release whose preprocessing code differs must not read what its predecessor cached."""
    import avat3r_cli.preprocess.photos as photos_module

    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    fingerprint = photos_module.preprocessing_fingerprint()
    assert len(fingerprint) == 64
    run_preprocess([photos / "astronaut.png"], tmp_path / "a", resolution=64)
    monkeypatch.setattr(photos_module, "preprocessing_fingerprint", lambda: "0" * 64)
    calls = []
    real = photos_module.prepare_photo
    monkeypatch.setattr(photos_module, "prepare_photo", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_preprocess([photos / "astronaut.png"], tmp_path / "b", resolution=64)
    assert calls == [1]
    assert len(list((tmp_path / "cache" / "preprocess").glob("*.safetensors"))) == 2


def test_a_damaged_cache_entry_is_recomputed_not_blamed_on_the_photo(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    first = run_preprocess([photos / "astronaut.png"], tmp_path / "a", resolution=64)
    (entry,) = (tmp_path / "cache" / "preprocess").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as by a full disk or a killed run
    again = run_preprocess([photos / "astronaut.png"], tmp_path / "b", resolution=64)
    assert again["skipped"] == [] and again["views"][0]["pose"] == first["views"][0]["pose"]
    assert load_tensors(entry)[0]["image"].shape == (64, 64, 3)  # replaced by a good entry


def test_cache_keeps_warnings_and_an_unwritable_cache_costs_only_speed(photos, tmp_path, monkeypatch):
    import avat3r_cli.preprocess.photos as photos_module

    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    Image.open(photos / "astronaut.png").rotate(90, expand=True).save(tmp_path / "side.png")
    shutil.copy(tmp_path / "side.png", tmp_path / "other.png")
    first = run_preprocess([tmp_path / "side.png"], tmp_path / "a", resolution=64)
    hit = run_preprocess([tmp_path / "other.png"], tmp_path / "b", resolution=64)
    assert any(w.startswith(f"{tmp_path / 'side.png'}: the face is sideways") for w in first["warnings"])
    assert any(w.startswith(f"{tmp_path / 'other.png'}: the face is sideways") for w in hit["warnings"])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(photos_module, "save_tensors", disk_full)
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache2"))
    report = run_preprocess([photos / "astronaut.png"], tmp_path / "c", resolution=64)
    assert [v["photo"] for v in report["views"]] == ["astronaut.png"]


def test_no_usable_photo_is_one_clear_error(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputFileError, match="camera.png: no face found"):
        run_preprocess([photos / "camera.png"], tmp_path / "out", resolution=64)
    tiny = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((40, 40)))
    Image.fromarray(np.pad(tiny, ((100, 100), (100, 100), (0, 0)))).save(tmp_path / "small.png")
    with pytest.raises(Avat3rError, match="no usable photo"):
        run_preprocess([photos / "camera.png", tmp_path / "small.png"], tmp_path / "out", resolution=64)
    assert not (tmp_path / "out" / "inputs.safetensors").exists()


def test_cli_preprocess_and_backend_errors(photos, tmp_path, monkeypatch):
    monkeypatch.setenv("AVAT3R_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    result = runner.invoke(app, ["preprocess", str(photos / "astronaut.png"), "-o", str(tmp_path / "o"),
                                 "--resolution", "64", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["views"][0]["photo"] == "astronaut.png"
    for args, message in [
        (["--features", "foo"], "unknown features"),
        (["--geometry", "magic"], "--geometry"),
        (["--resolution", "50"], "multiple of 16"),
        (["--geometry", "dust3r"], "weights download dust3r"),
        (["--features", "sapiens"], "weights download sapiens-2b"),
    ]:
        result = runner.invoke(app, ["preprocess", str(photos / "astronaut.png"), "-o", str(tmp_path / "x"), *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
