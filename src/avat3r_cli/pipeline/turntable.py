"""Render a turntable video of a ``.ply`` avatar (what ``avat3r render`` runs).

Letters: N Gaussians, T frames, H/W pixels (the output is square, H = W = ``size``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avat3r_cli.core.camera import Camera, fit_orbit_radius, orbit_cameras
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.frames import VIEWER_FRONT, VIEWER_UP
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.core.runtime import resolve_device
from avat3r_cli.io.ply import read_ply
from avat3r_cli.io.video import VideoInfo, video_kind, write_video
from avat3r_cli.pipeline.frame_pool import map_frames
from avat3r_cli.render.api import parse_background, render

# Bounds checked before any work so a typo fails in milliseconds, not after a long render.
MIN_SIZE, MAX_SIZE = 16, 4096
MIN_FPS, MAX_FPS = 1, 240
MIN_FOV, MAX_FOV = 1.0, 170.0
MAX_ELEVATION = 85.0  # at +-90 the camera looks along the up axis and "upright" is undefined

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)``: once with ``done = 0`` when rendering starts, then per frame."""


@dataclass(frozen=True)
class TurntableResult:
    """What ``render_turntable`` wrote.

    Attributes:
        video: the written video (path, kind, frames T, stored size, fps).
        device: the torch device rendered on, e.g. ``"cpu"`` or ``"cuda:0"``.
        gaussians: number of Gaussians N in the avatar.
        orbit_radius: camera distance from the avatar's centre (world units, metres).
        seconds: wall time of the whole call (loading, rendering and encoding).
    """

    video: VideoInfo
    device: str
    gaussians: int
    orbit_radius: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the path as a string)."""
        return {
            **self.video.to_dict(),
            "device": self.device,
            "gaussians": self.gaussians,
            "orbit_radius": self.orbit_radius,
            "seconds": round(self.seconds, 3),
        }


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> None:
    # bool is an int subclass; --frames True is a caller bug, not 1 frame.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Avat3rError(f"{name} must be a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise Avat3rError(f"{name} must be {allowed}, got {value}")


def _check_output_folder(output: str | Path) -> None:
    # atomic_output creates missing parent folders; a *file* on that path would only fail there,
    # with a bare "File exists", after the avatar was loaded.
    for folder in Path(output).parents:
        if folder.exists():
            if not folder.is_dir():
                raise Avat3rError(f"{output}: cannot write there, {folder} is a file, not a folder")
            return


def validate_turntable_args(
    output: str | Path,
    frames: int,
    size: int,
    fps: int,
    background: str,
    fov_deg: float,
    elevation_deg: float = 0.0,
) -> tuple[str, torch.Tensor]:
    """Check every argument that needs no file or device; return (output kind, background ``[3]``).

    Raises:
        Avat3rError: naming the option and the allowed range.
    """
    _check_int("--frames", frames, 1)
    _check_int("--size", size, MIN_SIZE, MAX_SIZE)
    _check_int("--fps", fps, MIN_FPS, MAX_FPS)
    if not (math.isfinite(fov_deg) and MIN_FOV <= fov_deg <= MAX_FOV):
        raise Avat3rError(f"--fov must be between {MIN_FOV:g} and {MAX_FOV:g} degrees, got {fov_deg:g}")
    if not (math.isfinite(elevation_deg) and abs(elevation_deg) <= MAX_ELEVATION):
        raise Avat3rError(
            f"--elevation must be between -{MAX_ELEVATION:g} and {MAX_ELEVATION:g} degrees, got {elevation_deg:g}"
        )
    kind = video_kind(output)
    _check_output_folder(output)
    try:
        bg = parse_background(background)
    except ValueError:
        raise Avat3rError(
            f"--background {background!r} is not a colour: use white, black, gray, #rrggbb or r,g,b in 0..1"
        ) from None
    return kind, bg


def turntable_cameras(
    gaussians: Gaussians,
    frames: int,
    size: int,
    fov_deg: float = 30.0,
    elevation_deg: float = 10.0,
    up: tuple[float, float, float] = VIEWER_UP,
    front: tuple[float, float, float] = VIEWER_FRONT,
) -> tuple[list[Camera], float]:
    """T cameras circling the avatar and the orbit radius.

    ``up`` and ``front`` (from the centre towards the face) say the frame of ``gaussians``: by
    default the viewer frame of .ply files (y up, face towards +z); an ``Avatar``'s own Gaussians
    are in the head frame (``HEAD_UP``, ``HEAD_FRONT`` in ``core/frames.py``). The first camera
    looks at the face; the radius makes the robust bounds of ``means [N, 3]`` fill the square
    ``size x size`` view with a margin.
    """
    up_t, front_t = torch.tensor(up), torch.tensor(front)
    center, radius = fit_orbit_radius(gaussians.means.detach().cpu(), fov_deg, up=up_t)
    cams = orbit_cameras(center, radius, frames, size, size, fov_y_deg=fov_deg, up=up_t, front=front_t,
                         elevation_deg=elevation_deg)
    return cams, radius


def render_turntable(
    avatar_path: str | Path,
    output: str | Path,
    frames: int = 120,
    size: int = 512,
    fps: int = 30,
    background: str = "white",
    device: str = "auto",
    fov_deg: float = 30.0,
    elevation_deg: float = 10.0,
    progress: ProgressCallback | None = None,
) -> TurntableResult:
    """Render a full 360° orbit of the avatar in ``avatar_path`` into ``output``, starting at its face.

    The file is taken to be in the viewer frame (y up, face towards +z), as ``avatar.ply`` is.

    Frames ``[3, H, W]`` are rendered a few at a time (``frame_pool``) and streamed into
    ``write_video``, so memory stays flat and nothing appears under ``output`` unless every
    frame was written.

    Args:
        avatar_path: a 3DGS ``.ply``.
        output: ``.mp4``, ``.gif`` or a folder for PNG frames (no suffix or a trailing ``/``).
        frames: number of frames T (>= 1), one full turn.
        size: square image side in pixels (16..4096).
        fps: frames per second (1..240).
        background: colour name, ``#rrggbb`` or ``r,g,b`` in 0..1.
        device: ``auto|cpu|cuda[:i]|mps``.
        fov_deg: vertical field of view of the orbit cameras.
        elevation_deg: how far above the avatar's equator the orbit runs.
        progress: optional ``progress(done, total)`` callback.

    Raises:
        Avat3rError: bad arguments, an unusable input file or output path, a missing device.
    """
    start = time.perf_counter()
    _, bg = validate_turntable_args(output, frames, size, fps, background, fov_deg, elevation_deg)
    dev = resolve_device(device)
    gaussians = read_ply(avatar_path).to(dev)
    cams, radius = turntable_cameras(gaussians, frames, size, fov_deg, elevation_deg)
    bg = bg.to(dev)

    def frame_stream() -> Iterator[torch.Tensor]:
        # A generator: write_video checks the output path before pulling the first frame, and
        # encodes each frame in its own thread while the next ones render.
        if progress is not None:
            progress(0, frames)
        frames_out = map_frames(lambda cam: render(gaussians, cam, bg).image.clamp(0.0, 1.0).cpu(), cams, dev)
        for i, image in enumerate(frames_out):
            yield image
            if progress is not None:
                progress(i + 1, frames)

    info = write_video(output, frame_stream(), fps=fps)
    return TurntableResult(
        video=info,
        device=str(dev),
        gaussians=gaussians.count,
        orbit_radius=float(radius),
        seconds=time.perf_counter() - start,
    )
