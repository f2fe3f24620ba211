"""Faults while writing: SIGTERM, a full disk, OUT on another file system, permissions, error names.

Each test makes the fault happen where it would in real use (a signal to a real process, the
write function raising what the OS raises) and checks the promise: one line naming the output
the user asked for, never a hidden ``.partial-`` name, and nothing half-written left behind.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from cli_fixtures import invoke, shared_cache, weights  # noqa: F401
from avat3r_cli.io import atomic
from avat3r_cli.io.atomic import PARTIAL_MARK, atomic_output, staged_folder

HEAD = Path(__file__).resolve().parents[1] / "examples" / "head.ply"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a full disk raises: no file name
SAFETENSORS_ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if PARTIAL_MARK in p.name]


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and "Traceback" not in result.output, result.stderr
    assert PARTIAL_MARK not in line, line  # the user's name for the file, not the staging one
    return line


def create_args(photo: Path, out: Path, weights: Path, *extra: object) -> list[object]:
    return ["create", photo, "-o", out, "--weights", weights, "--no-video", "--device", "cpu", *extra]


# --- SIGTERM ---------------------------------------------------------------------------------

SLOW_SAVE = """
import os, sys, time
import avat3r_cli.io.tensors as tensors

real_save_file = tensors.save_file

def slow_save_file(data, path, metadata=None):
    if ".partial-" not in os.path.basename(os.path.dirname(path)):
        return real_save_file(data, path, metadata=metadata)  # not the avatar's bundle
    # Half a file in the staging folder, then a stall: the moment `timeout` or `docker stop` hits.
    with open(path, "wb") as handle:
        handle.write(b"partial")
    time.sleep(120)

tensors.save_file = slow_save_file
from avat3r_cli.cli.app import main
sys.argv = ["avat3r", *sys.argv[1:]]
main()
"""


def run_until_partial_then_sigterm(args: list[str], root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "slow_avat3r.py"
    script.write_text(SLOW_SAVE)
    env = {k: v for k, v in os.environ.items() if k != "AVAT3R_DEBUG"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen([sys.executable, str(script), *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not any(p.is_file() for p in leftovers(root)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no partial output appeared"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigterm_during_create_removes_staging_and_exits_143(weights: Path, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    args = [str(a) for a in create_args(photo, out, weights, "--no-cache")]
    result = run_until_partial_then_sigterm(args, tmp_path, tmp_path)
    assert result.returncode == 143, result.stderr
    assert "Terminated (SIGTERM)" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "nested").exists()  # folders the run created are gone too


def test_sigterm_during_render_removes_the_partial_folder(tmp_path: Path) -> None:
    out = tmp_path / "frames"  # PNG frames: the hidden folder fills frame by frame
    env = {k: v for k, v in os.environ.items() if k != "AVAT3R_DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "avat3r_cli", "render", str(HEAD), "-o", f"{out}/", "--frames", "100000",
         "--size", "16", "--device", "cpu"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while not any(p.is_file() for p in tmp_path.rglob("frame_*.png")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no frame was written"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    assert list(tmp_path.iterdir()) == []


# --- a full disk -----------------------------------------------------------------------------


def test_disk_full_in_create_names_the_output_file(
    weights: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    import avat3r_cli.io.tensors as tensors

    def full(*args, **kwargs):
        raise SafetensorError(SAFETENSORS_ENOSPC)

    out = tmp_path / "out"
    monkeypatch.setattr(tensors, "save_file", full)
    line = error_line(invoke(*create_args(photo, out, weights, "--no-cache")))
    assert line == f"Error: {out / 'avatar.avat3r.safetensors'}: No space left on device"
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    import plyfile

    def full_ply(self, stream):
        raise ENOSPC

    monkeypatch.setattr(plyfile.PlyData, "write", full_ply)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = error_line(invoke(*create_args(photo, out, weights)))
    assert line == f"Error: {out / 'avatar.ply'}: No space left on device"
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # OUT as it was


def test_disk_full_in_render_names_the_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import avat3r_cli.io.video as video

    def full_writer(tmp, frames, fps, crf):
        next(frames)
        raise ENOSPC

    monkeypatch.setattr(video, "_write_mp4", full_writer)
    out = tmp_path / "turn.mp4"
    line = error_line(invoke("render", HEAD, "-o", out, "--frames", 2, "--size", 16, "--device", "cpu"))
    assert line == f"Error: {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []

    # A writer that names the file it writes (PyAV does) names the temporary: renamed too.
    def eio_writer(tmp, frames, fps, crf):
        next(frames)
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(tmp))

    monkeypatch.setattr(video, "_write_mp4", eio_writer)
    line = error_line(invoke("render", HEAD, "-o", out, "--frames", 2, "--size", 16, "--device", "cpu"))
    assert line == f"Error: {out}: {os.strerror(errno.EIO)}"
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_track_names_the_npy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from avat3r_cli.io.video import write_video

    clip = tmp_path / "in" / "me.mp4"
    write_video(clip, [skimage_data.astronaut()] * 2, fps=2)

    def full_save(*args, **kwargs):
        raise ENOSPC

    monkeypatch.setattr(np, "save", full_save)
    out = tmp_path / "out" / "me_expr.npy"
    line = error_line(invoke("track", clip, "-o", out, "--pose", tmp_path / "out" / "me_pose.npy"))
    assert line == f"Error: {out}: No space left on device"
    assert leftovers(tmp_path) == [] and list((tmp_path / "out").iterdir()) == []


def test_disk_full_in_animate_ply_dir_names_the_frame(
    weights: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plyfile

    avatar = tmp_path / "avatar"
    assert invoke(*create_args(photo, avatar, weights)).exit_code == 0
    codes = tmp_path / "codes.npy"
    np.save(codes, np.zeros((3, 52), np.float32))
    real_write = plyfile.PlyData.write
    written = []

    def full_after_one(self, stream):
        if written:
            raise ENOSPC
        written.append(1)
        real_write(self, stream)

    monkeypatch.setattr(plyfile.PlyData, "write", full_after_one)
    plys, video = tmp_path / "plys", tmp_path / "anim.mp4"
    result = invoke("animate", avatar / "avatar.ply", "--expr", codes, "-o", video, "--ply-dir", plys,
                    "--size", 16, "--device", "cpu")
    line = error_line(result)
    assert line.startswith(f"Error: {plys}{os.sep}frame_") and line.endswith(".ply: No space left on device")
    assert not plys.exists() and not video.exists() and leftovers(tmp_path) == []


# --- OUT on another file system --------------------------------------------------------------


def test_create_into_a_mount_point_renames_only_within_it(
    weights: Path, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT is a mount point: a rename between OUT and anything outside it fails with EXDEV."""
    out = tmp_path / "volume"
    out.mkdir()
    real_replace = os.replace
    renames: list[tuple[str, str]] = []

    def device(path: str | os.PathLike) -> int:
        return 2 if Path(os.path.abspath(path)).is_relative_to(out) else 1

    def replace(src, dst, **kwargs):
        if device(src) != device(dst):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))
        renames.append((str(src), str(dst)))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    result = invoke(*create_args(photo, out, weights))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["avatar.avat3r.safetensors", "avatar.ply", "report.json"]
    moved = {Path(dst).name for _, dst in renames if Path(dst).parent == out}
    assert moved == {"avatar.avat3r.safetensors", "avatar.ply", "report.json"}
    assert leftovers(tmp_path) == []


