"""Evaluation on held-out prepared subjects: the model and two baselines on the same samples.

Protocol (seeded, identical for every method):

* Per subject ``k`` (in the order given) a generator seeded by (seed, k) draws ``num_samples``
  samples. Inputs: V cameras by farthest-viewpoint sampling from a random first camera; by default
  all at one random timestep t0 (``consistent_inputs``, the situation of a user's photos), else at
  random timesteps as in training. Targets: M cameras *not* among the inputs (novel views; input
  cameras only when too few remain) at one timestep t* != t0 (a novel expression, when T > 1).
* Every image is composited over ``background`` (white): targets with their masks, predictions
  are rendered over it.
* Methods: ``avat3r`` (the model at the target code), ``input-expression`` (the same model and
  inputs at the code of the inputs' timestep t0 -- the first input's, which is every input's
  with consistent inputs: an avatar that keeps the expression it was shown; beating it means
  the target's expression was followed) and ``nearest-view`` (the input view whose camera centre
  is closest to the target camera, composited over the background with its own mask and
  otherwise unchanged: what no 3D reasoning gets you).
* Metrics per target image, averaged over images: ``psnr`` (whole image), ``psnr_fg`` (pixels with
  target mask > 0.5), ``psnr_changed`` (pixels the expression changes: where the target differs
  by > ``CHANGED_THRESHOLD`` from the same camera at the timestep of the first input view, t0;
  averaged over images with at least ``MIN_CHANGED_PIXELS`` such pixels), ``ssim``, ``lpips``
  (null unless the lpips package and its weights are installed), ``iou`` (silhouette: rendered
  alpha > 0.5 against the target's mask > 0.5; for nearest-view its input's mask).
* View groups: every target image is also filed by its camera's yaw relative to the face
  (``eval/view_groups.py``: front |yaw| < 45°, side 45..135°, back > 135°) and PSNR and IoU are
  reported per group and overall.

Expression accuracy (AKD-style) needs MediaPipe on renders: ``render_expression_probe`` renders
the avatar frontally at given codes so a caller can score them.

Letters: V input views, M targets, R crop side, T codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.runtime import resolve_device
from avat3r_cli.data.prepared import PreparedSubject, TrainingSample, prepared_name
from avat3r_cli.data.sampler import SampleSpec, farthest_viewpoints
from avat3r_cli.eval.metrics import changed_pixel_mask, lpips_metric, mean_finite, psnr, silhouette_iou, ssim
from avat3r_cli.eval.view_groups import GroupResult, camera_yaw_deg, group_results, view_group
from avat3r_cli.io.weights import load_model
from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
from avat3r_cli.model.inputs import GaussianMaps, ViewInputs
from avat3r_cli.render.api import render
from avat3r_cli.train.step import composite_targets, render_maps
from avat3r_cli.train.trainer import find_subjects

METHODS = ("avat3r", "input-expression", "nearest-view")
MIN_CHANGED_PIXELS = 16


@dataclass
class MethodResult:
    """One method's averaged metrics (None = not measurable, JSON null).

    Attributes:
        method: ``avat3r``, ``input-expression`` or ``nearest-view``.
        psnr, psnr_fg, psnr_changed, ssim, lpips, iou: means over target images (module docstring).
        num_images: target images scored.
        num_changed_images: images that counted for ``psnr_changed``.
        subjects: the subjects evaluated.
        view_groups: PSNR and IoU per view group (``front``, ``side``, ``back``) and ``all``.
        per_image: one dict per target image (subject, views, yaw, group, metrics), for audits.
    """

    method: str
    psnr: float | None
    psnr_fg: float | None
    psnr_changed: float | None
    ssim: float | None
    lpips: float | None
    num_images: int
    num_changed_images: int
    iou: float | None = None
    subjects: list[str] = field(default_factory=list)
    view_groups: dict[str, GroupResult] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """JSON-able dict; ``per_image`` records only when asked (they are long)."""
        d = asdict(self)
        if not per_image:
            d.pop("per_image")
        return d


def eval_spec(
    rng: np.random.Generator, subject: PreparedSubject, num_inputs: int, num_targets: int, consistent_inputs: bool = True
) -> SampleSpec:
    """One evaluation sample's views (protocol in the module docstring)."""
    t_count, c_count = subject.num_timesteps, subject.num_cameras
    cams = farthest_viewpoints(subject.camera_centers(), num_inputs, int(rng.integers(c_count)))
    while len(cams) < num_inputs:
        cams.append(int(rng.integers(c_count)))
    if consistent_inputs:
        times = [int(rng.integers(t_count))] * num_inputs
    else:
        times = [int(t) for t in rng.choice(t_count, size=num_inputs, replace=t_count < num_inputs)]
    others = [t for t in range(t_count) if t != times[0]] or [times[0]]
    target_time = int(others[int(rng.integers(len(others)))])
    free = [c for c in range(c_count) if c not in cams]
    pool = free if len(free) >= num_targets else list(range(c_count))
    targets = rng.choice(pool, size=num_targets, replace=len(pool) < num_targets)
    return SampleSpec(tuple(times), tuple(cams), target_time, tuple(int(c) for c in targets))


