"""Expression codes and head motion from a video of a face (what ``avat3r track`` runs).

Letters: T frames, H/W pixels, E = 52 expression dimensions.

Every frame goes through MediaPipe's Face Landmarker in VIDEO mode (it tracks from frame to
frame) with the frame's presentation time in milliseconds. A frame's expression code is the
52 blendshape scores of its largest face, in ``EXPRESSION_NAMES`` order. A frame VIDEO mode finds
no face in is searched again as a still image (whole frame, then square windows, which find
faces too small for the whole-frame detector). Frames where no face is found are filled from the nearest frames that have one: linearly between the two neighbours
(by frame index), or copied from the only neighbour at the start or end of the video.

Files (both ``np.save`` format, no pickles, written atomically):

- ``expr.npy``: float32 ``[T, 52]`` blendshape scores (0..1), one row per decoded frame.
- ``pose.npy`` (optional): float32 ``[T, 4, 4]`` rigid head motion relative to the first frame,
  expressed in the head frame (the avatar's world frame)::

      pose[t] = inverse(head_to_cam[0]) @ head_to_cam[t]

  where ``head_to_cam[t]`` (= ``world_to_cam`` of ``head_pose.solve_camera``) maps MediaPipe's
  canonical head frame (metres; x to the subject's left, y down, z from the face to the back of
  the head, origin inside the head ~7 cm behind the nose tip) into frame t's OpenCV camera.
  ``pose[0]`` is the identity. ``pose[t]`` moves a point ``p`` of the head at frame 0 (head
  frame coordinates) to where that point is at frame t: ``p_t = R_t @ p + t_t`` with
  ``R_t = pose[t, :3, :3]`` (rotation about the head origin, in head axes: a nod is a rotation
  about x) and ``t_t = pose[t, :3, 3]`` (metres, in the head axes of frame 0).

  Applying it to an avatar (whose world frame is this head frame): render frame t with
  ``world_to_cam @ pose[t]`` instead of ``world_to_cam``; or, equivalently, move the Gaussians:
  ``means' = means @ R_t.T + t_t`` and rotate each Gaussian's orientation by ``R_t``. Seen from
  a camera placed like the video's camera at frame 0, the avatar then moves exactly as the head
  in the video. For rotation-only driving use ``R_t`` and drop ``t_t``.

  Translations assume the person's face has the canonical face's size and the default focal
  length (``default_focal_px``, 50 mm full-frame equivalent): the depth component scales with
  both, and it is the noisiest part of the pose. Missing frames are filled like the codes:
  rotations along the shortest arc between the neighbours (slerp, via the axis-angle of the
  relative rotation), translations linearly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.atomic import atomic_output

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(done, total)``: once with ``done = 0`` before the first frame, then per
frame; ``total`` is None when the container does not say how many frames it holds."""

FrameStream = Generator[tuple[np.ndarray, float], None, None]
"""Decoded frames as ``(uint8 [H, W, 3] RGB, presentation time in ms)``."""

