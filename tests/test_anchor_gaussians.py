"""Anchor Gaussians: learned queries on the template head (model/anchor_gaussians.py,
preprocess/anchor_points.py) and everything downstream of them: tiny preset, CPU, seeded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData
from skimage import data as skimage_data

from cli_fixtures import invoke, one_thread, shared_cache  # noqa: F401
from test_model import MAP_FIELDS, expression, make_inputs
from avat3r_cli.core.camera import Camera
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.ply import read_ply
from avat3r_cli.io.weights import load_model, save_model
from avat3r_cli.model.anchor_gaussians import ANCHOR_OFFSET_M, CHILD_SPREAD_M
from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
from avat3r_cli.model.config import PRESETS, ModelConfig, get_preset
from avat3r_cli.pipeline.avatar import Avatar, default_weights_folder
from avat3r_cli.pipeline.models import load_avat3r
from avat3r_cli.preprocess import anchor_points as anchor_module
from avat3r_cli.preprocess.anchor_points import MAX_ANCHORS, anchor_points, head_surface_samples
from avat3r_cli.preprocess.template_geometry import NECK, SKULL
from avat3r_cli.render.api import render

Q, G = 48, 3
ANCHORED = get_preset("tiny").replace(anchor_gaussians=Q, anchor_children=G)
ANCHOR_FIELDS = MAP_FIELDS[:5]  # means .. sh; anchors have no confidence
STANDARD_PLY = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip


def build(config: ModelConfig = ANCHORED, seed: int = 0) -> Avat3r:
    torch.manual_seed(seed)
    model = Avat3r(config).eval()
    if model.anchors is not None:
        model.set_anchor_points(torch.from_numpy(anchor_points(config.anchor_gaussians).copy()))
    return model


@pytest.fixture(scope="module")
def anchored() -> Avat3r:
    return build()


@pytest.mark.parametrize("views", [1, 2, 6])
def test_shapes_and_count_for_any_number_of_views(anchored: Avat3r, views: int) -> None:
    x = make_inputs(ANCHORED, views, seed=views)
    with torch.no_grad():
        maps = anchored(x, expression(0))
    a = maps.anchors
    assert a.means.shape == (1, Q * G, 3) and a.quats.shape == (1, Q * G, 4) and a.scales.shape == (1, Q * G, 3)
    assert a.opacities.shape == (1, Q * G) and a.sh.shape == (1, Q * G, 1, 3) and a.count == Q * G
    assert all(getattr(a, f).dtype == torch.float32 and torch.isfinite(getattr(a, f)).all() for f in ANCHOR_FIELDS)
    torch.testing.assert_close(a.quats.norm(dim=-1), torch.ones(1, Q * G), atol=1e-6, rtol=0)
    assert ((a.opacities > 0) & (a.opacities < 1)).all() and (a.scales > 0).all()
    # The children stay near their anchors (spread + bounded offset), anchor-major.
    anchors = anchored.anchors.points.repeat_interleave(G, dim=0)
    assert float((a.means[0] - anchors).norm(dim=-1).max()) <= CHILD_SPREAD_M + math.sqrt(3) * ANCHOR_OFFSET_M
    pixels = int((x.confidence >= 0.5).sum())
    gaussians = maps_to_gaussians(maps, 0.5)
    assert gaussians.count == pixels + Q * G
    torch.testing.assert_close(gaussians.means[pixels:], a.means[0], atol=0, rtol=0)  # after the pixels
    assert maps_to_gaussians(maps, 0.0).count == views * 64 * 64 + Q * G


def test_anchors_follow_the_expression_and_repeat_exactly(anchored: Avat3r) -> None:
    x = make_inputs(ANCHORED, 2)
    with torch.no_grad():
        a, b, c = (anchored(x, expression(s)).anchors for s in (0, 0, 1))
    for f in ANCHOR_FIELDS:
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    for f in ("means", "scales", "opacities", "sh"):
        assert float((getattr(a, f) - getattr(c, f)).abs().max()) > 1e-6, f


def test_view_order_does_not_change_the_anchors(anchored: Avat3r) -> None:
    x, e = make_inputs(ANCHORED, 4, seed=5), expression(2)
    with torch.no_grad():
        a, b = anchored(x, e).anchors, anchored(x.select_views([2, 0, 3, 1]), e).anchors
    for f in ANCHOR_FIELDS:
        torch.testing.assert_close(getattr(b, f), getattr(a, f), atol=2e-5, rtol=1e-5)


def test_anchors_are_fp32_under_autocast(anchored: Avat3r) -> None:
    x, e = make_inputs(ANCHORED, 2), expression(0)
    with torch.no_grad():
        ref = anchored(x, e).anchors
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = anchored(x, e).anchors
    assert all(getattr(low, f).dtype == torch.float32 for f in ANCHOR_FIELDS)
    # The tokens before the anchors are bf16 (8 mantissa bits through every block), and how the
    # last bits round depends on the CPU's bf16 kernels (on AMX CPUs the opacities move by up to
    # 0.013): the bounds allow bf16's error, 1 cm of position and 2% of the opacity range.
    torch.testing.assert_close(low.means, ref.means, atol=1e-2, rtol=0)
    torch.testing.assert_close(low.opacities, ref.opacities, atol=2e-2, rtol=0)


def test_anchors_leave_the_pixel_gaussians_and_older_weights_unchanged(tmp_path: Path) -> None:
    plain = build(get_preset("tiny"))
    assert plain.anchors is None and not any(k.startswith("anchors.") for k in plain.state_dict())
    # Weights without anchors join a model with them: only the anchor tensors are missing, and
    # the pixel Gaussians are the ones the weights made before.
    anchored = build()
    missing = anchored.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("anchors.") for k in missing)
    x, e = make_inputs(ANCHORED, 2), expression(3)
    with torch.no_grad():
        a, b = anchored(x, e), plain(x, e)
    assert b.anchors is None
    for f in MAP_FIELDS:
        torch.testing.assert_close(getattr(a, f), getattr(b, f), atol=1e-6, rtol=0)
    # A config.json written before the option existed loads with anchors off, same outputs.
    folder = save_model(plain, tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    assert config["anchor_gaussians"] == 0
    for key in ("anchor_gaussians", "anchor_children", "anchor_layers"):
        del config[key]
    (folder / "config.json").write_text(json.dumps(config))
    loaded, _ = load_model(str(folder), Avat3r.from_config_dict)
    assert loaded.anchors is None and loaded.config == plain.config
    with torch.no_grad():
        c = loaded(x, e)
    assert c.anchors is None
    for f in MAP_FIELDS:
        torch.testing.assert_close(getattr(c, f), getattr(b, f), atol=1e-6, rtol=0)
    assert maps_to_gaussians(c).count == maps_to_gaussians(b).count == int((x.confidence >= 0.5).sum())


def test_the_bundled_weights_have_anchors_on_the_template_head() -> None:
    assert get_preset("small").anchor_gaussians > 0 and get_preset("base").anchor_gaussians > 0
    assert get_preset("tiny").anchor_gaussians == 0 and get_preset("paper").anchor_gaussians == 0
    model, _ = load_avat3r(str(default_weights_folder()))
    assert model.config.anchor_gaussians == get_preset("small").anchor_gaussians and model.anchors is not None
    # Placed on the template head by training, not left on the placeholder sphere: the face lies
    # in front of the head frame's centre (-z), the skull reaches further behind it (+z).
    radius = model.anchors.points.norm(dim=1)
    assert float(radius.max() - radius.min()) > 0.03
    assert float(model.anchors.points[:, 2].max()) > 0.08 and float(model.anchors.points[:, 2].min()) < -0.06


def test_a_rendered_loss_reaches_every_anchor_parameter() -> None:
    model = build(ANCHORED.replace(sh_degree=1)).train()
    x = make_inputs(model.config, 2)
    maps = model(x, expression(0))
    assert maps.anchors.sh.shape == (1, Q * G, 4, 3)  # the pixels' SH degree, so the sets concatenate
    gaussians = maps_to_gaussians(maps)
    cam = Camera(x.K[0, 0], x.world_to_cam[0, 0], 64, 64)
    image = render(gaussians, cam, torch.ones(3)).image
    target = torch.rand(image.shape, generator=torch.Generator().manual_seed(1))
    (image - target).abs().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n.startswith("anchors.")}
    assert grads and all(g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0 for g in grads.values()), [
        n for n, g in grads.items() if g is None or float(g.abs().sum()) == 0
    ]


def test_save_load_round_trip_keeps_the_anchor_points(anchored: Avat3r, tmp_path: Path) -> None:
    folder = save_model(anchored, tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["anchor_gaussians"] == Q
    loaded, info = load_model(str(folder), Avat3r.from_config_dict)
    sa, sb = anchored.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and "anchors.points" in sb
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(loaded.anchors.points.numpy(), anchor_points(Q))
    assert info.parameters == anchored.num_parameters()
    x = make_inputs(ANCHORED, 1)
    with torch.no_grad():
        a, b = anchored(x, expression(0)).anchors, loaded(x, expression(0)).anchors
    torch.testing.assert_close(b.means, a.means, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="anchor points have shape"):
        loaded.set_anchor_points(torch.zeros(Q + 1, 3))
    with pytest.raises(ValueError, match="no anchor Gaussians"):
        build(get_preset("tiny")).set_anchor_points(torch.zeros(Q, 3))


def test_anchor_points_cover_the_whole_head_evenly() -> None:
    points = anchor_points(512)
    assert points.shape == (512, 3) and points.dtype == np.float32
    anchor_module.anchor_points.cache_clear()
    anchor_module.head_surface_samples.cache_clear()
    np.testing.assert_array_equal(anchor_points(512), points)  # deterministic, not just cached
    cx, cy, cz = SKULL.center
    assert (points[:, 2] > cz + 0.07).sum() >= 30  # the back of the head
    assert (points[:, 1] < cy - 0.1).sum() >= 15  # the crown (y is down)
    assert (points[:, 1] > NECK.center[1] + 0.03).sum() >= 20  # the neck below the jaw
    assert (points[:, 2] < -0.04).sum() >= 15  # and the face
    left, right = (points[:, 0] < -0.01).sum(), (points[:, 0] > 0.01).sum()
    assert abs(int(left) - int(right)) <= 0.1 * (left + right)
    # Evenly: nearest-neighbour spacings agree, and no part of the surface is far from an anchor.
    tp = torch.from_numpy(points.copy()).double()
    d = torch.cdist(tp, tp).fill_diagonal_(math.inf)
    spacing = d.min(dim=1).values
    assert float(spacing.std() / spacing.mean()) < 0.2
    cover = torch.cdist(torch.from_numpy(head_surface_samples().copy()).double(), tp).min(dim=1).values
    assert float(cover.max()) < 1.5 * float(spacing.mean())
    for bad in (0, MAX_ANCHORS + 1):
        with pytest.raises(ValueError, match="anchor points"):
            anchor_points(bad)


def test_config_options_are_validated_and_round_trip() -> None:
    for preset in PRESETS.values():
        assert ModelConfig.from_dict(preset.config.to_dict()) == preset.config
    older = {k: v for k, v in ANCHORED.to_dict().items() if not k.startswith("anchor_")}
    assert ModelConfig.from_dict(older).anchor_gaussians == 0
    for bad, match in (({"anchor_gaussians": -1}, "anchor_gaussians"), ({"anchor_children": 0}, "anchor_children"),
                       ({"anchor_children": 17}, "anchor_children"), ({"anchor_layers": 0}, "anchor_layers")):
        with pytest.raises(ValueError, match=match):
            ANCHORED.replace(**bad)


# -- training and the avatar pipeline ----------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from test_train import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data"), num_subjects=2)


def test_train_places_the_anchors_and_trains_them(dataset: Path, tmp_path: Path) -> None:
    from avat3r_cli.core.runtime import seed_everything
    from test_train import config, read_log
    from avat3r_cli.train.trainer import train

    run = tmp_path / "run"
    result = invoke("train", "--data", dataset, "-o", run, "--anchor-gaussians", 32, "--steps", 2, "--warmup", 1,
                    "--val-subjects", 1, "--validate-every", 0, "--checkpoint-every", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    model, info = load_avat3r(str(run / "model"))
    assert info.config["anchor_gaussians"] == 32 and model.anchors.num_gaussians == 32 * 2
    np.testing.assert_array_equal(model.anchors.points.numpy(), anchor_points(32))
    assert [r["step"] for r in read_log(run)] == [1, 2]
    seed_everything(0)  # the run's seed: its initial weights
    fresh = Avat3r(model.config)
    # Two Adam steps of lr 5e-4 moved the anchors' weights, each by at most about 2 lr.
    for name in ("head.weight", "embedding", "layers.0.attn.q.weight"):
        moved = (fresh.anchors.get_parameter(name) - model.anchors.get_parameter(name)).detach().abs()
        assert 0.0 < float(moved.max()) < 1.5e-3, name
    with pytest.raises(Avat3rError, match="anchor"):
        train(config(dataset, tmp_path / "too-many", anchor_gaussians=MAX_ANCHORS + 1))
    assert not (tmp_path / "too-many").exists()


def test_init_adds_anchors_to_weights_trained_without_them(dataset: Path, tmp_path: Path) -> None:
    from test_train import config, fixed_sample
    from avat3r_cli.train.trainer import train

    base = tmp_path / "base"
    train(config(dataset, base, steps=1))
    run = tmp_path / "anchored"
    train(config(dataset, run, steps=1, lr=0.0, init_from=str(base / "model"), anchor_gaussians=16))
    a, _ = load_avat3r(str(base / "model"))
    b, _ = load_avat3r(str(run / "model"))
    assert a.anchors is None and b.anchors is not None
    np.testing.assert_array_equal(b.anchors.points.numpy(), anchor_points(16))
    sample = fixed_sample(dataset)
    with torch.no_grad():
        ma, mb = a(sample.inputs, sample.expression), b(sample.inputs, sample.expression)
    torch.testing.assert_close(mb.means, ma.means, atol=1e-5, rtol=1e-4)  # the pixels as before
    assert mb.anchors.count == 16 * 2


def test_create_refine_and_animate_carry_the_anchors(anchored: Avat3r, tmp_path: Path) -> None:
    weights = save_model(anchored, tmp_path / "w")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    out = tmp_path / "out"
    result = invoke("create", photo, "-o", out, "--weights", weights, "--no-video", "--refine", 2,
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["anchor_gaussians"] == Q * G
    ply = PlyData.read(str(out / "avatar.ply"))
    assert ply.elements[0].name == "vertex" and [p.name for p in ply.elements[0].properties] == STANDARD_PLY
    avatar = Avatar.load(out / "avatar.ply", device="cpu")
    assert avatar.bundle.residuals is not None
    pixels = int((avatar.bundle.confidence >= avatar.confidence_threshold).sum())
    gaussians = read_ply(out / "avatar.ply")
    assert gaussians.count == report["gaussians"] == pixels + Q * G
    neutral = avatar.neutral()
    # avatar.ply holds the neutral avatar in the viewer frame.
    torch.testing.assert_close(avatar.ply_gaussians(neutral).means, gaussians.means, atol=1e-5, rtol=0)
    # Refinement keeps the anchors as the model predicts them.
    raw = avatar.raw_maps_at(avatar.neutral_code).anchors
    torch.testing.assert_close(neutral.means[pixels:], raw.means[0], atol=0, rtol=0)
    expr = tmp_path / "expr.npy"
    np.save(expr, np.random.default_rng(0).uniform(0.0, 1.0, (2, 52)).astype(np.float32))
    result = invoke("animate", out / "avatar.ply", "--expr", expr, "-o", tmp_path / "anim/", "--ply-dir",
                    tmp_path / "plys", "--size", 16, "--device", "cpu")
    assert result.exit_code == 0, result.output
    frames = [read_ply(p) for p in sorted((tmp_path / "plys").iterdir())]
    assert [f.count for f in frames] == [gaussians.count] * 2
    assert not torch.allclose(frames[0].means[pixels:], frames[1].means[pixels:])  # the anchors animate