def held_out_samples(
    subject: PreparedSubject, index: int, seed: int, num_samples: int, num_inputs: int, num_targets: int,
    consistent_inputs: bool,
) -> Iterator[tuple[SampleSpec, TrainingSample]]:
    """The ``num_samples`` draws ``evaluate`` scores for the ``index``-th subject: ``(spec, sample)`` pairs.

    Fixed by ``seed`` and the subject's position alone, so every method (and every benchmark
    that calls this) sees the same inputs and targets.
    """
    rng = np.random.default_rng([seed, index])
    for _ in range(num_samples):
        spec = eval_spec(rng, subject, num_inputs, num_targets, consistent_inputs)
        yield spec, subject.sample(spec)


def camera_centers(world_to_cam: torch.Tensor) -> torch.Tensor:
    """``[N, 4, 4]`` -> ``[N, 3]`` camera centres."""
    rot, trans = world_to_cam[:, :3, :3].float(), world_to_cam[:, :3, 3].float()
    return -(rot.transpose(1, 2) @ trans[..., None])[..., 0]


def nearest_input_views(sample: TrainingSample) -> torch.Tensor:
    """``[M]`` index of the input view whose camera centre is closest to each target camera's."""
    inputs = camera_centers(sample.inputs.world_to_cam[0])
    targets = camera_centers(sample.target_world_to_cam)
    return torch.cdist(targets, inputs).argmin(dim=1)


