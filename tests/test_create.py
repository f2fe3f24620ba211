"""``avat3r create``: photos -> avatar folder, with a tiny random model passed by --weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from cli_fixtures import STAGE_LINE, invoke, neutral_code, shared_cache, weights  # noqa: F401
from avat3r_cli.core.frames import HEAD_FRONT, HEAD_TO_VIEWER, HEAD_UP
from avat3r_cli.io.ply import read_ply
from avat3r_cli.io.video_read import read_video_frames
from avat3r_cli.io.weights import sha256_file
from avat3r_cli.pipeline.avatar import Avatar
from avat3r_cli.model.avat3r import maps_to_gaussians
from avat3r_cli.pipeline.bundle import apply_residuals, load_bundle
from avat3r_cli.pipeline.expression_tour import TOUR, tour_frames
from avat3r_cli.pipeline.refine import psnr, refine_targets
from avat3r_cli.pipeline.turntable import turntable_cameras
from avat3r_cli.render import render

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.png")
    # No face; small, so the failed face search is quick.
    Image.fromarray(skimage_data.camera()).resize((160, 160)).save(folder / "camera.png")
    return folder


def assert_one_line_error(result, *needles: str) -> None:
    """Exit 1 with one ``Error:`` line, last; off a terminal only stage lines may come before it."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert all(STAGE_LINE.match(line) for line in lines[:-1]), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_create_writes_every_file(weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("create", photos / "astronaut.png", "-o", out, "--weights", weights, "--size", 32,
                    "--frames", 4, "--fps", 2, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["avatar.ply", "avatar.avat3r.safetensors", "turntable.mp4", "expressions.mp4", "report.json"]
    )
    assert json.loads((out / "report.json").read_text()) == report
    assert report["photos"]["used"] == ["astronaut.png"] and report["photos"]["skipped"] == []
    assert report["model"]["sha256"] == sha256_file(weights / "model.safetensors")
    # Refinement is on by default (cli/create_cmd.py) and what it did is in the report.
    assert report["refine"]["steps"] == 50 and report["refine"]["best_step"] > 0
    assert set(report["timings"]) >= {"load_model", "preprocess", "turntable"}

    gaussians = read_ply(out / "avatar.ply")
    assert gaussians.count == report["gaussians"] > 100
    turntable = read_video_frames(out / "turntable.mp4")
    assert turntable.shape == (4, 32, 32, 3)
    tour = read_video_frames(out / "expressions.mp4")
    assert tour.shape == (len(TOUR) * 2, 32, 32, 3)
    # The label band: the bottom rows are dark, the avatar's white background is not.
    assert tour[:, -1].mean() < 60 and tour[:, 0].mean() > 200

    bundle = load_bundle(out / "avatar.avat3r.safetensors")
    assert bundle.num_views == 1 and set(bundle.residuals) == {"offset", "sh_dc", "log_scale", "opacity_logit"}
    assert bundle.images.shape == (1, 64, 64, 3) and bundle.images.dtype == torch.uint8
    meta = bundle.metadata
    assert meta.model_sha256 == report["model"]["sha256"] and meta.expression_space == "mediapipe-blendshapes-52"
    assert meta.photos == ["astronaut.png"] and meta.confidence_threshold == 0.5
    assert meta.ply_from_head == [list(row) for row in HEAD_TO_VIEWER]

    # The bundle decodes back to the .ply: same Gaussians, same order, at the model's neutral
    # code (not the all-zero one), turned from the head frame into the viewer frame.
    avatar = Avatar.load(out / "avatar.ply", device="cpu")
    np.testing.assert_allclose(avatar.neutral_code, neutral_code().numpy(), atol=1e-6)
    head = avatar.neutral()
    torch.testing.assert_close(gaussians.means, head.means * torch.tensor([1.0, -1.0, -1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(gaussians.opacities, head.opacities, atol=1e-5, rtol=0)
    torch.testing.assert_close(gaussians.sh, head.sh, atol=1e-5, rtol=0)
    zero = avatar.gaussians_at(np.zeros(52, np.float32))
    assert float((zero.sh - head.sh).abs().max()) > 1e-3  # the neutral code reaches the model (measured 3.6e-3)
    # The turntable starts at the face: its first frame is the .ply seen from the viewer frame's
    # front, which is the head-frame avatar seen from the head frame's front.
    shown = render(gaussians, turntable_cameras(gaussians, 4, 32)[0][0], torch.ones(3)).image
    front = turntable_cameras(head, 4, 32, up=HEAD_UP, front=HEAD_FRONT)[0][0]
    torch.testing.assert_close(shown, render(head, front, torch.ones(3)).image, atol=1e-4, rtol=0)


def test_no_video_and_skipped_photos(weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # other files in OUT are kept
    result = invoke("create", photos / "astronaut.png", photos / "camera.png", "-o", out, "--weights", weights,
                    "--no-video", "--device", "cpu", "--no-cache")  # also the uncached path
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["avatar.avat3r.safetensors", "avatar.ply", "notes.txt", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["photos"]["used"] == ["astronaut.png"]
    [skipped] = report["photos"]["skipped"]
    assert skipped["photo"].endswith("camera.png") and "face" in skipped["reason"]
    assert report["videos"] == {}
    assert [p for p in tmp_path.rglob("*") if ".partial-" in p.name] == []  # no staging left anywhere


def test_refine_reports_psnr_and_keeps_residuals(weights: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("create", photos / "astronaut.png", "-o", out, "--weights", weights, "--refine", 5,
                    "--no-video", "--device", "cpu")
    assert result.exit_code == 0, result.output
    refine = json.loads((out / "report.json").read_text())["refine"]
    assert refine["steps"] == 5
    bundle = load_bundle(out / "avatar.avat3r.safetensors")
    assert bundle.residuals is not None and set(bundle.residuals) == {"offset", "sh_dc", "log_scale", "opacity_logit"}
    assert bundle.residuals["offset"].shape == (1, 64, 64, 3)
    # The reported figures are what the stored residuals do: the photo rendered back from its
    # camera at its own code, measured here independently, without and with them.
    avatar = Avatar.load(out / "avatar.avat3r.safetensors", device="cpu")
    camera, target = avatar.input_cameras()[0], refine_targets(avatar)[0]
    measured = {}
    for name, residuals in (("psnr_before", None), ("psnr_after", bundle.residuals)):
        maps = apply_residuals(avatar.raw_maps_at(bundle.blendshapes[0]), residuals)
        image = render(maps_to_gaussians(maps, avatar.confidence_threshold), camera, torch.ones(3)).image
        measured[name] = psnr(float(((image.clamp(0, 1) - target) ** 2).mean()))
    assert refine["psnr_before"] == pytest.approx(measured["psnr_before"], abs=2e-3)
    assert refine["psnr_after"] == pytest.approx(measured["psnr_after"], abs=2e-3)
    # Five Adam steps lift a random model's fit by twice this (measured: +0.30 dB against the
    # person-matted photo, best at step 5); a broken fit (no gradient, wrong target) stays at step 0.
    assert refine["best_step"] >= 3 and measured["psnr_after"] > measured["psnr_before"] + 0.15
    # Animation keeps the residuals: the neutral decode with them equals the written .ply.
    ply = read_ply(out / "avatar.ply")
    neutral = avatar.ply_gaussians(avatar.neutral())
    torch.testing.assert_close(neutral.means, ply.means, atol=1e-5, rtol=0)
    torch.testing.assert_close(neutral.sh, ply.sh, atol=1e-4, rtol=0)


def test_default_weights_missing_is_one_line(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avat3r_cli.io import registry

    # An installation whose assets folder lacks the model (AVAT3R_ASSETS pointing at an empty folder).
    (tmp_path / "assets").mkdir()
    monkeypatch.setenv("AVAT3R_ASSETS", str(tmp_path / "assets"))
    result = invoke("create", photos / "astronaut.png", "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, "avat3r-small", "--weights", "AVAT3R_ASSETS")
    assert not (tmp_path / "out").exists()
    # Not registered at all.
    monkeypatch.setattr(registry, "REGISTRY", ())
    result = invoke("create", photos / "astronaut.png", "-o", tmp_path / "out", "--no-video")
    assert_one_line_error(result, "avat3r-small", "not registered", "--weights")


def test_bad_inputs_leave_nothing(weights: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert_one_line_error(invoke("create", photos / "camera.png", "-o", out, "--weights", weights, "--no-cache"), "camera.png")
    assert_one_line_error(invoke("create", photos / "astronaut.png", "-o", out, "--weights", weights, "--refine", -1), "--refine")
    assert_one_line_error(invoke("create", photos / "astronaut.png", "-o", out, "--weights", weights, "--size", 8), "--size")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(invoke("create", photos / "astronaut.png", "-o", tmp_path / "file", "--weights", weights), "not a folder")
    assert not out.exists()

    # A failure in the last stage leaves OUT as it was and no staging folder behind.
    import avat3r_cli.pipeline.create as create_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", "expressions.mp4")

    monkeypatch.setattr(create_module, "write_video", broken)
    result = invoke("create", photos / "astronaut.png", "-o", out, "--weights", weights, "--size", 16,
                    "--frames", 1, "--fps", 1, "--device", "cpu")
    assert_one_line_error(result, "No space left")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_tour_eases_in_and_out_from_the_neutral_code() -> None:
    neutral = neutral_code().numpy()
    neutral[25] = 0.05  # jawOpen: a closed mouth rarely reads exactly 0
    codes, labels = tour_frames(5, neutral)
    assert codes.shape == (len(TOUR) * 5, 52) and len(labels) == len(codes)
    assert np.array_equal(codes[:5], np.repeat(neutral[None], 5, axis=0)) and labels[5] == "jawOpen"
    jaw = codes[5:10, 25]
    assert jaw[2] == pytest.approx(0.9) and neutral[25] < jaw[0] < jaw[1] < jaw[2] and neutral[25] < jaw[4] < jaw[3] < jaw[2]
    others = np.delete(codes[5:10], 25, axis=1)
    assert np.array_equal(others, np.repeat(np.delete(neutral, 25)[None], 5, axis=0))  # the rest stays neutral
    one, _ = tour_frames(1, neutral)
    assert one[1, 25] == pytest.approx(0.9)  # one frame per expression still shows its peak


def test_the_refinement_penalty_holds_residuals_near_zero_and_smooth() -> None:
    from avat3r_cli.pipeline.bundle import zero_residuals
    from avat3r_cli.pipeline.refine import SPREADS, residual_penalty

    zero = zero_residuals(2, 8, 8)
    assert float(residual_penalty(zero)) == 0.0
    # The same magnitude (one spread) everywhere: flat costs proximity only, a checkerboard more.
    flat = {k: torch.full_like(t, SPREADS[k]) for k, t in zero.items()}
    signs = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0
    checker = {k: SPREADS[k] * signs[None, :, :, None].expand_as(t) for k, t in zero.items()}
    assert 0.0 < float(residual_penalty(flat)) < float(residual_penalty(checker))
