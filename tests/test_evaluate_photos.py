"""``evaluate --photos ... --leave-one-out``: held-out real photos, with a tiny random model.

Photos come from packages only (skimage's astronaut and camera, matplotlib's grace_hopper) and
mirrored / cropped copies of them, so one "person" has several views.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.cbook as cbook
import numpy as np
import pytest
import torch
from matplotlib.path import Path as PolygonPath
from PIL import Image
from scipy.spatial import ConvexHull
from skimage import data as skimage_data

from cli_fixtures import invoke, one_thread, shared_cache, weights  # noqa: F401
from avat3r_cli.core.camera import Camera
from avat3r_cli.eval import photos as photos_module
from avat3r_cli.eval.photo_metrics import AKD_SIZE, face_mask, read_face, score_image
from avat3r_cli.eval.photos import evaluate_photos, matted_crop
from avat3r_cli.preprocess.person_mask import person_masks
from avat3r_cli.pipeline.avatar import Avatar
from avat3r_cli.pipeline.create import run_create
from avat3r_cli.pipeline.preprocess import default_cache_dir
from avat3r_cli.preprocess.face import FaceAnalyzer
from avat3r_cli.preprocess.photos import prepare_photos
from avat3r_cli.render.api import render

R = 64  # the tiny preset's crop side


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    astronaut = skimage_data.astronaut()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(folder / "astronaut_mirrored.png")
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace_hopper.jpg")
    grace = np.asarray(Image.open(folder / "grace_hopper.jpg").convert("RGB"))
    Image.fromarray(grace[40:520, 20:500]).save(folder / "grace_cropped.png")
    Image.fromarray(skimage_data.camera()).resize((160, 160)).save(folder / "camera.png")  # no face
    return folder


@pytest.fixture(scope="module")
def three(photos) -> list[Path]:
    return [photos / "astronaut.png", photos / "astronaut_mirrored.png", photos / "grace_hopper.jpg"]


@pytest.fixture(scope="module")
def evaluation(weights, three):
    return evaluate_photos(three, weights=str(weights), device="cpu")


@pytest.fixture(scope="module")
def prepared(three):
    return prepare_photos(three, R, cache_dir=default_cache_dir())


def test_each_photo_is_held_out_of_its_own_avatar(evaluation, three):
    names = [p.name for p in three]
    assert [(r.photo, r.method) for r in evaluation.results] == [(n, m) for n in names for m in ("avat3r", "nearest-view")]
    for r in evaluation.results:
        if r.method == "avat3r":
            assert r.inputs == [n for n in names if n != r.photo]
        else:
            assert len(r.inputs) == 1 and r.inputs[0] != r.photo
    assert evaluation.used == names and evaluation.skipped == [] and evaluation.resolution == R


def test_the_avatar_is_the_one_create_makes_from_the_other_photos(evaluation, weights, three, prepared, tmp_path):
    run_create(three[1:], tmp_path / "out", weights=str(weights), video=False, device="cpu")
    avatar = Avatar.load(tmp_path / "out", device="cpu")
    held_out = prepared.views[0]
    with torch.no_grad():
        image = render(avatar.gaussians_at(held_out.blendshapes), Camera(held_out.K, held_out.world_to_cam, R, R)).image
    torch.testing.assert_close(evaluation.images[0].render, image.clamp(0, 1), rtol=0, atol=1e-5)


def test_nearest_view_is_the_closest_viewing_direction_and_scores_by_hand(evaluation, prepared):
    w2c = np.stack([v.world_to_cam.numpy() for v in prepared.views]).astype(np.float64)
    centres = -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])
    dirs = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    rows = [r for r in evaluation.results if r.method == "nearest-view"]
    for k, row in enumerate(rows):
        cos = dirs @ dirs[k]
        cos[k] = -2
        j = int(np.argmax(cos))
        assert row.inputs == [prepared.views[j].name]
        white = np.ones((3, R, R))

        def matte(view):
            mask = person_masks(view.image[None])[0]  # the person, hair included (not the template oval)
            return (view.image.transpose(2, 0, 1) / 255.0) * mask + white * (1 - mask)

        face = face_mask(prepared.views[k].landmarks, R).numpy().astype(bool)[0]
        err = ((matte(prepared.views[j]) - matte(prepared.views[k])) ** 2)[:, face]
        assert row.score.psnr_face == pytest.approx(-10 * np.log10(err.mean()), abs=1e-4)
        err_crop = (matte(prepared.views[j]) - matte(prepared.views[k])) ** 2
        assert row.score.psnr_crop == pytest.approx(-10 * np.log10(err_crop.mean()), abs=1e-4)


def test_face_mask_is_the_hull_of_the_landmarks(prepared):
    landmarks = prepared.views[2].landmarks
    mask = face_mask(landmarks, R)[0].numpy().astype(bool)
    hull = landmarks[ConvexHull(landmarks).vertices]
    ys, xs = np.mgrid[0:R, 0:R]
    inside = PolygonPath(hull).contains_points(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)).reshape(R, R)
    assert inside.sum() > 500  # the face fills a good part of the crop
    assert (mask != inside).sum() <= 2  # at most a tie on an edge


def test_an_image_identical_to_the_photo_scores_perfectly_and_akd_is_in_512_pixels(prepared):
    crop = matted_crop(prepared.views[0], torch.from_numpy(person_masks(prepared.views[0].image[None]))[0])
    mask = face_mask(prepared.views[0].landmarks, R)
    with FaceAnalyzer() as analyzer:
        first, again = read_face(analyzer, crop), read_face(analyzer, crop)
        shifted = read_face(analyzer, torch.roll(crop, shifts=2, dims=2))  # 2 crop pixels to the right
    same = score_image(crop, crop, mask, first, again)
    assert same.psnr_face == pytest.approx(100.0) and same.ssim_face == pytest.approx(1.0, abs=1e-6)
    assert same.akd_px512 == pytest.approx(0.0, abs=1e-6) and same.face_found
    assert all(v["read"] == v["photo"] for v in same.expression.values())
    moved = score_image(crop, crop, mask, shifted, first)
    assert moved.akd_px512 == pytest.approx(2 * AKD_SIZE / R, rel=0.3)
    assert score_image(crop, crop, mask, None, first).akd_px512 is None


def test_summaries_are_the_means_of_the_rows(evaluation):
    assert [s.method for s in evaluation.summaries] == ["avat3r", "nearest-view"]
    for s in evaluation.summaries:
        rows = [r.score for r in evaluation.results if r.method == s.method]
        assert s.num_photos == 3 and s.face_found == sum(r.face_found for r in rows)
        assert s.psnr_face == pytest.approx(np.mean([r.psnr_face for r in rows]), abs=1e-9)
        assert s.ssim_crop == pytest.approx(np.mean([r.ssim_crop for r in rows]), abs=1e-9)
        akds = [r.akd_px512 for r in rows if r.akd_px512 is not None]
        assert s.akd_px512 == (pytest.approx(np.mean(akds), abs=1e-9) if akds else None)
        jaw = [abs(r.expression["jawOpen"]["read"] - r.expression["jawOpen"]["photo"]) for r in rows
               if r.expression["jawOpen"]["read"] is not None and r.expression["jawOpen"]["photo"] is not None]
        assert s.expression_error["jawOpen"] == (pytest.approx(np.mean(jaw), abs=1e-9) if jaw else None)
        assert s.to_dict()["photo"] == "all"


def test_refine_fits_each_avatar_to_its_own_inputs(weights, three, monkeypatch):
    calls = []
    real = photos_module.refine_avatar

    def recording(avatar, steps, **kw):
        calls.append((steps, list(avatar.bundle.metadata.photos)))
        return real(avatar, steps, **kw)

    monkeypatch.setattr(photos_module, "refine_avatar", recording)
    out = evaluate_photos(three[:2], weights=str(weights), refine=2, device="cpu")
    assert calls == [(2, ["astronaut_mirrored.png"]), (2, ["astronaut.png"])] and out.refine == 2


def test_cli_json_sheets_and_a_skipped_photo(weights, photos, tmp_path):
    paths = [photos / n for n in ("astronaut.png", "camera.png", "astronaut_mirrored.png", "grace_cropped.png")]
    result = invoke("evaluate", "--photos", *paths, "--leave-one-out", "--weights", weights, "--device", "cpu",
                    "--resolution", 96, "--sheet", tmp_path / "sheets", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    rows, summaries = lines[:6], lines[6:]
    assert [(d["photo"], d["method"]) for d in summaries] == [("all", "avat3r"), ("all", "nearest-view")]
    for d in rows:
        assert {"photo", "method", "psnr_face", "ssim_face", "akd_px512", "face_found"} <= set(d)
        assert isinstance(d["face_found"], bool) and isinstance(d["psnr_face"], float)
    assert {d["photo"] for d in rows} == {"astronaut.png", "astronaut_mirrored.png", "grace_cropped.png"}
    assert summaries[0]["resolution"] == 96 and summaries[0]["skipped"][0]["photo"].endswith("camera.png")
    assert "camera.png" in result.stderr and "no face found" in result.stderr
    sheets = sorted((tmp_path / "sheets").iterdir())
    assert [p.name for p in sheets] == ["01-astronaut.png", "02-astronaut_mirrored.png", "03-grace_cropped.png"]
    assert Image.open(sheets[0]).size == (3 * 256, 256 + 20)  # 96² panels enlarged to 256, captions below


def test_cli_table(weights, photos):
    result = invoke("evaluate", "--photos", photos / "astronaut.png", photos / "grace_cropped.png", "--leave-one-out",
                    "--weights", weights, "--device", "cpu")
    assert result.exit_code == 0, result.output
    for needle in ("nearest-view", "PSNR", "AKD", "jawOpen", "faces", "astronaut.png"):
        assert needle in result.stdout, needle


def test_fewer_than_two_usable_photos_is_one_line_error(weights, photos):
    result = invoke("evaluate", "--photos", photos / "astronaut.png", photos / "camera.png", "--leave-one-out",
                    "--weights", weights, "--device", "cpu")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "at least two usable photos" in lines[0] and "camera.png: no face found" in lines[0]
    twice = invoke("evaluate", "--photos", photos / "astronaut.png", photos / "astronaut.png", "--leave-one-out",
                   "--weights", weights, "--device", "cpu")
    assert twice.exit_code == 1 and "given twice" in twice.stderr and "Traceback" not in twice.output


def test_photo_usage_errors_exit_2(photos):
    assert invoke("evaluate", "--photos", photos / "astronaut.png", photos / "grace_cropped.png").exit_code == 2
    assert invoke("evaluate", photos / "astronaut.png", photos / "grace_cropped.png", "--leave-one-out").exit_code == 2
    assert invoke("evaluate", "--photos", "--leave-one-out").exit_code == 2
