"""Write frame streams to .mp4 / .gif / a PNG folder, and read them back.

Letters: T frames, H/W pixels.

Which output is written is decided by the requested path alone:

- ``*.mp4`` (any case): H.264 (PyAV's libx264), yuv420p, BT.709 limited range, tagged as such,
  ``+faststart``. yuv420p needs even sizes, so an odd height or width is padded by one row /
  column repeating the last one (nothing is cropped); the returned ``VideoInfo`` gives the
  encoded (padded) size.
- ``*.gif``: Pillow, looping forever, one adaptive palette per frame, frame delay
  ``round(1000 / fps)`` ms (GIF stores centiseconds, so 30 fps plays at ~33 fps; browsers slow
  delays under 20 ms down, so keep fps <= 50). Pillow merges identical consecutive frames into
  one longer frame: playback is the same, but a reader may count fewer frames.
- a path with no suffix, or one written with a trailing ``/``: a folder of
  ``frame_00000.png``, ``frame_00001.png``, ... An existing folder is replaced only when it holds
  nothing but such frames, so a typo cannot wipe unrelated files.

Anything else is refused with an ``Avat3rError`` naming the accepted kinds.

Frames are written as they arrive (rendering is slow and a turntable can be long), encoded in a
worker thread while the next frame is produced (``threaded.py``): mp4 and PNG frames are never
held all at once (at most a few are in flight); GIF frames are buffered, palettised (1 byte per pixel),
because the palette writer needs them all. All output goes through ``atomic_output``: an error
or Ctrl-C inside the frame generator leaves nothing under the requested name.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.threaded import consume_in_thread

ACCEPTED_KINDS = "'.mp4' (H.264), '.gif', or a folder for PNG frames (no suffix, or a trailing '/')"
_FRAME_NAME = "frame_{:05d}.png"
FRAME_RE = re.compile(r"^frame_(\d+)\.png$")
_AVCOL_BT709 = 1  # FFmpeg's AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709
_AVCOL_RANGE_MPEG = 1  # limited ("TV") range, what yuv420p H.264 players expect


@dataclass(frozen=True)
class VideoInfo:
    """What ``write_video`` wrote.

    Attributes:
        path: the final output path.
        kind: ``"mp4"``, ``"gif"`` or ``"png"`` (folder of frames).
        frames: number of frames given (a GIF may store fewer, see the module docstring).
        height, width: stored frame size (for mp4 after padding to even).
        fps: frames per second asked for.
    """

    path: Path
    kind: str
    frames: int
    height: int
    width: int
    fps: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the path as a string)."""
        return {"path": str(self.path), "kind": self.kind, "frames": self.frames, "height": self.height,
                "width": self.width, "fps": self.fps}


def video_kind(path: str | Path) -> str:
    """The output kind ``"mp4" | "gif" | "png"`` chosen by ``path`` (see the module docstring).

    Raises ``Avat3rError`` for any other suffix.
    """
    text = str(path)
    if text.endswith(("/", "\\")):
        return "png"
    suffix = Path(text).suffix.lower()
    if suffix == ".mp4":
        return "mp4"
    if suffix == ".gif":
        return "gif"
    if suffix == "":
        return "png"
    raise Avat3rError(f"{path}: unsupported video output '{suffix}'; use {ACCEPTED_KINDS}")


