"""Read videos back: a folder of ``frame_*.png``, a ``.gif``, or anything FFmpeg decodes.

Letters: T frames, H/W pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.io.video import FRAME_RE


def _png_frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and FRAME_RE.match(p.name)]
    # Sort by number, not name: frame_100000 must follow frame_99999.
    return sorted(files, key=lambda p: int(FRAME_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def iter_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode ``path`` lazily, one ``[H, W, 3]`` uint8 RGB frame at a time.

    ``path`` is a folder of ``frame_*.png`` (in frame-number order), a ``.gif`` (frames
    composited as displayed), or any video file FFmpeg reads (``.mp4``, ``.mov``, ...).
    A missing or unreadable input raises ``InputFileError`` (on the first ``next()``).
    """
    from PIL import Image, ImageSequence

    src = Path(path)
    if not src.exists():
        raise InputFileError(src, "no such file or folder")
    if src.is_dir():
        files = _png_frame_files(src)
        if not files:
            raise InputFileError(src, "folder holds no frame_*.png files")
        for file in files:
            try:
                with Image.open(file) as im:
                    frame = np.asarray(im.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise InputFileError(file, f"cannot read PNG frame: {exc}") from exc
            yield frame
        return
    if src.suffix.lower() == ".gif":
        try:
            with Image.open(src) as im:
                frames = ImageSequence.Iterator(im)
                while True:
                    # Only Pillow's own work sits inside the try, never the consumer's code.
                    frame = next(frames, None)
                    if frame is None:
                        break
                    yield np.asarray(frame.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise InputFileError(src, f"cannot read GIF: {exc}") from exc
        return
    # Frame times are not wanted here, so the fallback rate for untimed frames is immaterial.
    for frame, _ in iter_timed_av_frames(src, fallback_fps=30.0):
        yield frame


def av_error_reason(exc: Exception) -> str:
    """FFmpeg's text without PyAV's "[Errno 1094995529] ...: 'path'" wrapping (the path leads anyway)."""
    return str(getattr(exc, "strerror", None) or exc)


def iter_timed_av_frames(src: str | Path, fallback_fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """Decode a video FFmpeg reads: ``(frame uint8 [H, W, 3], presentation time in ms)`` pairs.

    A frame without a timestamp gets its nominal place ``index / fallback_fps``. Unreadable or
    stream-less files raise ``InputFileError`` on the first ``next()``.
    """
    import av
    from av.error import FFmpegError

    src = Path(src)
    try:
        container = av.open(str(src), mode="r")
    except FFmpegError as exc:
        raise InputFileError(src, f"cannot open video: {av_error_reason(exc)}") from exc
    with container:
        if not container.streams.video:
            raise InputFileError(src, "has no video stream")
        frames = container.decode(video=0)
        index = 0
        while True:
            try:
                frame = next(frames, None)
            except FFmpegError as exc:
                raise InputFileError(src, f"cannot decode video: {av_error_reason(exc)}") from exc
            if frame is None:
                return
            seconds = frame.time if frame.time is not None else index / fallback_fps
            yield frame.to_ndarray(format="rgb24"), 1000.0 * float(seconds)
            index += 1


def read_video_frames(path: str | Path) -> np.ndarray:
    """All frames of ``path`` (see ``iter_video_frames``) as ``[T, H, W, 3]`` uint8."""
    frames = list(iter_video_frames(path))
    if not frames:
        raise InputFileError(path, "holds no frames")
    return np.stack(frames)


def count_video_frames(path: str | Path) -> int:
    """Number of frames T in ``path`` (see ``iter_video_frames`` for the accepted inputs).

    Uses the PNG file count, the GIF frame count or the container's frame count when it has
    one, and decodes otherwise.
    """
    src = Path(path)
    if src.is_dir():
        return len(_png_frame_files(src))
    if src.is_file() and src.suffix.lower() == ".gif":
        from PIL import Image

        try:
            with Image.open(src) as im:
                return int(getattr(im, "n_frames", 1))
        except (OSError, ValueError) as exc:
            raise InputFileError(src, f"cannot read GIF: {exc}") from exc
    if src.is_file():
        import av
        from av.error import FFmpegError

        try:
            with av.open(str(src), mode="r") as container:
                if container.streams.video and container.streams.video[0].frames > 0:
                    return int(container.streams.video[0].frames)
        except FFmpegError as exc:
            raise InputFileError(src, f"cannot open video: {exc}") from exc
    return sum(1 for _ in iter_video_frames(src))
