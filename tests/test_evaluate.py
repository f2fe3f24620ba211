"""``evaluate --data``: the three methods on the same seeded samples, hand-checked baselines, view groups,
expression accuracy with bootstrap intervals and its ceiling, the CLI."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.cli.evaluate_cmd import evaluate as evaluate_command
from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.data.prepared import PreparedSubject, prepared_name
from avat3r_cli.data.sampler import SampleSpec
from avat3r_cli.eval.bootstrap import bootstrap_correlation
from avat3r_cli.eval.evaluate import METHODS, evaluate, frontal_camera, render_expression_probe
from avat3r_cli.eval.expression_accuracy import expression_accuracy, expression_ceiling
from avat3r_cli.eval.metrics import lpips_metric
from avat3r_cli.eval.view_groups import camera_yaw_deg, view_group
from avat3r_cli.io.weights import save_model
from avat3r_cli.train.step import render_maps
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from test_train import R, make_subject, make_tiny_dataset


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
                    device="cpu", num_inputs=2, num_targets=4)


# -- evaluate --------------------------------------------------------------------------------------


def test_three_methods_on_the_same_samples(results):
    assert [r.method for r in results] == ["avat3r", "input-expression", "nearest-view"]
    assert "zero-expression" not in METHODS  # the off-distribution all-zero code is no baseline
    lpips_available = lpips_metric() is not None
    for r in results:
        assert r.num_images == 4 and r.subjects == ["subj_1"]
        assert all(math.isfinite(v) for v in (r.psnr, r.psnr_fg, r.ssim, r.iou))
        assert (r.lpips is not None) == lpips_available
        json.dumps(r.to_dict())
    views = [[(p["target_timestep"], p["target_camera"], tuple(p["input_cameras"])) for p in r.per_image] for r in results]
    assert views[0] == views[1] == views[2]
    for p in results[0].per_image:  # protocol: novel views at a novel expression
        assert p["target_camera"] not in p["input_cameras"] and p["target_timestep"] != p["input_timesteps"][0]
    assert len(set(p["input_timesteps"][0] for p in results[0].per_image)) == 1


def _spec(row: dict) -> SampleSpec:
    return SampleSpec(tuple(row["input_timesteps"]), tuple(row["input_cameras"]), row["target_timestep"],
                      (row["target_camera"],))


def _white(images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    return (images * masks + (1 - masks)).numpy()


def test_input_expression_is_the_model_at_the_inputs_code(results, model_dir, dataset):
    from avat3r_cli.pipeline.models import load_avat3r

    model, _ = load_avat3r(str(model_dir))
    subject = PreparedSubject(dataset / "subj_1" / prepared_name(R, "template"))
    row = results[1].per_image[0]
    s = subject.sample(_spec(row))
    t0 = row["input_timesteps"][0]
    with torch.no_grad():
        maps = model.decode(model.encode_views(s.inputs), subject.expressions[t0][None])
    pred = render_maps(maps, s.target_K, s.target_world_to_cam, (R, R), torch.ones(3), 0.5)[0].clamp(0, 1)
    expected = -10 * math.log10(float(np.mean((pred.numpy() - _white(s.target_images, s.target_masks)) ** 2)))
    assert row["psnr"] == pytest.approx(expected, abs=1e-3)
    # The target's own code (another timestep: the jaw moves) gives another image.
    assert any(abs(a["psnr"] - b["psnr"]) > 1e-4 for a, b in zip(results[0].per_image, results[1].per_image))


def test_targets_are_grouped_by_the_yaw_of_their_camera(results, dataset):
    subject = PreparedSubject(dataset / "subj_1" / prepared_name(R, "template"))
    yaws = camera_yaw_deg(subject.world_to_cam)
    for r in results:
        for p in r.per_image:
            assert p["yaw_deg"] == pytest.approx(float(yaws[p["target_camera"]]), abs=0.01)
            assert p["view_group"] == view_group(yaws[p["target_camera"]])
        groups = r.view_groups
        assert list(groups) == ["front", "side", "back", "all"]
        assert sum(groups[g].num_images for g in ("front", "side", "back")) == groups["all"].num_images == r.num_images
        for name, group in groups.items():
            members = [p for p in r.per_image if name == "all" or p["view_group"] == name]
            if members:
                assert group.psnr == pytest.approx(np.mean([p["psnr"] for p in members]), abs=1e-9)
                assert group.iou == pytest.approx(np.mean([p["iou"] for p in members]), abs=1e-9)
            else:
                assert group.psnr is None and group.iou is None
        assert r.to_dict()["view_groups"]["all"]["num_images"] == r.num_images
    assert sum(g.num_images > 0 for n, g in results[0].view_groups.items() if n != "all") >= 2


def test_nearest_view_psnr_and_iou_equal_a_hand_computation(results, dataset):
    row = results[2].per_image[0]
    subject = PreparedSubject(dataset / "subj_1" / prepared_name(R, "template"))
    spec = _spec(row)
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
    a, b = inp["masks"][0].numpy() > 0.5, s.target_masks[0].numpy() > 0.5
    assert row["iou"] == pytest.approx((a & b).sum() / (a | b).sum(), abs=1e-6)


def test_changed_pixels_are_found_where_the_jaw_moves(results):
    nearest = results[2]
    assert nearest.num_changed_images >= 1 and math.isfinite(nearest.psnr_changed)
    assert all(p["changed_pixels"] > 0 for p in nearest.per_image)


def test_targets_at_another_resolution_come_from_that_preparation(model_dir, results, tmp_path):
    data = make_tiny_dataset(tmp_path / "data", num_subjects=2)
    make_subject(data / "subj_1", seed=1, r=2 * R)  # the same heads and cameras, prepared at 2R
    kwargs = dict(subjects=["subj_1"], num_samples=1, seed=3, baselines=True, device="cpu", num_inputs=2, num_targets=4)
    same = evaluate(str(model_dir), data, target_resolution=R, **kwargs)
    assert [r.psnr for r in same] == [r.psnr for r in results]  # S = R is the default
    sharp = evaluate(str(model_dir), data, target_resolution=2 * R, **kwargs)
    # The same draws (inputs and targets), scored at 2R.
    assert [(r["target_camera"], r["target_timestep"]) for r in sharp[0].per_image] == \
        [(r["target_camera"], r["target_timestep"]) for r in results[0].per_image]
    assert all(math.isfinite(r["psnr"]) for m in sharp for r in m.per_image)
    # The nearest-view baseline uses the 2R images: a hand computation at 2R matches.
    row = sharp[2].per_image[0]
    subject = PreparedSubject(data / "subj_1" / prepared_name(2 * R, "template"))
    spec = _spec(row)
    centres = subject.camera_centers()
    k = int(np.argmin(np.linalg.norm(centres[list(spec.input_cameras)] - centres[row["target_camera"]], axis=1)))
    inp = subject.views([spec.input_timesteps[k]], [spec.input_cameras[k]])
    tgt = subject.sample(spec)
    pred, truth = _white(inp["images"][0], inp["masks"][0]), _white(tgt.target_images[0], tgt.target_masks[0])
    assert pred.shape[-1] == 2 * R
    assert row["psnr"] == pytest.approx(-10 * math.log10(float(np.mean((np.clip(pred, 0, 1) - truth) ** 2))), abs=1e-4)
    with pytest.raises(Exception, match="prepared subject file does not exist"):
        evaluate(str(model_dir), data, target_resolution=3 * R, **kwargs)


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


class StubReader:
    """Stands in for MediaPipe: jawOpen = how low the toy head's red jaw sits (its red pixels' mean row)."""

    def __init__(self, skip_every: int = 0) -> None:
        self.images: list[np.ndarray] = []
        self.skip_every = skip_every

    def analyze(self, image: np.ndarray):
        self.images.append(image)
        if self.skip_every and len(self.images) % self.skip_every == 0:
            return None  # "no face found"
        red = (image[..., 0] > 150) & (image[..., 1] < 100)
        scores = np.zeros(52, np.float32)
        scores[EXPRESSION_INDEX["jawOpen"]] = np.nonzero(red)[0].mean() / image.shape[0] if red.any() else 0.0
        return types.SimpleNamespace(blendshapes=scores)


def test_ceiling_reads_every_frontal_ground_truth_view(dataset):
    reader = StubReader()
    acc = expression_ceiling(dataset, ["subj_0", "subj_1"], R, "template", seed=2, analyzer=reader, resamples=300)
    assert acc.renders == acc.detected == 6 and len(reader.images) == 6  # 2 subjects x 3 timesteps
    assert all(im.shape == (256, 256, 3) for im in reader.images)  # read at the renders' analysis size
    assert all((im[:4, :4] == 255).all() for im in reader.images)  # composited over white by its mask
    # The stub sees the jaw lower as the requested jawOpen grows: the ceiling correlation is high.
    assert acc.correlation["jawOpen"] > 0.9 and acc.requested["jawOpen"] == [0.0, 0.5, 1.0] * 2
    low, high = acc.interval["jawOpen"]
    expected = bootstrap_correlation(np.array(acc.requested["jawOpen"]), np.array(acc.read["jawOpen"]),
                                     resamples=300, seed=2)
    assert (low, high) == pytest.approx(expected, abs=1e-3)
    assert acc.correlation["smile"] is None and acc.interval["smile"] is None  # read as constant zero


def test_expression_accuracy_pairs_only_the_renders_with_a_face(model_dir, dataset):
    from avat3r_cli.pipeline.models import load_avat3r

    model, _ = load_avat3r(str(model_dir))
    reader = StubReader(skip_every=3)
    acc = expression_accuracy(model, dataset, ["subj_0", "subj_1"], codes_per_subject=3, seed=1, analyzer=reader,
                              resamples=0)
    assert acc.renders == 6 and acc.detected == 4 and len(acc.requested["jawOpen"]) == 4
    assert acc.interval == {g: None for g in acc.correlation}  # no resamples, no intervals
    assert set(acc.to_dict()) == {"correlation", "interval", "renders", "detected"}


def test_cli_json_prints_one_object_per_method(model_dir, dataset):
    app = typer.Typer()
    app.command()(evaluate_command)
    args = ["--weights", str(model_dir), "--data", str(dataset), "--subjects", "subj_1", "--samples", "1",
            "--targets", "1", "--baselines", "--expressions", "2", "--bootstrap", "50", "--ceiling", "--json",
            "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [d["method"] for d in lines] == ["avat3r", "input-expression", "nearest-view", "ground-truth-views"]
    assert all(isinstance(d["psnr"], float) and d["view_groups"]["all"]["num_images"] == 1 for d in lines[:3])
    assert set(lines[0]["expression_interval"]) == set(lines[0]["expression_correlation"])
    assert lines[0]["expression_renders"]["renders"] == 2 and lines[3]["expression_renders"]["renders"] == 3
    table = CliRunner().invoke(app, [a for a in args if a != "--json"])
    assert table.exit_code == 0, table.output
    for needle in ("nearest-view", "PSNR", "IoU", "By view", "ceiling"):
        assert needle in table.stdout, needle


def test_cli_usage_errors_exit_2(model_dir, dataset, tmp_path):
    app = typer.Typer()
    app.command()(evaluate_command)
    runner = CliRunner()
    assert runner.invoke(app, ["--weights", str(model_dir)]).exit_code == 2  # neither --data nor --photos
    both = runner.invoke(app, ["--data", str(dataset), "--photos", str(tmp_path / "a.png"), "--leave-one-out"])
    assert both.exit_code == 2 and "not both" in both.output
    assert runner.invoke(app, ["--data", str(dataset), "--sheet", str(tmp_path)]).exit_code == 2
