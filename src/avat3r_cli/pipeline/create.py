"""Photos to an avatar folder (what ``avat3r create`` runs).

Stages: read the model's config.json (no tensors) -> preprocess the photos at the model's
resolution (a photo without a face fails here, before the model loads) -> load the model ->
encode the views -> optional test-time refinement -> write ``avatar.ply`` (the model's neutral
expression, in the viewer frame of ``core/frames.py``) and ``avatar.avat3r.safetensors`` ->
``turntable.mp4`` and ``expressions.mp4`` (unless ``video`` is False) -> ``report.json``.

Everything is written into a hidden staging folder *inside* OUT (``io.atomic.staged_folder``),
created before any work so an unwritable OUT fails at once, and moved into OUT only when every
file is complete: a failure, Ctrl-C or SIGTERM leaves OUT as it was (no avatar.ply beside a
stale bundle, no half video), and the renames never cross a file system, even when OUT is a
mount point. Other files already in OUT are kept.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avat3r_cli import __version__
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.runtime import resolve_device
from avat3r_cli.io.atomic import atomic_output, staged_folder
from avat3r_cli.io.ply import write_ply
from avat3r_cli.io.video import VideoInfo, write_video
from avat3r_cli.pipeline.avatar import AVATAR_PLY, Avatar, resolve_weights_spec
from avat3r_cli.pipeline.bundle import AvatarBundle, BundleMetadata, bundle_path_for, save_bundle
from avat3r_cli.pipeline.bundle_checks import gaussian_count
from avat3r_cli.pipeline.create_checks import check_output_folder, check_photo_paths
from avat3r_cli.pipeline.expression_tour import TOUR_FPS, frames_per_expression, tour_frames
from avat3r_cli.pipeline.turntable import render_turntable, validate_turntable_args

REPORT_NAME = "report.json"
TURNTABLE_NAME = "turntable.mp4"
EXPRESSIONS_NAME = "expressions.mp4"
BACKGROUND = "white"
MAX_REFINE = 100_000

StageProgress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``: first with ``done = 0`` when a stage starts."""


def output_names(video: bool) -> list[str]:
    """The files ``create`` writes into OUT."""
    bundle = bundle_path_for(AVATAR_PLY).name
    return [AVATAR_PLY, bundle, *([TURNTABLE_NAME, EXPRESSIONS_NAME] if video else []), REPORT_NAME]


def bundle_from_prepared(prepared: Any, info: Any, confidence_threshold: float) -> AvatarBundle:
    """An ``AvatarBundle`` (no residuals) from ``PreparedPhotos`` and the model's ``ModelInfo``."""
    s = prepared.stacked()
    meta = BundleMetadata(
        model_name=info.name, model_source=info.source, model_sha256=info.sha256,
        resolution=prepared.resolution, confidence_threshold=float(confidence_threshold),
        geometry=prepared.geometry, features=prepared.features, photos=[v.name for v in prepared.views],
    )
    return AvatarBundle(
        images=torch.from_numpy(np.stack([v.image for v in prepared.views])),
        positions=s["positions"].float(), confidence=s["confidence"].float(), K=s["K"].float(),
        world_to_cam=s["world_to_cam"].float(), blendshapes=s["blendshapes"].float(), metadata=meta,
        features=s.get("features"),
    )


def _move_into(staging: Path, output: Path) -> None:
    """Move every staged file into ``output`` (renames within ``output``'s file system: near-instant)."""
    # The report goes last: a reader that sees report.json sees the files it describes.
    names = sorted(p.name for p in staging.iterdir())
    names.sort(key=lambda n: n == REPORT_NAME)
    for name in names:
        os.replace(staging / name, output / name)


