"""Training: losses, one step, overfitting one sample, exact resume, the run folder, DDP via torchrun.

The data are tiny prepared subjects rendered from a few hundred Gaussians (a textured head blob
and a red jaw that drops with ``jawOpen``), so targets, masks and position maps are consistent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.core.camera import orbit_cameras
from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.core.gaussians import Gaussians, rgb_to_sh_dc
from avat3r_cli.data.prepared import POSITION_MAPS, PreparedSubject, prepared_name, save_prepared
from avat3r_cli.data.sampler import sample_views
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from avat3r_cli.pipeline.models import load_avat3r
from avat3r_cli.render.api import render
from avat3r_cli.train.losses import photometric_loss, ssim
from avat3r_cli.train.step import render_sample
from avat3r_cli.train.trainer import TrainConfig, lr_at, train

R = 64
SRC = Path(__file__).resolve().parents[1] / "src"


# -- tiny data ---------------------------------------------------------------------------------


def toy_head(seed: int, jaw: float) -> Gaussians:
    """A textured ellipsoid of Gaussians with a red jaw blob lowered by ``jaw`` (0..1)."""
    rng = np.random.default_rng(seed)

    def blob(n: int, center: list[float], radii: list[float]) -> np.ndarray:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return np.asarray(center) + d * np.asarray(radii) * rng.uniform(0.7, 1.0, (n, 1))

    head = blob(300, [0.0, 0.0, 0.0], [0.07, 0.09, 0.08])
    jaw_pts = blob(80, [0.0, 0.06 + 0.05 * jaw, -0.05], [0.035, 0.015, 0.03])  # +y is down (OpenCV)
    pts = np.concatenate([head, jaw_pts])
    col = 0.5 + 0.4 * np.sin(pts * np.array([40.0, 55.0, 70.0]) + rng.uniform(0, 6, 3))
    col[len(head):] = [0.8, 0.2, 0.2]
    n = len(pts)
    return Gaussians(
        means=torch.tensor(pts, dtype=torch.float32),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        scales=torch.full((n, 3), 0.012),
        opacities=torch.full((n,), 0.9),
        sh=rgb_to_sh_dc(torch.tensor(col, dtype=torch.float32))[:, None],
    )


def make_subject(folder: Path, seed: int, timesteps: int = 3, cameras: int = 6, r: int = R) -> Path:
    """A prepared subject: renders of ``toy_head`` from a ring of cameras, depth lifted to positions."""
    cams = orbit_cameras(torch.zeros(3), 0.6, cameras, r, r, fov_y_deg=30.0)
    jaws = np.linspace(0.0, 1.0, timesteps)
    keys = ("images", "masks", "positions", "confidence")
    arrays: dict[str, list] = {k: [] for k in keys}
    v, u = torch.meshgrid(torch.arange(r) + 0.5, torch.arange(r) + 0.5, indexing="ij")
    for jaw in jaws:
        head = toy_head(seed, float(jaw))
        row: dict[str, list] = {k: [] for k in keys}
        for cam in cams:
            out = render(head, cam, (0.0, 0.0, 0.0))
            alpha, depth, K = out.alpha[0].clamp(0, 1), out.depth[0], cam.K
            colour = (out.image / alpha.clamp(min=1e-3)).clamp(0, 1) * (alpha > 1e-3)  # un-premultiplied
            xc = torch.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth, torch.ones_like(depth)])
            world = (cam.cam_to_world @ xc.reshape(4, -1))[:3].reshape(3, r, r)
            a8 = (alpha.numpy() * 255 + 0.5).astype(np.uint8)
            row["images"].append((colour.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
            row["masks"].append(a8)
            row["positions"].append(world.numpy().astype(np.float16))
            row["confidence"].append(a8)
        for k in keys:
            arrays[k].append(np.stack(row[k]))
    expressions = np.zeros((timesteps, 52), np.float32)
    expressions[:, EXPRESSION_INDEX["jawOpen"]] = jaws
    # A per-person offset, as MediaPipe reads on neutral faces: what the recorded neutral code keeps.
    expressions[:, EXPRESSION_INDEX["eyeSquintLeft"]] = 0.3 + 0.1 * seed
    data = {k: np.stack(a) for k, a in arrays.items()}
    data["K"] = np.stack([c.K.numpy() for c in cams]).astype(np.float32)
    data["world_to_cam"] = np.stack([c.world_to_cam.numpy() for c in cams]).astype(np.float32)
    data["expressions"] = expressions
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / prepared_name(r, "template")
    save_prepared(path, data, {"resolution": str(r), "geometry": "template", "position_maps": POSITION_MAPS})
    return path


def make_tiny_dataset(root: Path, num_subjects: int = 3, r: int = R) -> Path:
    """``root`` with subjects subj_0.. (the last one is the held-out subject with 1 val subject)."""
    for i in range(num_subjects):
        make_subject(root / f"subj_{i}", seed=i, r=r)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


def fixed_sample(dataset: Path):
    subject = PreparedSubject(dataset / "subj_0" / prepared_name(R, "template"))
    spec = sample_views(np.random.default_rng(0), subject.num_timesteps, subject.camera_centers(), 4, 2)
    return subject.sample(spec)


def config(dataset: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data_dir=dataset, output_dir=out, preset="tiny", steps=4, warmup=2, checkpoint_every=0,
                validate_every=0, num_subjects_val=1, device="cpu")
    return TrainConfig(**{**base, **kw})


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# -- losses ------------------------------------------------------------------------------------


def test_ssim_is_one_for_identical_images_and_falls_with_noise():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    values = [float(ssim(x, (x + s * torch.randn(x.shape, generator=gen)).clamp(0, 1))) for s in (0.02, 0.1, 0.3)]
    assert values[0] < 1.0 - 1e-3 and values[0] > values[1] > values[2]
    assert ssim(x, x, reduction="none").shape == (2,)


def test_photometric_loss_is_weighted_l1_and_ssim():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 24, 24, generator=gen), torch.rand(2, 3, 24, 24, generator=gen)
    parts = photometric_loss(x, y)
    assert torch.isfinite(parts.total) and parts.perceptual is None
    expected = 0.8 * (x - y).abs().mean() + 0.2 * (1 - ssim(x, y))
    assert float(parts.total) == pytest.approx(float(expected), rel=1e-6)
    assert float(photometric_loss(x, x).total) == pytest.approx(0.0, abs=1e-5)
    with_p = photometric_loss(x, y, perceptual=lambda a, b: (a - b).pow(2).mean(), perceptual_weight=0.5)
    assert float(with_p.total) == pytest.approx(float(expected + 0.5 * (x - y).pow(2).mean()), rel=1e-6)


def test_schedule_warms_up_then_decays_to_ten_percent():
    cfg = TrainConfig(data_dir=Path("."), output_dir=Path("."), steps=1000, warmup=100)
    assert lr_at(0, cfg) == pytest.approx(5e-6) and lr_at(99, cfg) == pytest.approx(5e-4)
    assert lr_at(100, cfg) == pytest.approx(5e-4) and lr_at(999, cfg) == pytest.approx(5e-5, rel=1e-3)
    assert lr_at(550, cfg) == pytest.approx(0.5 * (5e-4 + 5e-5), rel=1e-3)


# -- steps -------------------------------------------------------------------------------------


def test_render_sample_composites_targets_over_the_background(dataset):
    torch.manual_seed(0)
    model = Avat3r(get_preset("tiny"))
    sample = fixed_sample(dataset)
    bg = torch.tensor([0.2, 0.4, 0.6])
    out = render_sample(model, sample, bg, "cpu")
    pred, target = out
    assert pred.shape == target.shape == (2, 3, R, R) and out.num_gaussians > 0
    m = sample.target_masks
    torch.testing.assert_close(target, sample.target_images * m + bg[None, :, None, None] * (1 - m))
    corner = target[:, :, 0, 0]  # the toy head never reaches the corners
    torch.testing.assert_close(corner, bg.expand(2, 3))


def test_zero_gaussians_render_the_background_and_still_backpropagate(dataset):
    torch.manual_seed(0)
    model = Avat3r(get_preset("tiny"))
    sample = fixed_sample(dataset)
    sample.inputs.confidence.zero_()  # every pixel below tau
    bg = torch.tensor([0.1, 0.5, 0.9])
    out = render_sample(model, sample, bg, "cpu")
    assert out.num_gaussians == 0
    torch.testing.assert_close(out.pred, bg[None, :, None, None].expand(2, 3, R, R))
    photometric_loss(out.pred, out.target).total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and float(g.abs().max()) == 0.0 for g in grads)


def test_thirty_steps_overfit_one_sample(dataset):
    torch.manual_seed(0)
    model = Avat3r(get_preset("tiny"))
    sample = fixed_sample(dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, betas=(0.9, 0.95))
    bg = torch.tensor([0.3, 0.6, 0.9])
    losses = []
    for _ in range(30):
        pred, target = render_sample(model, sample, bg, "cpu")
        loss = photometric_loss(pred, target).total
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.75 * losses[0], losses  # measured: about 0.5x


# -- runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "full"
    train(config(dataset, run))
    return run


def test_resume_reproduces_the_uninterrupted_losses_exactly(dataset, full_run, tmp_path):
    run = tmp_path / "split_run"
    first = train(config(dataset, run, stop_after=2))
    assert (first.start_step, first.end_step) == (0, 2) and (run / "checkpoint.safetensors").is_file()
    second = train(config(dataset, run, resume=True))
    assert (second.start_step, second.end_step) == (2, 4)
    full, resumed = read_log(full_run), read_log(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]  # bit for bit
    assert [r["lr"] for r in resumed] == [r["lr"] for r in full]
    a, _ = load_avat3r(str(full_run / "model"))
    b, _ = load_avat3r(str(run / "model"))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_run_folder_holds_a_loadable_model_a_log_and_the_split(full_run):
    model, info = load_avat3r(str(full_run / "model"))
    assert isinstance(model, Avat3r) and info.config["geometry_backend"] == "template"
    assert info.config["feature_backend"] == "none" and info.config["image_size"] == R
    log = read_log(full_run)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for r in log:
        assert {"step", "loss", "l1", "ssim", "lr", "seconds"} <= set(r) and np.isfinite(r["loss"])
    assert "val_psnr" in log[-1] and (full_run / "val" / "step_000004.png").is_file()
    split = json.loads((full_run / "split.json").read_text())
    assert split["val"] == ["subj_2"] and split["train"] == ["subj_0", "subj_1"]
    assert {r["subject"] for r in log} <= set(split["train"])
    from PIL import Image

    assert Image.open(full_run / "val" / "step_000004.png").size == (R * 6, R)  # 4 inputs | target | prediction


def test_a_second_run_into_the_same_folder_is_refused(dataset, full_run):
    from avat3r_cli.core.errors import Avat3rError

    with pytest.raises(Avat3rError, match="--resume"):
        train(config(dataset, full_run))


@pytest.mark.slow
def test_torchrun_two_processes_with_gloo(dataset, tmp_path):
    run = tmp_path / "ddp"
    # torchrun's agent leaves a torchelastic_* folder in TMPDIR: keep it inside this test's folder.
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC), "TMPDIR": str(tmp_path / "tmp")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "avat3r_cli.cli.train_cmd", "--data", str(dataset), "-o", str(run), "--steps", "2",
        "--warmup", "1", "--val-subjects", "1", "--device", "cpu", "--targets", "1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in (run / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert [r["step"] for r in read_log(run)] == [1, 2]  # one writer: rank 0
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written leftovers
    load_avat3r(str(run / "model"))


def test_input_count_spans_the_range_only_when_a_minimum_is_set(tmp_path):
    from avat3r_cli.train.subjects import input_count

    fixed = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, num_inputs=3)
    rng = np.random.default_rng(0)
    assert {input_count(rng, fixed) for _ in range(20)} == {3}
    assert rng.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)  # no draw was made
    mixed = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, num_inputs=3, min_inputs=1)
    assert {input_count(rng, mixed) for _ in range(200)} == {1, 2, 3}