def to_uint8_frame(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """One frame as a contiguous uint8 RGB array ``[H, W, 3]``.

    Accepts uint8 (0..255) or floating (0..1, clamped) data, as numpy or torch, laid out
    ``[H, W, 3]`` or ``[3, H, W]`` (channel-last wins when both dimensions are 3).
    """
    if isinstance(frame, torch.Tensor):
        t = frame.detach().cpu()
        if t.is_floating_point():
            # Round on the torch side so bf16/half tensors need no numpy support.
            t = (t.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        arr = t.numpy()
    else:
        arr = np.asarray(frame)
    if arr.ndim != 3 or (arr.shape[-1] != 3 and arr.shape[0] != 3):
        raise ValueError(f"a video frame must be [H, W, 3] or [3, H, W], got {list(arr.shape)}")
    if arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ValueError(f"a video frame must be uint8 or floating, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray | torch.Tensor],
    fps: int = 30,
    crf: int = 18,
) -> VideoInfo:
    """Write ``frames`` (each ``[H, W, 3]`` or ``[3, H, W]``, see ``to_uint8_frame``) to ``path``.

    The output kind follows ``path`` (module docstring). ``crf`` is the H.264 constant rate
    factor for mp4 (0 lossless .. 51 worst; 18 is visually near-lossless) and is ignored otherwise.
    All frames must have the size of the first. Nothing appears under ``path`` unless every
    frame was written; zero frames is an ``Avat3rError``.

    Returns:
        ``VideoInfo`` with the frame count and stored size.
    """
    kind = video_kind(path)
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise Avat3rError(f"{path}: fps must be a positive integer, got {fps!r}")
    if not 0 <= crf <= 51:
        raise Avat3rError(f"{path}: crf must be in 0..51, got {crf}")
    final = Path(path)
    _check_target(final, kind)

    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise Avat3rError(f"{path}: no frames to write")
    first_arr = to_uint8_frame(first)
    height, width = first_arr.shape[:2]

    def checked() -> Iterator[np.ndarray]:
        yield first_arr
        for index, frame in enumerate(stream, start=1):
            arr = to_uint8_frame(frame)
            if arr.shape[:2] != (height, width):
                raise ValueError(
                    f"frame {index} is {arr.shape[0]}x{arr.shape[1]}, the first was {height}x{width}"
                )
            yield arr

    writer = {"mp4": _write_mp4, "gif": _write_gif, "png": _write_png_folder}[kind]
    with atomic_output(final) as tmp:
        # Encoding runs in a worker thread while the caller's generator renders the next frame.
        count, height, width = consume_in_thread(lambda arrays: writer(tmp, arrays, fps, crf), checked())
    return VideoInfo(path=final, kind=kind, frames=count, height=height, width=width, fps=fps)


def _check_target(final: Path, kind: str) -> None:
    # Checked before rendering starts: failing at the rename would waste the whole render.
    if final.name in ("", ".", ".."):
        raise Avat3rError(f"{final}: not a usable output name; name it, e.g. out/turntable.mp4")
    if kind == "png":
        if final.exists() and not final.is_dir():
            raise Avat3rError(f"{final}: exists and is not a folder; cannot write PNG frames there")
        if final.is_dir():
            strays = [p.name for p in final.iterdir() if not (p.is_file() and FRAME_RE.match(p.name))]
            if strays:
                raise Avat3rError(
                    f"{final}: folder holds files other than frame_*.png (e.g. {strays[0]}); "
                    "refusing to replace it"
                )
    elif final.is_dir():
        raise Avat3rError(f"{final}: is a folder; cannot write a .{kind} file there")


def _write_mp4(tmp: Path, frames: Iterator[np.ndarray], fps: int, crf: int) -> tuple[int, int, int]:
    import av  # heavy; only the video paths need it
    from av.video.reformatter import ColorRange, Colorspace

    first = _pad_even(next(frames))
    height, width = first.shape[:2]
    # The temp name keeps ".mp4" but the format is given anyway so it never depends on the name.
    container = av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf)}
        # Convert and tag as BT.709 so players and our reader agree on the colours (untagged,
        # players guess BT.601 or BT.709 by frame size and saturated colours shift visibly).
        ctx = stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _AVCOL_BT709
        ctx.color_range = _AVCOL_RANGE_MPEG
        count = 0
        for arr in _chain_first(first, frames):
            frame = av.VideoFrame.from_ndarray(_pad_even(arr), format="rgb24")
            yuv = frame.reformat(
                format="yuv420p", src_colorspace=Colorspace.ITU709, dst_colorspace=Colorspace.ITU709,
                src_color_range=ColorRange.JPEG, dst_color_range=ColorRange.MPEG,
            )
            yuv.pts = count
            container.mux(stream.encode(yuv))
            count += 1
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    except BaseException:
        # Close so the file handle is released before atomic_output deletes it, without letting
        # a close error replace the original exception (or a KeyboardInterrupt).
        with contextlib.suppress(Exception):
            container.close()
        raise
    container.close()
    return count, height, width


def _write_gif(tmp: Path, frames: Iterator[np.ndarray], fps: int, crf: int) -> tuple[int, int, int]:
    from PIL import Image

    # Palettise on arrival: 1 byte per pixel instead of 3 while buffering.
    images = [Image.fromarray(arr, mode="RGB").quantize(colors=256) for arr in frames]
    width, height = images[0].size
    images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:],
        duration=round(1000 / fps), loop=0, disposal=1,
    )
    return len(images), height, width


def _write_png_folder(
    tmp: Path, frames: Iterator[np.ndarray], fps: int, crf: int
) -> tuple[int, int, int]:
    from PIL import Image

    tmp.mkdir(parents=True)
    count, height, width = 0, 0, 0
    for arr in frames:
        height, width = arr.shape[:2]
        Image.fromarray(arr, mode="RGB").save(tmp / _FRAME_NAME.format(count), format="PNG")
        count += 1
    return count, height, width


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """Pad ``[H, W, 3]`` to even H and W by repeating the last row / column."""
    pad_h, pad_w = arr.shape[0] % 2, arr.shape[1] % 2
    if not (pad_h or pad_w):
        return arr
    return np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