def run_create(
    photos: list[str | Path],
    output: str | Path,
    weights: str | None = None,
    refine: int = 0,
    video: bool = True,
    size: int = 256,
    frames: int = 120,
    fps: int = 30,
    device: str = "auto",
    geometry: str | None = None,
    features: str | None = None,
    use_cache: bool = True,
    progress: StageProgress | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Make an avatar from ``photos`` in the folder ``output``; returns the report (also written).

    Args:
        photos: one or more photos of one person (four from different sides work best).
        output: the avatar folder (created; other files in it are kept).
        weights: a weights spec; default ``DEFAULT_WEIGHTS``.
        refine: test-time fitting steps (0 = none).
        video: write the turntable and expression-tour videos.
        size, frames, fps: video side in pixels, turntable frames, frames per second.
        device: ``auto|cpu|cuda[:i]|mps``.
        geometry, features: override the backends the model's config expects.
        use_cache: reuse cached preprocessing results.
        progress: ``progress(stage, done, total)``; notice: one-line messages (licences, warnings).

    Raises:
        Avat3rError: bad arguments, missing weights, no usable photo; OUT is then unchanged.
        OSError: OUT cannot be written, or a write failed (a full disk), naming the file in OUT.
    """
    from avat3r_cli.io.weights import resolve_verified
    from avat3r_cli.pipeline.models import load_avat3r, read_model_config
    from avat3r_cli.pipeline.preprocess import default_cache_dir, prepared_report
    from avat3r_cli.preprocess.photos import prepare_photos
    from avat3r_cli.preprocess.sapiens import check_feature_backend

    start = time.perf_counter()
    output = Path(output)
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE:
        raise Avat3rError(f"--refine must be a whole number in 0..{MAX_REFINE}, got {refine!r}")
    validate_turntable_args(output / TURNTABLE_NAME, frames, size, fps, BACKGROUND, 30.0)
    check_output_folder(output, output_names(video))
    photos = check_photo_paths(photos)
    spec = resolve_weights_spec(weights)
    dev = resolve_device(device)
    say = notice or (lambda line: None)
    timings: dict[str, float] = {}

    def stage(name: str, done: int, total: int) -> None:
        if progress is not None:
            progress(name, done, total)

    with staged_folder(output) as staging:
        # The config is enough to preprocess at the right size: a photo without a face fails
        # before the model's tensors are read.
        t = time.perf_counter()
        resolved = resolve_verified(spec)
        cfg = read_model_config(resolved[0])
        geometry = geometry or cfg.geometry_backend
        if geometry != cfg.geometry_backend:
            say(f"these weights were trained with --geometry {cfg.geometry_backend}; using {geometry} (quality may drop)")
        features = check_feature_backend(cfg.feature_backend, features or cfg.feature_backend)
        timings["read_config"] = time.perf_counter() - t

        t = time.perf_counter()
        stage("Preprocessing", 0, len(photos))
        prepared = prepare_photos(
            photos, cfg.input_size, geometry=geometry, features=features,
            cache_dir=default_cache_dir() if use_cache else None,
            progress=lambda done, total: stage("Preprocessing", done, total), notice=say,
        )
        timings["preprocess"] = time.perf_counter() - t

        t = time.perf_counter()
        stage("Loading model", 0, 1)
        model, info = load_avat3r(spec, dev, resolved=resolved)
        stage("Loading model", 1, 1)
        timings["load_model"] = time.perf_counter() - t

        t = time.perf_counter()
        stage("Encoding", 0, 1)
        bundle = bundle_from_prepared(prepared, info, model.config.confidence_threshold)
        if gaussian_count(bundle.confidence, cfg.confidence_threshold) == 0:  # an empty avatar is no avatar
            raise Avat3rError(
                f"{', '.join(bundle.metadata.photos)}: no pixel reaches the model's confidence threshold "
                f"{cfg.confidence_threshold:g}, so the avatar would have no Gaussians; nothing was written"
            )
        avatar = Avatar(model, info, bundle, dev)
        avatar.encode()
        stage("Encoding", 1, 1)
        timings["encode"] = time.perf_counter() - t

        refine_report = None
        if refine > 0:
            from avat3r_cli.pipeline.refine import refine_avatar

            stage("Refining", 0, refine)
            result = refine_avatar(avatar, refine, progress=lambda done, total: stage("Refining", done, total))
            avatar.set_residuals(result.residuals)
            refine_report = result.to_dict()
            timings["refine"] = result.seconds

        t = time.perf_counter()
        neutral = avatar.neutral()
        ply_path = staging / AVATAR_PLY
        write_ply(ply_path, avatar.ply_gaussians(neutral))
        save_bundle(bundle_path_for(ply_path), avatar.bundle)
        timings["write_avatar"] = time.perf_counter() - t
        videos: dict[str, Any] = {}
        if video:
            videos = _write_videos(avatar, ply_path, staging, size, frames, fps, stage, timings)
        report = {
            "output": str(output),
            "tool_version": __version__,
            "photos": {
                "used": [v.name for v in prepared.views],
                "skipped": [{"photo": p, "reason": why} for p, why in prepared.skipped],
            },
            **{k: v for k, v in prepared_report(prepared).items() if k not in ("skipped",)},
            "model": {
                "name": info.name, "source": info.source, "sha256": info.sha256,
                "parameters": info.parameters, "licence": info.licence,
            },
            "gaussians": neutral.count,
            "anchor_gaussians": cfg.anchor_gaussians * cfg.anchor_children,
            "confidence_threshold": avatar.confidence_threshold,
            "refine": refine_report,
            "files": [*output_names(video)],
            "videos": videos,
            "device": str(dev),
            "timings": {k: round(v, 3) for k, v in timings.items()},
            "seconds": round(time.perf_counter() - start, 3),
        }
        with atomic_output(staging / REPORT_NAME) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _move_into(staging, output)
    return report


def _write_videos(
    avatar: Avatar,
    ply_path: Path,
    staging: Path,
    size: int,
    frames: int,
    fps: int,
    stage: StageProgress,
    timings: dict[str, float],
) -> dict[str, Any]:
    """turntable.mp4 (from the written .ply, as ``avat3r render`` would) and expressions.mp4."""
    from avat3r_cli.pipeline.animate import render_frames, view_cameras
    from avat3r_cli.render.api import parse_background

    t = time.perf_counter()
    turn = render_turntable(
        ply_path, staging / TURNTABLE_NAME, frames=frames, size=size, fps=fps, background=BACKGROUND,
        device=str(avatar.device), progress=lambda done, total: stage("Turntable", done, total),
    )
    timings["turntable"] = time.perf_counter() - t

    t = time.perf_counter()
    tour_fps = min(fps, TOUR_FPS)
    codes, labels = tour_frames(frames_per_expression(tour_fps), avatar.neutral_code)
    cams = view_cameras(avatar.neutral(), len(codes), size, "front")
    tour = write_video(
        staging / EXPRESSIONS_NAME,
        render_frames(avatar, codes, cams, parse_background(BACKGROUND), labels=labels,
                      progress=lambda done, total: stage("Expressions", done, total)),
        fps=tour_fps,
    )
    timings["expressions"] = time.perf_counter() - t
    return {
        "turntable": _video_entry(turn.video),
        "expressions": _video_entry(tour),
    }


def _video_entry(info: VideoInfo) -> dict[str, int]:
    return {"frames": info.frames, "width": info.width, "height": info.height, "fps": info.fps}
