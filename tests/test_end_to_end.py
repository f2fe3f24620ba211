"""The whole job with the bundled model, as the README runs it: photos in, an avatar that matches them.

Uses the default weights (avat3r-small in the package's assets); skipped when they are absent
(a checkout without the bundled model).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from avat3r_cli.cli.app import app
from avat3r_cli.eval.back_view import back_view_check
from avat3r_cli.io.ply import read_ply
from avat3r_cli.io.video_read import read_video_frames
from avat3r_cli.pipeline.avatar import Avatar, default_weights_folder
from avat3r_cli.pipeline.expression_tour import tour_frames
from avat3r_cli.pipeline.models import load_avat3r
from avat3r_cli.render import render

pytestmark = pytest.mark.weights
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_DEFAULT = default_weights_folder()
if _DEFAULT is None or not (_DEFAULT / "model.safetensors").is_file():
    pytest.skip("the bundled model avat3r-small is absent", allow_module_level=True)

runner = CliRunner()
# Input-view fidelity of the feed-forward avatar on the example photos, inside each photo's
# foreground (the pixels that get Gaussians). A flat grey guess scores 11.5-13.7 dB there and
# the image's own mean colour 12.3-14.3 dB; the bundled model (stage 24, 50 refinement steps)
# measured 18.9-22.2 dB, over the whole person since its position maps cover hair and shoulders
# (stage 19, whose maps covered the template head alone, 23.3-24.4 dB over that). The bar
# sits clearly above what no model at all achieves and below what the bundled model does.
MIN_INPUT_VIEW_PSNR = 16.0
# Closed heads made by the bundled models (stages 9-24, the card's four avatars) measured mirror
# correlations from -0.26 to +0.19, faces seen through an empty skull 0.47 and more (stage 7 on
# the astronaut; a flat mask over 0.8): the bar lies between. The back depth is the sharper test.
CLOSED_HEAD_MAX_CORRELATION = 0.35


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    mse = (((a - b) ** 2).mean(0) * mask).sum() / mask.sum().clamp(min=1)
    return float(10 * torch.log10(1.0 / mse.clamp(min=1e-10)))


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "out"
    photos = sorted(str(p) for p in (EXAMPLES / "photos").glob("*.jpg"))
    result = runner.invoke(app, ["create", *photos, "-o", str(out), "--frames", "8", "--size", "64"],
                           env={"AVAT3R_CACHE": str(out.parent / "cache")})
    assert result.exit_code == 0, result.output
    return out


def test_every_output_exists_and_reloads(avatar_dir):
    report = json.loads((avatar_dir / "report.json").read_text())
    assert len(report["photos"]["used"]) == 4
    assert read_ply(avatar_dir / "avatar.ply").count == report["gaussians"] > 10_000
    assert read_video_frames(avatar_dir / "turntable.mp4").shape[0] == 8
    assert read_video_frames(avatar_dir / "expressions.mp4").shape[1:3] == (64, 64)


def test_renders_from_the_input_cameras_match_the_photos(avatar_dir):
    avatar = Avatar.load(avatar_dir)
    bundle = avatar.bundle
    scores = []
    with torch.no_grad():
        for v, camera in enumerate(avatar.input_cameras()):
            gaussians = avatar.gaussians_at(bundle.blendshapes[v])
            pred = render(gaussians, camera, (1.0, 1.0, 1.0)).image.clamp(0, 1)
            target = bundle.images[v].permute(2, 0, 1).float() / 255
            mask = (bundle.confidence[v, 0] >= avatar.confidence_threshold).float()
            scores.append(psnr(pred, target, mask))
    assert min(scores) > MIN_INPUT_VIEW_PSNR, scores


def test_one_real_photo_then_animate(tmp_path):
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    env = {"AVAT3R_CACHE": str(tmp_path / "cache")}
    made = runner.invoke(app, ["create", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "a"), "--no-video"], env=env)
    assert made.exit_code == 0, made.output
    moved = runner.invoke(app, ["animate", str(tmp_path / "a" / "avatar.ply"), "--expr", str(EXAMPLES / "expressions.csv"),
                                "-o", str(tmp_path / "anim.mp4"), "--size", "64"], env=env)
    assert moved.exit_code == 0, moved.output
    frames = read_video_frames(tmp_path / "anim.mp4")
    assert frames.shape == (60, 64, 64, 3)
    # An avatar over white, not an empty, black or frozen video: white corners, a darker middle
    # (measured 165), and the face moving with the clip (measured 0.78 per frame on average).
    assert frames[:, :3, :3].min() > 235 and frames[:, 24:40, 24:40].mean() < 210
    assert np.abs(np.diff(frames.astype(float), axis=0)).mean() > 0.1


def test_the_bundled_model_opens_the_jaw_for_jaw_open(tmp_path):
    out = tmp_path / "a"
    made = runner.invoke(app, ["create", str(EXAMPLES / "photos" / "front.jpg"), "-o", str(out), "--no-video"],
                         env={"AVAT3R_CACHE": str(tmp_path / "cache")})
    assert made.exit_code == 0, made.output
    avatar = Avatar.load(out)
    jaw = avatar.neutral_code.copy()
    jaw[25] = 1.0  # jawOpen, the rest of the face neutral
    with torch.no_grad():
        neutral, opened = avatar.neutral().means, avatar.gaussians_at(jaw).means
    moved = (opened - neutral).norm(dim=1)
    top = moved > moved.quantile(0.99)
    # The Gaussians that move most sit in the lower face (head frame: +y is down) and move down
    # by millimetres or more (measured with stage 24: 55 mm at the 99th percentile, 32 mm down on
    # average; stage 19 measured 60 and 35 mm, stage 9 59 and 32 mm).
    assert float(moved.quantile(0.99)) > 0.003
    assert float(neutral[top, 1].mean()) > 0.03
    assert float((opened - neutral)[top, 1].mean()) > 0.003


def test_the_bundled_model_records_a_neutral_code_inside_its_training_codes():
    model, _ = load_avat3r(str(default_weights_folder()))
    z = lambda code: ((code - model.expression_mean) / model.expression_std).abs()  # noqa: E731
    # The all-zero code is several spreads off the training codes (eyeLookDown, eyeSquint; measured
    # 2.84 with stages 19 and 24, whose wider synthetic faces MediaPipe reads nearer zero there, and
    # 3.13 with stage 17); the recorded neutral (median of the training subjects' neutral frames)
    # sits inside them (0.74 with all three).
    assert float(z(torch.zeros(52)).max()) > 2.5
    assert float(z(model.neutral_expression).max()) < 1.5
    assert float(model.neutral_expression[25]) < 0.05  # jawOpen: a closed mouth


def test_the_expression_tour_stays_inside_the_bundled_model_s_training_codes():
    # The tour shows only what the model renders: no code it plays lies more than 4 spreads
    # from the training codes in any channel (cheekPuff 1.0, which breaks the face, is 20 out).
    model, _ = load_avat3r(str(default_weights_folder()))
    codes, labels = tour_frames(5, model.neutral_expression.numpy())
    z = (torch.from_numpy(codes) - model.expression_mean) / model.expression_std
    worst = z.abs().max(dim=1).values
    assert float(worst.max()) < 4.0, labels[int(worst.argmax())]
    assert labels[::5] == ["neutral", "jawOpen", "smile", "blink"]


def test_the_view_from_behind_shows_the_back_of_a_head(avatar_dir):
    # Not the face seen through an empty skull (eval/back_view.py): measured -0.26 and -0.141 m
    # with stage 24 (hair from behind in its turntable; the bob's lower edge crosses the face box),
    # -0.14 and -0.141 m with stage 19.
    check = back_view_check(Avatar.load(avatar_dir).neutral())
    assert abs(check.mirror_correlation) < CLOSED_HEAD_MAX_CORRELATION, check
    assert check.back_depth_m < -0.03, check


def test_a_one_photo_avatar_is_closed_behind(tmp_path):
    # One frontal photo: no pixel sees the back, so only anchor Gaussians can close it. Measured
    # -0.12 and -0.111 m with stage 24 (stage 19: -0.00 and -0.120 m; stage 9: -0.09 and -0.115 m;
    # stage 7, without anchors: 0.47 and +0.02 m).
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    made = runner.invoke(app, ["create", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "a"), "--no-video"],
                         env={"AVAT3R_CACHE": str(tmp_path / "cache")})
    assert made.exit_code == 0, made.output
    check = back_view_check(Avatar.load(tmp_path / "a").neutral())
    assert abs(check.mirror_correlation) < CLOSED_HEAD_MAX_CORRELATION, check
    assert check.back_depth_m < -0.03, check
