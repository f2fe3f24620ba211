"""Drive an avatar with expression codes (what ``avat3r animate`` runs), and the shared frame renderer.

Every frame decodes the avatar at its code (the model must run per expression) and renders it;
frames stream into the video writer, so memory stays flat for any T. With ``--ply-dir`` each
frame's Gaussians are also written as a standard .ply. Head poses move the camera inversely
around the still avatar: frame t is seen through ``world_to_cam @ pose[t]`` (``expression_files``).

Letters: T frames, N Gaussians, H = W = size.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.frames import HEAD_FRONT, HEAD_UP
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.core.runtime import resolve_device
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.ply import write_ply
from avat3r_cli.io.video import VideoInfo, to_uint8_frame, write_video
from avat3r_cli.pipeline.avatar import Avatar
from avat3r_cli.pipeline.expression_files import read_expressions, read_poses
from avat3r_cli.pipeline.expression_tour import label_frame
from avat3r_cli.pipeline.frame_pool import map_frames
from avat3r_cli.pipeline.turntable import turntable_cameras, validate_turntable_args
from avat3r_cli.render.api import render

CAMERAS = ("front", "orbit")
FOV_DEG = 30.0
FRONT_ELEVATION_DEG = 5.0  # a touch above the eyes, as a portrait camera sits
ORBIT_ELEVATION_DEG = 10.0
PLY_NAME = "frame_{:05d}.ply"
_PLY_RE = re.compile(r"^frame_\d+\.ply$")

ProgressCallback = Callable[[int, int], None]


@dataclass
class AnimateResult:
    """What ``run_animate`` wrote.

    Attributes:
        video: the written video (path, frames, stored size, fps).
        camera: the view it was rendered from.
        ply_dir: the folder of per-frame .ply files, or None.
        gaussians: N per frame; device: where it ran; seconds: wall time.
        warnings: one-line notes about the inputs (ignored columns, ...).
    """

    video: VideoInfo
    camera: str
    ply_dir: Path | None
    gaussians: int
    device: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.video.to_dict(), "camera": self.camera,
            "ply_dir": None if self.ply_dir is None else str(self.ply_dir),
            "gaussians": self.gaussians, "device": self.device, "seconds": round(self.seconds, 3),
            "warnings": self.warnings,
        }


def view_cameras(
    gaussians: Gaussians, frames: int, size: int, camera: str = "front", fov_deg: float = FOV_DEG
) -> list[Camera]:
    """T cameras framing ``gaussians`` (the neutral avatar, head frame): one fixed frontal view, or one orbit.

    Framed once from the neutral Gaussians, so the camera does not breathe with the expression.
    """
    head = {"up": HEAD_UP, "front": HEAD_FRONT}
    if camera == "front":
        cam = turntable_cameras(gaussians, 1, size, fov_deg, FRONT_ELEVATION_DEG, **head)[0][0]
        return [cam] * frames
    if camera == "orbit":
        return turntable_cameras(gaussians, frames, size, fov_deg, ORBIT_ELEVATION_DEG, **head)[0]
    raise Avat3rError(f"--camera {camera!r} is not one of {', '.join(CAMERAS)}")


def _camera_key(cam: Camera) -> tuple[bytes, bytes, int, int]:
    return cam.K.cpu().numpy().tobytes(), cam.world_to_cam.cpu().numpy().tobytes(), cam.height, cam.width


@dataclass(frozen=True)
class _FrameJob:
    index: int
    code: np.ndarray
    camera: Camera


def render_frames(
    avatar: Avatar,
    codes: np.ndarray,
    cameras: list[Camera],
    background: torch.Tensor,
    poses: np.ndarray | None = None,
    labels: list[str] | None = None,
    ply_dir: Path | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[np.ndarray]:
    """Frames uint8 ``[H, W, 3]`` of ``avatar`` at each code ``[T, 52]``, seen by ``cameras[t]``.

    Frames are decoded and rendered by ``frame_pool.map_frames`` (worker threads on a CPU); a
    (code, camera) pair seen in the last few frames is not decoded or rendered again: the
    expression tour eases out through the codes it eased in by and holds its peaks, so 67 of
    its 108 frames repeat an earlier one exactly.

    Args:
        poses: optional ``[T, 4, 4]`` head motion (the camera moves by its inverse).
        labels: optional text drawn on each frame.
        ply_dir: when given, each frame's Gaussians are written there as ``frame_00000.ply``...,
            in the frame of the avatar's .ply (``Avatar.ply_gaussians``).
        progress: ``progress(done, T)``, first with 0.
    """
    total = len(codes)
    bg = background.to(avatar.device)
    avatar.encode()  # the shared per-avatar cache is filled here, never by two workers at once
    jobs = []
    for t in range(total):
        cam = cameras[t]
        if poses is not None:
            pose = torch.as_tensor(poses[t], dtype=torch.float32, device=cam.world_to_cam.device)
            cam = Camera(cam.K, cam.world_to_cam @ pose, cam.height, cam.width)
        jobs.append(_FrameJob(t, np.asarray(codes[t], dtype=np.float32), cam))

    def frame(job: _FrameJob) -> np.ndarray:
        gaussians = avatar.gaussians_at(job.code)
        if ply_dir is not None:
            write_ply(ply_dir / PLY_NAME.format(job.index), avatar.ply_gaussians(gaussians))
        return to_uint8_frame(render(gaussians, job.camera, bg).image.clamp(0.0, 1.0))

    # Every frame's .ply must be written, so frames are only shared without --ply-dir.
    key = None if ply_dir is not None else (lambda job: (job.code.tobytes(), _camera_key(job.camera)))
    if progress is not None:
        progress(0, total)
    for t, image in enumerate(map_frames(frame, jobs, avatar.device, key=key)):
        yield label_frame(image, labels[t]) if labels is not None else image
        if progress is not None:
            progress(t + 1, total)


def _check_ply_dir(ply_dir: Path) -> None:
    if ply_dir.exists() and not ply_dir.is_dir():
        raise Avat3rError(f"{ply_dir}: exists and is not a folder; cannot write --ply-dir there")
    if ply_dir.is_dir():
        strays = [p.name for p in ply_dir.iterdir() if not (p.is_file() and _PLY_RE.match(p.name))]
        if strays:
            raise Avat3rError(f"{ply_dir}: folder holds files other than frame_*.ply (e.g. {strays[0]}); refusing to replace it")


def _check_distinct(output: Path, inputs: list[Path | None]) -> None:
    # Writing the video over one of the inputs would destroy it before it was fully read.
    target = output.resolve()
    for path in inputs:
        if path is not None and path.resolve() == target:
            raise Avat3rError(f"{output}: is also an input; choose another output")


def run_animate(
    avatar_path: str | Path,
    expressions: str | Path,
    output: str | Path,
    ply_dir: str | Path | None = None,
    fps: int = 30,
    camera: str = "front",
    size: int = 256,
    pose: str | Path | None = None,
    weights: str | None = None,
    device: str = "auto",
    background: str = "white",
    progress: ProgressCallback | None = None,
    warn: Callable[[str], None] | None = None,
) -> AnimateResult:
    """Render ``avatar_path`` driven by the codes in ``expressions`` into ``output``.

    Args:
        avatar_path: ``avatar.ply``, ``avatar.avat3r.safetensors`` or their folder.
        expressions: ``.npy`` ``[T, 52]``, ``.csv`` or ``.json`` (``expression_files``).
        output: ``.mp4``, ``.gif`` or a PNG-frame folder.
        ply_dir: also write one .ply per frame there.
        fps, size, background: as ``render``; camera: ``front`` (fixed) or ``orbit`` (one turn).
        pose: optional ``.npy`` ``[T, 4, 4]`` head motion (``expression_files``).
        weights: the model; default the one the bundle records (must be the same model).
        device: ``auto|cpu|cuda[:i]|mps``.
        warn: called with each one-line warning as soon as it is known.

    Raises:
        Avat3rError: any bad input, before anything is written; nothing is left half-written.
    """
    start = time.perf_counter()
    if camera not in CAMERAS:
        raise Avat3rError(f"--camera {camera!r} is not one of {', '.join(CAMERAS)}")
    _, bg = validate_turntable_args(output, 1, size, fps, background, FOV_DEG)
    ply_folder = Path(ply_dir) if ply_dir is not None else None
    if ply_folder is not None:
        _check_ply_dir(ply_folder)
    _check_distinct(Path(output), [Path(expressions), Path(pose) if pose else None, Path(avatar_path)])
    # Inputs are read before the model is loaded: a bad file fails in milliseconds.
    codes, warnings = read_expressions(expressions)
    poses = None
    if pose is not None:
        poses, pose_warnings = read_poses(pose, frames=len(codes))
        warnings += pose_warnings
    for line in warnings:
        if warn is not None:
            warn(line)
    dev = resolve_device(device)
    avatar = Avatar.load(avatar_path, weights=weights, device=dev)
    neutral = avatar.neutral()
    cams = view_cameras(neutral, len(codes), size, camera)

    def write(folder: Path | None) -> Any:
        if folder is not None:
            folder.mkdir(parents=True)
        frames = render_frames(avatar, codes, cams, bg, poses=poses, ply_dir=folder, progress=progress)
        return write_video(output, frames, fps=fps)

    if ply_folder is None:
        info = write(None)
    else:
        # The .ply folder is renamed into place only after the video is complete, and vice
        # versa a failed video removes the half-written folder: both or neither.
        with atomic_output(ply_folder) as tmp:
            info = write(tmp)
    return AnimateResult(
        video=info, camera=camera,
        ply_dir=ply_folder, gaussians=neutral.count, device=str(dev), seconds=time.perf_counter() - start,
        warnings=warnings,
    )