# Used for PNG folders (no timing at all) and streams that declare no usable rate.
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class TrackResult:
    """What ``track_video`` found and wrote.

    Attributes:
        video: the input video.
        output: the expression file (``[T, 52]`` float32).
        pose_output: the pose file (``[T, 4, 4]`` float32), or None when not asked for.
        frames: number of frames T.
        filled: how many frames had no face and were filled from their neighbours.
        filled_frames: their indices, ascending.
        redetected: frames VIDEO-mode tracking missed and a still-image search (with windows)
            found; their codes are measured, not filled.
        fps: the video's frame rate (nominal ``DEFAULT_FPS`` for PNG folders).
        height, width: size of the first frame, pixels.
        seconds: wall time of the whole call (decoding, tracking, writing).
        expressions: ``[T, 52]`` float32, as written.
        head_to_cam: ``[T, 4, 4]`` float64 head-frame-to-camera transforms (filled like the codes).
        pose: ``[T, 4, 4]`` float32, as written (computed even without ``pose_output``).
    """

    video: Path
    output: Path
    pose_output: Path | None
    frames: int
    filled: int
    filled_frames: list[int]
    redetected: int
    fps: float
    height: int
    width: int
    seconds: float
    expressions: np.ndarray = field(repr=False)
    head_to_cam: np.ndarray = field(repr=False)
    pose: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable summary (paths as strings; no arrays)."""
        return {
            "video": str(self.video),
            "output": str(self.output),
            "pose_output": None if self.pose_output is None else str(self.pose_output),
            "frames": self.frames,
            "filled": self.filled,
            "filled_frames": self.filled_frames,
            "redetected": self.redetected,
            "fps": round(self.fps, 3),
            "height": self.height,
            "width": self.width,
            "seconds": round(self.seconds, 3),
        }


def _check_output(path: Path, video: Path, what: str) -> None:
    # Checked before decoding: tracking a long video only to fail at the rename wastes minutes.
    if path.suffix.lower() != ".npy":
        raise Avat3rError(f"{path}: the {what} file must end in .npy")
    if path.is_dir():
        raise Avat3rError(f"{path}: is a folder; cannot write the {what} file there")
    if path.resolve() == video.resolve():
        raise Avat3rError(f"{path}: is the input video; choose another {what} file")


def _frames_with_times(video: Path) -> tuple[FrameStream, float, int | None]:
    """``(iterator of (frame uint8 [H, W, 3], time in ms), fps, frame count or None)``.

    Containers FFmpeg reads give each frame's presentation time; PNG folders and GIFs go through
    ``iter_video_frames`` (GIFs composited as displayed) at their nominal rate.
    """
    from avat3r_cli.io.video_read import count_video_frames, iter_video_frames

    if not video.exists():
        raise InputFileError(video, "no such file or folder")
    if video.is_dir() or video.suffix.lower() == ".gif":
        fps = _gif_fps(video) if video.is_file() else DEFAULT_FPS
        frames = iter_video_frames(video)
        return ((f, i * 1000.0 / fps) for i, f in enumerate(frames)), fps, count_video_frames(video)
    return _av_frames_with_times(video)


def _gif_fps(video: Path) -> float:
    from PIL import Image

    try:
        with Image.open(video) as im:
            duration = float(im.info.get("duration") or 0.0)
    except (OSError, ValueError) as exc:
        raise InputFileError(video, f"cannot read GIF: {exc}") from exc
    return 1000.0 / duration if duration > 0 else DEFAULT_FPS


def _av_frames_with_times(video: Path) -> tuple[FrameStream, float, int | None]:
    import av
    from av.error import FFmpegError

    from avat3r_cli.io.video_read import av_error_reason, iter_timed_av_frames

    try:
        with av.open(str(video), mode="r") as probe:
            if not probe.streams.video:
                raise InputFileError(video, "has no video stream")
            stream = probe.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            total = int(stream.frames) if stream.frames and stream.frames > 0 else None
    except FFmpegError as exc:
        raise InputFileError(video, f"cannot open video: {av_error_reason(exc)}") from exc
    fps = float(rate) if rate and float(rate) > 0 else DEFAULT_FPS

    # Decoding opens the file again when iterated: a generator that is never started would
    # otherwise hold it open until garbage collection. track_video repairs any disorder in the
    # times, since MediaPipe's VIDEO mode refuses it.
    return iter_timed_av_frames(video, fallback_fps=fps), fps, total


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill the rows of ``values [T, ...]`` where ``found [T]`` is False from the found rows.

    Linear in the frame index between the nearest found rows on either side; rows before the
    first (after the last) found row copy it. Needs at least one found row.
    """
    found = np.asarray(found, dtype=bool)
    idx = np.flatnonzero(found)
    if idx.size == 0:
        raise ValueError("fill_missing needs at least one found row")
    out = np.array(values, dtype=np.float64, copy=True)
    flat = out.reshape(len(out), -1)
    t = np.arange(len(out))
    for column in range(flat.shape[1]):
        flat[:, column] = np.interp(t, idx, flat[idx, column])
    return out


def _slerp_rotation(ra: np.ndarray, rb: np.ndarray, s: float) -> np.ndarray:
    """Rotation ``[3, 3]`` a fraction ``s`` of the way from ``ra`` to ``rb`` along the shortest arc."""
    rvec = cv2.Rodrigues(ra.T @ rb)[0]
    return ra @ cv2.Rodrigues(rvec * s)[0]