def test_staging_sits_inside_out_and_an_unwritable_out_fails_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a" / "out"
    with staged_folder(out) as staging:
        assert staging.parent == out and staging.name.startswith(atomic.STAGING_PREFIX)
        (staging / "x.txt").write_text("x")
        os.replace(staging / "x.txt", out / "x.txt")
    assert [p.name for p in out.iterdir()] == ["x.txt"]

    # A failure inside removes the staging folder and the folders it created, and renames the
    # error from the staged path to OUT's.
    fresh = tmp_path / "b" / "out"
    with pytest.raises(OSError) as info, staged_folder(fresh) as staging:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(staging / "avatar.ply"))
    assert info.value.filename == str(fresh / "avatar.ply")
    assert not (tmp_path / "b").exists()

    # Permission denied on OUT: the error names OUT, not the staging folder it tried to make.
    import tempfile

    def denied(prefix=None, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, prefix + "abc"))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(PermissionError) as info, staged_folder(out):
        pass
    assert info.value.filename == str(out)


def test_a_folder_output_that_is_a_mount_point_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "plys"
    folder.mkdir()
    (folder / "keep.ply").write_text("x")
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == folder)
    with pytest.raises(Exception, match="is a mount point"), atomic_output(folder) as tmp:
        tmp.mkdir()
    assert [p.name for p in folder.iterdir()] == ["keep.ply"]  # not emptied by an rmtree that then fails


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_umask_permissions(
    weights: Path, photo: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    out = tmp_path / "out"
    previous = os.umask(umask)
    try:
        result = invoke(*create_args(photo, out, weights))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"avatar.ply": mode, "avatar.avat3r.safetensors": mode, "report.json": mode}