def nearest_view_prediction(sample: TrainingSample, input_masks: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The nearest-view baseline ``[M, 3, R, R]``: nearest input image over ``background`` by its mask.

    Args:
        sample: the evaluation sample.
        input_masks: ``[V, 1, R, R]`` the input views' masks.
        background: ``[3]``.
    """
    idx = nearest_input_views(sample)
    return composite_targets(sample.inputs.images[0][idx], input_masks[idx], background)


def _score(pred: torch.Tensor, alpha: torch.Tensor, target: torch.Tensor, fg: torch.Tensor, changed: torch.Tensor,
           lpips_fn) -> list[dict]:
    whole, fg_psnr, ch_psnr, s = psnr(pred, target), psnr(pred, target, fg), psnr(pred, target, changed), ssim(pred, target)
    iou = silhouette_iou(alpha, fg)
    lp = lpips_fn(pred, target) if lpips_fn is not None else None
    counts = changed.flatten(1).sum(dim=1)
    rows = []
    for i in range(pred.shape[0]):
        enough = int(counts[i]) >= MIN_CHANGED_PIXELS
        rows.append({
            "psnr": float(whole[i]), "psnr_fg": float(fg_psnr[i]),
            "psnr_changed": float(ch_psnr[i]) if enough else None, "ssim": float(s[i]),
            "lpips": None if lp is None else float(lp[i]), "iou": float(iou[i]), "changed_pixels": int(counts[i]),
        })
    return rows


def _resolve_model(weights: str | Path | nn.Module, device: torch.device) -> tuple[nn.Module, Path | None]:
    if isinstance(weights, nn.Module):
        return weights.to(device).eval(), None
    # io.weights directly: scoring prepared subjects needs nothing from the photo pipeline.
    model, info = load_model(str(weights), Avat3r.from_config_dict, device=device)
    return model.eval(), Path(info.folder)


def _default_subjects(data_dir: Path, model_folder: Path | None, resolution: int, geometry: str) -> list[str]:
    """The run's held-out subjects (RUN/split.json beside RUN/model) when known, else every subject."""
    if model_folder is not None:
        split = model_folder.parent / "split.json"
        if split.is_file():
            val = json.loads(split.read_text()).get("val") or []
            if val:
                return list(val)
    return find_subjects(data_dir, resolution, geometry)


@torch.no_grad()
def evaluate(
    weights: str | Path | nn.Module,
    data_dir: str | Path,
    subjects: list[str] | None = None,
    num_samples: int = 4,
    seed: int = 0,
    baselines: bool = True,
    device: str | torch.device = "auto",
    num_inputs: int = 4,
    num_targets: int = 4,
    consistent_inputs: bool = True,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    target_resolution: int | None = None,
) -> list[MethodResult]:
    """Score the model (and the baselines) on held-out subjects.

    Args:
        weights: a model folder / weights spec, or an ``Avat3r`` already built.
        data_dir: the dataset folder with prepared subjects at the model's resolution and geometry.
        subjects: which subjects; default: the run's held-out ones (RUN/split.json next to a
            RUN/model folder), else every prepared subject.
        num_samples: samples per subject (M targets each).
        seed: fixes every sample.
        baselines: also score ``input-expression`` and ``nearest-view``.
        device: ``auto|cpu|cuda[:i]|mps``.
        num_inputs, num_targets: V and M.
        consistent_inputs: all inputs at one timestep (default) or at random timesteps.
        background: RGB in 0..1 for targets and predictions.
        target_resolution: side of the target images (default the model's input size R). Another
            side S reads the targets, and the nearest-view baseline's images, from the subjects'
            files prepared at S (``prepare-data DATA --resolution S``; the same crops, so the
            cameras agree), while the model still reads its inputs at R and renders at S.

    Returns:
        One ``MethodResult`` per method, ``avat3r`` first.
    """
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model, folder = _resolve_model(weights, dev)
    config = model.config
    res, geometry = config.input_size, config.geometry_backend
    data_dir = Path(data_dir)
    names = list(subjects) if subjects else _default_subjects(data_dir, folder, res, geometry)
    bg = torch.tensor(background, dtype=torch.float32)
    lpips_fn = lpips_metric(dev)
    methods = METHODS if baselines else METHODS[:1]
    rows: dict[str, list[dict]] = {m: [] for m in methods}
    target_res = target_resolution or res
    for k, name in enumerate(names):
        subject = PreparedSubject(data_dir / name / prepared_name(res, geometry))
        at_target = subject if target_res == res else PreparedSubject(data_dir / name / prepared_name(target_res, geometry))
        for spec, sample in held_out_samples(subject, k, seed, num_samples, num_inputs, num_targets, consistent_inputs):
            seen = sample if at_target is subject else at_target.sample(spec)  # targets (and inputs) at S
            target = composite_targets(seen.target_images, seen.target_masks, bg)
            t0 = spec.input_timesteps[0]
            ref = at_target.views([t0] * len(spec.target_cameras), list(spec.target_cameras))
            changed = changed_pixel_mask(target, composite_targets(ref["images"], ref["masks"], bg))
            preds = _predict(model, sample, seen, at_target, spec, bg, dev, methods)
            yaws = camera_yaw_deg(sample.target_world_to_cam)
            for method, (pred, alpha) in preds.items():
                scores = _score(pred, alpha, target, seen.target_masks, changed, lpips_fn)
                for cam, yaw, row in zip(spec.target_cameras, yaws, scores):
                    rows[method].append({
                        "subject": name, "input_timesteps": list(spec.input_timesteps),
                        "input_cameras": list(spec.input_cameras), "target_timestep": spec.target_timestep,
                        "target_camera": int(cam), "yaw_deg": round(float(yaw), 2), "view_group": view_group(yaw),
                        **row,
                    })
    return [_aggregate(m, rows[m], names) for m in methods]


def render_with_alpha(
    maps: GaussianMaps, K: torch.Tensor, world_to_cam: torch.Tensor, size: tuple[int, int], background: torch.Tensor,
    confidence_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch element 0 of ``maps`` from M cameras: images ``[M, 3, H, W]`` (clamped) and alphas ``[M, 1, H, W]``, CPU.

    Args:
        maps: ``GaussianMaps`` with B >= 1.
        K: ``[M, 3, 3]``; world_to_cam ``[M, 4, 4]``.
        size: (H, W); background ``[3]``; confidence_threshold: tau for ``maps_to_gaussians``.
    """
    gaussians = maps_to_gaussians(maps, confidence_threshold)
    h, w = size
    if gaussians.count == 0:  # nothing above tau: the background, and no silhouette
        m = K.shape[0]
        return background.float()[None, :, None, None].expand(m, 3, h, w).clone(), torch.zeros(m, 1, h, w)
    images, alphas = [], []
    for k, w2c in zip(K, world_to_cam):
        out = render(gaussians, Camera(k.float(), w2c.float(), h, w), background)
        images.append(out.image.clamp(0, 1).cpu())
        alphas.append(out.alpha.clamp(0, 1).cpu())
    return torch.stack(images), torch.stack(alphas)


def _predict(model: nn.Module, sample: TrainingSample, seen: TrainingSample, subject: PreparedSubject,
             spec: SampleSpec, bg: torch.Tensor, dev: torch.device,
             methods: tuple[str, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``method -> (images [M, 3, S, S], alphas [M, 1, S, S])`` on CPU.

    ``sample`` gives the model its inputs (at R); ``seen`` (and ``subject``, its file) the target
    cameras and images at S and the nearest-view baseline's images; both are the same when S = R.
    """
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    enc = model.encode_views(sample.inputs.to(dev))
    size = tuple(seen.target_images.shape[-2:])
    K, w2c = seen.target_K.to(dev), seen.target_world_to_cam.to(dev)
    tau = model.config.confidence_threshold
    # input-expression: the code of the inputs' timestep t0 (the first input's).
    codes = {"avat3r": sample.expression.to(dev), "input-expression": sample.input_expressions[:1].to(dev)}
    for method in methods:
        if method in codes:
            maps = model.decode(enc, codes[method])
            out[method] = render_with_alpha(maps, K, w2c, size, bg, tau)
    if "nearest-view" in methods:
        masks = subject.views(list(spec.input_timesteps), list(spec.input_cameras))["masks"]
        out["nearest-view"] = (nearest_view_prediction(seen, masks, bg), masks[nearest_input_views(seen)])
    return out


def _aggregate(method: str, rows: list[dict], subjects: list[str]) -> MethodResult:
    def mean(key: str) -> float | None:
        return mean_finite([r[key] for r in rows])

    return MethodResult(
        method=method, psnr=mean("psnr"), psnr_fg=mean("psnr_fg"), psnr_changed=mean("psnr_changed"),
        ssim=mean("ssim"), lpips=mean("lpips"), num_images=len(rows),
        num_changed_images=sum(r["psnr_changed"] is not None for r in rows), iou=mean("iou"),
        subjects=list(subjects), view_groups=group_results(rows), per_image=rows,
    )


def frontal_camera(subject: PreparedSubject) -> int:
    """The camera most aligned with the rig's mean viewing direction from the head centre.

    Capture rigs cover the front hemisphere, so their mean direction is the face's front; for a
    full ring (mean near zero) this falls back to camera 0.
    """
    centers = subject.camera_centers()
    dirs = centers / (np.linalg.norm(centers, axis=1, keepdims=True) + 1e-12)
    mean = dirs.mean(axis=0)
    if np.linalg.norm(mean) < 1e-3:
        return 0
    return int(np.argmax(dirs @ mean))


@torch.no_grad()
def render_expression_probe(
    model: Avat3r,
    subject: PreparedSubject,
    codes: torch.Tensor,
    camera: int | None = None,
    input_timestep: int = 0,
    num_inputs: int = 4,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Render the avatar of ``subject`` frontally at each expression code (for an expression scorer).

    The avatar is built once from ``num_inputs`` spread-out views at ``input_timestep`` (the first
    being the frontal camera), then decoded per code.

    Args:
        model: the Avat3r model (eval mode).
        subject: a prepared subject.
        codes: ``[T, 52]`` expression codes.
        camera: which camera renders (default ``frontal_camera(subject)``).

    Returns:
        ``[T, 3, R, R]`` images in 0..1 (CPU).
    """
    dev = next(model.parameters()).device
    cam = frontal_camera(subject) if camera is None else camera
    cams = farthest_viewpoints(subject.camera_centers(), num_inputs, cam)
    views = subject.views([input_timestep] * len(cams), cams)
    inputs = ViewInputs(views["images"][None], views["positions"][None], views["confidence"][None],
                        subject.K[cams][None], subject.world_to_cam[cams][None])
    enc = model.encode_views(inputs.to(dev))
    bg = torch.tensor(background, dtype=torch.float32)
    r = subject.resolution
    K, w2c = subject.K[[cam]].to(dev), subject.world_to_cam[[cam]].to(dev)
    images = []
    for code in codes.float():
        maps = model.decode(enc, code[None].to(dev))
        images.append(render_maps(maps, K, w2c, (r, r), bg, model.config.confidence_threshold)[0][0].clamp(0, 1).cpu())
    return torch.stack(images)
