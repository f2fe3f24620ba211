"""The training loop: prepared subjects in, a model folder out (``avat3r train``).

Recipe (``docs/background.md`` §2, ``docs/paper.md`` §5): one sample per step and
rank (V inputs at random timesteps, M targets at one timestep), a random background colour per
step, loss 0.8·L1 + 0.2·(1 − SSIM), Adam (lr 5e-4, betas 0.9/0.95), linear warm-up then cosine
decay to 10 %, gradient clipping at 1.0.

Run folder (RUN):

    RUN/split.json               train / held-out subjects (held-out = last ``num_subjects_val``)
    RUN/log.jsonl                one JSON object per step: step, loss, l1, ssim, lr, seconds, ...
    RUN/checkpoint.safetensors   model + optimizer + step + RNG state, tensors + JSON metadata
    RUN/val/step_XXXXXX.png      input views | target | prediction of one held-out sample
    RUN/model/                   config.json + model.safetensors (``save_model``) at the end

Exact resume: every step draws its sample and background from a generator seeded by
(seed, rank, step), so a resumed run sees the same data as an uninterrupted one, and the
checkpoint restores weights and Adam moments bit for bit.

Distributed: launched by ``torchrun`` (WORLD_SIZE > 1) each rank trains on its own samples inside
DistributedDataParallel (gloo on CPU, nccl on CUDA); only rank 0 writes files and reports.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.runtime import resolve_device, seed_everything
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from avat3r_cli.train.emphasis import changed_pixel_weights, expression_statistics
from avat3r_cli.train.initial_model import initial_weights, model_config, place_anchors
from avat3r_cli.train.losses import photometric_loss
from avat3r_cli.train.neutral import training_neutral
from avat3r_cli.train.subjects import SubjectPool, find_subjects, split_subjects
from avat3r_cli.train.step import render_sample
from avat3r_cli.train.validation import validate

Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainConfig:
    """Everything a training run needs (recorded in the checkpoint).

    ``steps`` is the total the schedule is built for; ``stop_after`` ends this call earlier (for
    time-boxed sessions: resume later with the same ``steps``). With ``resume`` the model config
    and the subject split come from RUN (``preset`` and ``num_subjects_val`` are not used); a
    different ``steps`` reshapes the rest of the schedule. ``init_from`` (weights: a folder,
    registry name or hub id) starts a new run of ``preset`` from those weights instead of a
    random initialisation (fine-tuning; see ``_initial_weights``); ``reinit`` names submodules
    of those weights to draw afresh (e.g. ``transformer.expression``); ``changed_weight`` is the
    expression emphasis of ``train/emphasis.py``; ``expression_mixing`` and ``expression_field``
    turn on the preset's expression channel mixing (``model/modulation.py``) and expression field
    (``model/expression_field.py``); both start as the identity, so they can be added to
    ``init_from`` weights trained without them. ``anchor_gaussians`` replaces the preset's number
    of anchor queries (0 = none; ``model/anchor_gaussians.py``); a run that builds anchors the
    weights lack places them on the template head (``preprocess/anchor_points.py``).
    ``min_inputs`` (default: ``num_inputs``) draws each sample's number of input views uniformly
    from ``min_inputs..num_inputs``, so one model learns avatars from one photo up to several.
    """

    data_dir: Path
    output_dir: Path
    preset: str = "tiny"
    steps: int = 1000
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    num_inputs: int = 4
    min_inputs: int | None = None
    num_targets: int = 2
    seed: int = 0
    checkpoint_every: int = 500
    validate_every: int = 500
    device: str = "auto"
    resume: bool = False
    geometry: str = "template"
    consistent_inputs: bool = False
    bf16: bool = True  # autocast, on CUDA only
    num_subjects_val: int = 2
    stop_after: int | None = None
    changed_weight: float = 0.0
    init_from: str | None = None
    reinit: tuple[str, ...] = ()
    expression_mixing: bool = False
    expression_field: bool = False
    anchor_gaussians: int | None = None
    gaussian_upsample: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data_dir"], d["output_dir"] = str(self.data_dir), str(self.output_dir)
        return d


@dataclass
class TrainResult:
    """What a ``train`` call did (rank 0's view)."""

    run_dir: Path
    model_dir: Path
    start_step: int
    end_step: int
    last_loss: float | None
    seconds: float
    train_subjects: list[str] = field(default_factory=list)
    val_subjects: list[str] = field(default_factory=list)
    world_size: int = 1
    device: str = "cpu"

    @property
    def seconds_per_step(self) -> float | None:
        done = self.end_step - self.start_step
        return self.seconds / done if done else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"], d["model_dir"] = str(self.run_dir), str(self.model_dir)
        d["seconds_per_step"] = self.seconds_per_step
        return d


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, cosine to min_lr_ratio·lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    progress = min(1.0, (step - cfg.warmup) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


# -- distributed -----------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _setup(cfg: TrainConfig) -> tuple[_Dist, torch.device]:
    """Init torch.distributed when torchrun launched us; the device of this rank."""
    device = resolve_device(cfg.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(torch.distributed.get_rank(), torch.distributed.get_world_size()), device


# -- the loop --------------------------------------------------------------------------------


def _prepare_run(cfg: TrainConfig, dist: _Dist, device: torch.device):
    """Model, optimizer, start step, the subject split (from the checkpoint when resuming) and the
    run's ``SubjectPool``."""
    run = Path(cfg.output_dir)
    ckpt = run / CHECKPOINT_FILE
    if cfg.resume:
        if not ckpt.is_file():
            raise Avat3rError(f"{run}: nothing to resume ({CHECKPOINT_FILE} is missing)")
        model, opt_state, start, tensors = load_checkpoint(ckpt, device)
        split = json.loads((run / "split.json").read_text())
        train_subjects, val_subjects = split["train"], split["val"]
    else:
        if ckpt.exists() or (run / "log.jsonl").exists():
            raise Avat3rError(f"{run}: already holds a training run; pass --resume to continue it or pick another folder")
        if cfg.reinit and not cfg.init_from:
            raise Avat3rError("--reinit only applies to weights given with --init")
        seed_everything(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts)
        if cfg.init_from:
            model = initial_weights(cfg, device)
        else:
            model = place_anchors(Avat3r(model_config(cfg))).to(device)
        if model.config.feature_dim:
            raise Avat3rError(f"the model needs {model.config.feature_backend} image features; "
                              "prepared datasets hold none yet (use tiny, small or base)")
        opt_state, start, tensors = None, 0, {}
        subjects = find_subjects(cfg.data_dir, model.config.input_size, cfg.geometry)
        train_subjects, val_subjects = split_subjects(subjects, cfg.num_subjects_val)
    pool = SubjectPool(cfg.data_dir, model.config.input_size, model.config.geometry_backend)
    if not cfg.resume:
        training = [pool.get(s) for s in train_subjects]
        model.set_expression_stats(*expression_statistics(training))
        model.set_neutral_expression(training_neutral(training))
    dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"])
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            doc = {"train": train_subjects, "val": val_subjects, "data_dir": str(cfg.data_dir),
                   "geometry": cfg.geometry, "resolution": model.config.input_size}
            with atomic_output(run / "split.json") as tmp:
                tmp.write_text(json.dumps(doc, indent=2) + "\n")
        _truncate_log(run / "log.jsonl", start)
    return model, optimizer, start, train_subjects, val_subjects, pool


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step``: a resumed run redoes them (so the log matches an uninterrupted one)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    with atomic_output(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


def train(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume) the run in ``cfg.output_dir``; see the module docstring for what is written.

    Args:
        cfg: the run's settings.
        progress: called on rank 0 after every step as ``progress(step, total, record)`` where
            ``record`` is that step's log line (a dict).

    Returns:
        ``TrainResult`` (the same on every rank; only rank 0 wrote files).
    """
    dist, device = _setup(cfg)
    try:
        return _train(cfg, progress, dist, device)
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, progress: Progress | None, dist: _Dist, device: torch.device) -> TrainResult:
    run = Path(cfg.output_dir)
    model, optimizer, start, train_subjects, val_subjects, pool = _prepare_run(cfg, dist, device)
    ddp: torch.nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    model.train()
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    val_subject = val_subjects[0] if val_subjects else train_subjects[0]
    last_loss, t_run, log = None, time.perf_counter(), run / "log.jsonl"
    saved_at = start
    for step in range(start, end):
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([cfg.seed, dist.rank, step])
        sample, subject, spec = pool.draw(rng, train_subjects, cfg)
        background = torch.from_numpy(rng.random(3)).float()
        out = render_sample(ddp, sample, background, device, autocast=cfg.bf16)
        weights = changed_pixel_weights(pool.get(subject), spec, out.target, background, cfg.changed_weight)
        parts = photometric_loss(out.pred, out.target, pixel_weights=weights)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # Gradients are identical on every rank after DDP's all-reduce, so all ranks agree to skip.
        skipped = not bool(torch.isfinite(norm))
        if not skipped:
            optimizer.step()
        stats = torch.stack([parts.total.detach(), parts.l1, parts.ssim]).float()
        if dist.enabled:
            torch.distributed.all_reduce(stats)
            stats /= dist.world_size
        record: dict[str, Any] = {
            "step": step + 1, "loss": float(stats[0]), "l1": float(stats[1]), "ssim": float(stats[2]), "lr": lr,
            "grad_norm": float(norm), "gaussians": out.num_gaussians, "subject": subject,
        }
        if skipped:
            record["skipped"] = True
        last_loss = record["loss"]
        done = step + 1
        due = (cfg.validate_every > 0 and done % cfg.validate_every == 0) or done == end
        if due and dist.main:
            record.update(validate(model, pool, val_subject, cfg, device, run / "val" / f"step_{done:06d}.png"))
        record["seconds"] = time.perf_counter() - t0
        if dist.main:
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done != end:
            _checkpoint(run, model, optimizer, done, cfg, dist)
            saved_at = done
        if progress is not None and dist.main:
            progress(done, cfg.steps, record)
    if saved_at != end or start == end:
        _checkpoint(run, model, optimizer, end, cfg, dist)
    if dist.main:
        save_model(model, run / "model")
    dist.barrier()
    return TrainResult(
        run_dir=run, model_dir=run / "model", start_step=start, end_step=end, last_loss=last_loss,
        seconds=time.perf_counter() - t_run, train_subjects=list(train_subjects), val_subjects=list(val_subjects),
        world_size=dist.world_size, device=str(device),
    )


def _checkpoint(run: Path, model, optimizer, step: int, cfg: TrainConfig, dist: _Dist) -> None:
    # Barriers on both sides: nobody runs ahead while rank 0 writes, and every rank knows it is on disk.
    dist.barrier()
    if dist.main:
        save_checkpoint(run / CHECKPOINT_FILE, model, optimizer, step, cfg.to_dict())
    dist.barrier()