def fill_missing_poses(transforms: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill the rigid transforms ``[T, 4, 4]`` where ``found [T]`` is False.

    Between two found frames: rotation by slerp, translation linearly (both in frame index);
    at the ends: a copy of the nearest found frame.
    """
    found = np.asarray(found, dtype=bool)
    idx = np.flatnonzero(found)
    if idx.size == 0:
        raise ValueError("fill_missing_poses needs at least one found frame")
    out = np.array(transforms, dtype=np.float64, copy=True)
    for t in np.flatnonzero(~found):
        after = int(np.searchsorted(idx, t))
        if after == 0 or after == idx.size:
            out[t] = out[idx[min(after, idx.size - 1)]]
            continue
        a, b = int(idx[after - 1]), int(idx[after])
        s = (t - a) / (b - a)
        out[t] = np.eye(4)
        out[t, :3, :3] = _slerp_rotation(out[a, :3, :3], out[b, :3, :3], s)
        out[t, :3, 3] = (1.0 - s) * out[a, :3, 3] + s * out[b, :3, 3]
    return out


def relative_poses(head_to_cam: np.ndarray) -> np.ndarray:
    """``[T, 4, 4]`` ``inverse(head_to_cam[0]) @ head_to_cam[t]`` (see the module docstring)."""
    first = head_to_cam[0]
    inv = np.eye(4)
    inv[:3, :3] = first[:3, :3].T  # rigid inverse: exact, no drift from a general inverse
    inv[:3, 3] = -first[:3, :3].T @ first[:3, 3]
    rel = inv[None] @ head_to_cam
    rel[0] = np.eye(4)
    return rel


def _write_npy(stack: contextlib.ExitStack, path: Path, array: np.ndarray) -> None:
    """Write ``array`` to a temporary beside ``path``, renamed when ``stack`` closes cleanly."""
    tmp = stack.enter_context(atomic_output(path))
    # A handle, not a name: np.save would append ".npy" to the temporary's name otherwise.
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def track_video(
    video: str | Path,
    output_npy: str | Path,
    pose_npy: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> TrackResult:
    """Track a face through ``video`` and write its expression codes (and head motion).

    Args:
        video: an ``.mp4`` (or any file FFmpeg reads), a ``.gif`` or a folder of ``frame_*.png``.
        output_npy: where to write the float32 ``[T, 52]`` codes.
        pose_npy: where to write the float32 ``[T, 4, 4]`` head motion (module docstring), if given.
        progress: ``progress(done, total)`` callback, see ``ProgressCallback``.

    Raises:
        InputFileError: the video is missing, unreadable, empty, or has no face in any frame.
        Avat3rError: an output path is unusable.
    """
    from avat3r_cli.io.mediapipe_assets import load_canonical_face
    from avat3r_cli.preprocess.face import FaceAnalyzer
    from avat3r_cli.preprocess.head_pose import default_focal_px, solve_camera

    start = time.perf_counter()
    video, output = Path(video), Path(output_npy)
    pose_path = None if pose_npy is None else Path(pose_npy)
    _check_output(output, video, "expression")
    if pose_path is not None:
        _check_output(pose_path, video, "pose")
        if pose_path.resolve() == output.resolve():
            raise Avat3rError(f"{pose_path}: the pose and expression files must differ")
    canonical = load_canonical_face()
    frames, fps, total = _frames_with_times(video)

    codes: list[np.ndarray] = []
    poses: list[np.ndarray] = []
    found: list[bool] = []
    size: tuple[int, int] | None = None
    last_ms = -1
    if progress is not None:
        progress(0, total)
    redetected = 0
    # VIDEO mode runs the face detector on the whole frame squeezed to 128 px, so a face under
    # about a tenth of a wide frame is lost whenever tracking drops it (measured: 87 of 240
    # frames of a rolling head 128 px wide in 1280x720). The still-image analyzer also searches
    # square windows; it runs only on VIDEO mode's misses and is created on the first one.
    still = FaceAnalyzer()
    # closing(frames): an error mid-video releases the decoder now, not at garbage collection.
    with FaceAnalyzer(video=True) as analyzer, contextlib.closing(still), contextlib.closing(frames):
        for index, (image, ms) in enumerate(frames):
            if size is None:
                size = (int(image.shape[0]), int(image.shape[1]))
            # MediaPipe refuses a timestamp that does not increase (rounding at > 1000 fps,
            # streams with broken timestamps): nudge it forward by a millisecond.
            stamp = max(int(round(ms)), last_ms + 1)
            last_ms = stamp
            face = analyzer.detect_frame(image, stamp)
            if face is None:
                face = still.analyze(image)
                redetected += face is not None
            code, pose, ok = np.zeros(52, np.float32), np.eye(4), False
            if face is not None:
                height, width = image.shape[:2]
                try:
                    camera, _ = solve_camera(
                        face.landmarks, (height, width), default_focal_px(height, width), canonical
                    )
                except ValueError:
                    pass  # degenerate landmarks: treat the frame as faceless and fill it
                else:
                    code, pose, ok = face.blendshapes, camera.world_to_cam.double().numpy(), True
            codes.append(code)
            poses.append(pose)
            found.append(ok)
            if progress is not None:
                progress(index + 1, total)

    count = len(found)
    if count == 0:
        raise InputFileError(video, "holds no frames")
    mask = np.array(found)
    if not mask.any():
        raise InputFileError(video, f"no face found in any of {count} frames")
    expressions = fill_missing(np.stack(codes), mask).astype(np.float32)
    head_to_cam = fill_missing_poses(np.stack(poses), mask)
    pose = relative_poses(head_to_cam).astype(np.float32)

    # Both temporaries are written before either is renamed, so a failure while writing (disk
    # full, Ctrl-C) leaves neither file half-written or stale-beside-new.
    with contextlib.ExitStack() as stack:
        _write_npy(stack, output, expressions)
        if pose_path is not None:
            _write_npy(stack, pose_path, pose)

    assert size is not None
    missing = [int(i) for i in np.flatnonzero(~mask)]
    return TrackResult(
        video=video, output=output, pose_output=pose_path, frames=count, filled=len(missing),
        filled_frames=missing, redetected=redetected, fps=fps, height=size[0], width=size[1],
        seconds=time.perf_counter() - start, expressions=expressions, head_to_cam=head_to_cam, pose=pose,
    )
