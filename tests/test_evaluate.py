"""Evaluation: metrics, the three methods on the same seeded samples, the hand-checked baseline, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.cli.evaluate_cmd import evaluate as evaluate_command
from avat3r_cli.data.prepared import PreparedSubject, prepared_name
from avat3r_cli.data.sampler import SampleSpec
from avat3r_cli.eval.evaluate import evaluate, frontal_camera, render_expression_probe
from avat3r_cli.eval.metrics import changed_pixel_mask, lpips_metric, psnr, ssim
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from test_train import R, make_tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"), num_subjects=2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Avat3r(get_preset("tiny"))
    # A larger expression path than the init's 0.02 std, so the code visibly moves the output.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "expression" in name and p.ndim > 1:
                p.mul_(10.0)
    return save_model(model, tmp_path_factory.mktemp("weights") / "model")


@pytest.fixture(scope="module")
def results(model_dir, dataset):
    return evaluate(str(model_dir), dataset, subjects=["subj_1"], num_samples=1, seed=3, baselines=True,
                    device="cpu", num_targets=2)


# -- metrics -------------------------------------------------------------------------------------


def test_psnr_whole_and_masked_match_hand_values():
    target = torch.zeros(1, 3, 4, 4)
    pred = target.clone()
    pred[..., :2, :] = 0.1  # error 0.1 on the top half only
    assert float(psnr(pred, target)[0]) == pytest.approx(-10 * math.log10(0.01 / 2), rel=1e-5)
    top = torch.zeros(1, 1, 4, 4)
    top[..., :2, :] = 1
    assert float(psnr(pred, target, top)[0]) == pytest.approx(20.0, rel=1e-5)
    assert float(psnr(pred, target, 1 - top)[0]) == pytest.approx(100.0)  # exact: capped, not inf
    assert math.isnan(float(psnr(pred, target, torch.zeros(1, 1, 4, 4))[0]))
    assert float(psnr(pred + 5.0, target)[0]) == pytest.approx(0.0, abs=1e-5)  # clamped to 1 first


def test_changed_mask_uses_the_max_channel_difference():
    a = torch.zeros(1, 3, 2, 2)
    b = a.clone()
    b[0, 1, 0, 0] = 0.2  # one channel of one pixel changes a lot
    b[0, :, 1, 1] = 0.04  # below the threshold everywhere
    mask = changed_pixel_mask(a, b)
    assert mask.shape == (1, 1, 2, 2) and mask.sum() == 1 and mask[0, 0, 0, 0] == 1


def test_ssim_metric_and_lpips_availability():
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    scorer = lpips_metric()
    assert scorer is None or callable(scorer)  # no download either way


# -- evaluate --------------------------------------------------------------------------------------


def test_three_methods_on_the_same_samples(results):
    assert [r.method for r in results] == ["avat3r", "zero-expression", "nearest-view"]
    for r in results:
        assert r.num_images == 2 and r.subjects == ["subj_1"]
        assert all(math.isfinite(v) for v in (r.psnr, r.psnr_fg, r.ssim))
        assert r.lpips is None or math.isfinite(r.lpips)
        json.dumps(r.to_dict())
    views = [[(p["target_timestep"], p["target_camera"], tuple(p["input_cameras"])) for p in r.per_image] for r in results]
    assert views[0] == views[1] == views[2]
    for p in results[0].per_image:  # protocol: novel views at a novel expression
        assert p["target_camera"] not in p["input_cameras"] and p["target_timestep"] != p["input_timesteps"][0]
    assert len(set(p["input_timesteps"][0] for p in results[0].per_image)) == 1


def test_zero_expression_differs_from_the_model(results):
    model, zero = results[0].per_image, results[1].per_image
    assert any(abs(a["psnr"] - b["psnr"]) > 1e-4 for a, b in zip(model, zero))


def test_nearest_view_psnr_equals_a_hand_computation(results, dataset):
    row = results[2].per_image[0]
    subject = PreparedSubject(dataset / "subj_1" / prepared_name(R, "template"))
    spec = SampleSpec(tuple(row["input_timesteps"]), tuple(row["input_cameras"]), row["target_timestep"],
                      (row["target_camera"],))
    s = subject.sample(spec)
    centres = subject.camera_centers()
    dist = np.linalg.norm(centres[list(spec.input_cameras)] - centres[row["target_camera"]], axis=1)
    k = int(np.argmin(dist))
    inp = subject.views([spec.input_timesteps[k]], [spec.input_cameras[k]])
    white = np.ones((3, 1, 1))
    pred = inp["images"][0].numpy() * inp["masks"][0].numpy() + white * (1 - inp["masks"][0].numpy())
    tgt = s.target_images[0].numpy() * s.target_masks[0].numpy() + white * (1 - s.target_masks[0].numpy())
    expected = -10 * math.log10(float(np.mean((np.clip(pred, 0, 1) - tgt) ** 2)))
    assert row["psnr"] == pytest.approx(expected, abs=1e-4)


def test_changed_pixels_are_found_where_the_jaw_moves(results):
    nearest = results[2]
    assert nearest.num_changed_images >= 1 and math.isfinite(nearest.psnr_changed)
    assert all(p["changed_pixels"] > 0 for p in nearest.per_image)


def test_default_subjects_are_the_runs_held_out_ones(model_dir, dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": ["subj_0"], "val": ["subj_1"]}))
    save_model(Avat3r(get_preset("tiny")), run / "model")
    out = evaluate(str(run / "model"), dataset, num_samples=1, baselines=False, device="cpu", num_targets=1)
    assert [r.method for r in out] == ["avat3r"] and out[0].subjects == ["subj_1"]


def test_expression_probe_renders_one_image_per_code(model_dir, dataset):
    from avat3r_cli.pipeline.models import load_avat3r

    model, _ = load_avat3r(str(model_dir))
    subject = PreparedSubject(dataset / "subj_0" / prepared_name(R, "template"))
    codes = torch.zeros(2, 52)
    codes[1, 25] = 1.0  # jawOpen
    images = render_expression_probe(model, subject, codes)
    assert images.shape == (2, 3, R, R) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert float((images[0] - images[1]).abs().max()) > 1e-4
    assert 0 <= frontal_camera(subject) < subject.num_cameras


def test_cli_json_prints_one_object_per_method(model_dir, dataset):
    app = typer.Typer()
    app.command()(evaluate_command)
    args = ["--weights", str(model_dir), "--data", str(dataset), "--subjects", "subj_1", "--samples", "1",
            "--targets", "1", "--baselines", "--json", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [d["method"] for d in lines] == ["avat3r", "zero-expression", "nearest-view"]
    assert all(isinstance(d["psnr"], float) for d in lines)
    table = CliRunner().invoke(app, args[:-3] + ["--device", "cpu"])
    assert table.exit_code == 0 and "nearest-view" in table.stdout and "PSNR" in table.stdout
