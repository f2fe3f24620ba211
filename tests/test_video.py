"""io/video.py: mp4 / gif / PNG-folder writing, atomicity, and reading back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.video import to_uint8_frame, video_kind, write_video
from avat3r_cli.io.video_read import count_video_frames, read_video_frames

H, W, T = 48, 64, 12


def solid_frames(n: int = T, h: int = H, w: int = W) -> list[np.ndarray]:
    """Distinct solid colours (GIF merges identical consecutive frames, so none repeat)."""
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 226, size=(n, 3))
    return [np.broadcast_to(c.astype(np.uint8), (h, w, 3)).copy() for c in colours]


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("name, kind", [("clip.mp4", "mp4"), ("clip.gif", "gif"), ("frames", "png")])
def test_roundtrip_count_size_and_colours(tmp_path: Path, name: str, kind: str) -> None:
    frames = solid_frames()
    out = tmp_path / name
    info = write_video(out, (f for f in frames), fps=12)
    assert (info.path, info.kind, info.frames, info.fps) == (out, kind, T, 12)
    assert (info.height, info.width) == (H, W)
    back = read_video_frames(out)
    assert back.shape == (T, H, W, 3) and back.dtype == np.uint8
    assert count_video_frames(out) == T
    # mp4 goes through lossy yuv420p; the others are exact for solid colours.
    tol = 3.0 if kind == "mp4" else 0.5
    for want, got in zip(frames, back):
        np.testing.assert_allclose(got.reshape(-1, 3).mean(0), want[0, 0].astype(float), atol=tol)
    assert entries(tmp_path) == [name]  # no temporaries left beside it


def test_mp4_is_h264_yuv420p_at_fps(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    write_video(out, solid_frames(), fps=24)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 24
        assert stream.frames == T


def test_png_folder_layout_and_trailing_slash(tmp_path: Path) -> None:
    out = tmp_path / "turntable.v1"
    info = write_video(f"{out}/", solid_frames(3))
    assert info.kind == "png"
    assert entries(out) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]


def test_gif_loops_with_delay_from_fps(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "clip.gif"
    write_video(out, solid_frames(4), fps=10)
    with Image.open(out) as im:
        assert im.info["loop"] == 0
        assert im.info["duration"] == 100


def test_odd_size_mp4_is_padded_by_repeating_edges(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = np.zeros((H - 1, W - 1, 3), np.uint8)
    frame[:, :, 0] = 40
    # Bands a few pixels wide, because swscale's chroma filters reach past a 2x2 block.
    frame[:, -3:] = (250, 20, 20)  # right band red: the padding column must repeat it
    frame[-3:, :] = (20, 20, 250)  # bottom band blue
    frames = [np.clip(frame.astype(int) + rng.integers(0, 3), 0, 255).astype(np.uint8) for _ in range(3)]
    out = tmp_path / "odd.mp4"
    info = write_video(out, frames, crf=0)  # lossless luma: only chroma subsampling remains
    assert (info.height, info.width) == (H, W)
    back = read_video_frames(out)
    assert back.shape == (3, H, W, 3)
    # Chroma is subsampled 2x2: the added column/row shares its chroma block with the last real
    # one, so only edge repetition (not black or cropping) keeps these strips pure.
    np.testing.assert_allclose(back[:, 4:-8, -2:].mean((0, 1, 2)), [250, 20, 20], atol=6)
    np.testing.assert_allclose(back[:, -2:, 4:-8].mean((0, 1, 2)), [20, 20, 250], atol=6)


def test_odd_size_gif_and_png_keep_size(tmp_path: Path) -> None:
    for name in ("odd.gif", "odd"):
        info = write_video(tmp_path / name, solid_frames(2, 7, 9))
        assert (info.height, info.width) == (7, 9)
        assert read_video_frames(tmp_path / name).shape == (2, 7, 9, 3)


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "frames"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failing_generator_leaves_nothing(tmp_path: Path, name: str, exc: type[BaseException]) -> None:
    def frames() -> Iterator[np.ndarray]:
        yield from solid_frames(3)
        raise exc("render died")

    with pytest.raises(exc, match="render died"):
        write_video(tmp_path / name, frames())
    assert entries(tmp_path) == []


def test_failure_keeps_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    write_video(out, solid_frames(2))
    before = out.read_bytes()

    def frames() -> Iterator[np.ndarray]:
        yield solid_frames(1)[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_video(out, frames())
    assert out.read_bytes() == before
    assert entries(tmp_path) == ["clip.mp4"]


def test_unknown_extension_names_path_and_kinds(tmp_path: Path) -> None:
    out = tmp_path / "clip.avi"
    with pytest.raises(Avat3rError) as err:
        write_video(out, solid_frames(1))
    message = str(err.value)
    assert str(out) in message and ".mp4" in message and ".gif" in message and "PNG" in message
    assert entries(tmp_path) == []


def test_zero_frames_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Avat3rError, match="no frames"):
        write_video(tmp_path / "clip.mp4", iter([]))
    assert entries(tmp_path) == []


def test_mismatched_frame_size_fails_atomically(tmp_path: Path) -> None:
    frames = solid_frames(2) + solid_frames(1, H + 2, W)
    with pytest.raises(ValueError, match="frame 2"):
        write_video(tmp_path / "clip.mp4", frames)
    assert entries(tmp_path) == []


def test_png_folder_refuses_to_replace_unrelated_files(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(Avat3rError, match="notes.txt"):
        write_video(out, solid_frames(2))
    assert entries(out) == ["notes.txt"]


def test_png_folder_replaces_previous_frames(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    write_video(out, solid_frames(5))
    write_video(out, solid_frames(2))
    assert count_video_frames(out) == 2


def test_video_kind_rules() -> None:
    assert video_kind("a/B.MP4") == "mp4"
    assert video_kind("a.gif") == "gif"
    assert video_kind("out/frames") == "png"
    assert video_kind("out/frames.v2/") == "png"
    with pytest.raises(Avat3rError):
        video_kind("a.png")


def test_to_uint8_frame_layouts_and_ranges() -> None:
    hwc = np.zeros((4, 5, 3), np.float32)
    hwc[..., 1] = 0.5
    hwc[0, 0] = (2.0, -1.0, 1.0)  # out of range values are clamped, not wrapped
    want = np.zeros((4, 5, 3), np.uint8)
    want[..., 1] = 128
    want[0, 0] = (255, 0, 255)
    np.testing.assert_array_equal(to_uint8_frame(hwc), want)
    np.testing.assert_array_equal(to_uint8_frame(torch.from_numpy(hwc).permute(2, 0, 1)), want)
    np.testing.assert_array_equal(to_uint8_frame(torch.from_numpy(want)), want)
    with pytest.raises(ValueError):
        to_uint8_frame(np.zeros((4, 5), np.uint8))


def test_reading_missing_or_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputFileError):
        read_video_frames(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(InputFileError):
        read_video_frames(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError):
        read_video_frames(tmp_path / "empty")


def test_output_needs_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Avat3rError, match="name"):
        write_video(".", solid_frames(1))
    assert entries(tmp_path) == []


def test_truncated_mp4_is_an_input_error(tmp_path: Path) -> None:
    good = tmp_path / "clip.mp4"
    write_video(good, solid_frames())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(InputFileError, match="cut.mp4"):
        read_video_frames(cut)
