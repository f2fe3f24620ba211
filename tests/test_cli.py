"""cli/: commands, help, the error boundary (exit codes, one-line errors) and light startup.

Most cases run in-process with Typer's CliRunner (fast); the ones about the real process
(``python -m avat3r_cli``, tracebacks, what gets imported) run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from avat3r_cli import __version__
from avat3r_cli.cli.app import app
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.ply import ply_stats, read_ply
from avat3r_cli.io.video_read import read_video_frames

HEAD = Path(__file__).resolve().parents[1] / "examples" / "head.ply"
runner = CliRunner()


def invoke(*args: str, debug: bool = False):
    # None removes the variable, so a developer's own AVAT3R_DEBUG cannot change the results.
    return runner.invoke(app, list(args), env={"AVAT3R_DEBUG": "1" if debug else None})


def run_module(*args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AVAT3R_DEBUG"}
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "200"
    if debug:
        env["AVAT3R_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "avat3r_cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def command_paths(group: typer.Typer | None = None) -> list[list[str]]:
    """Every command path (``[]`` is the root), so commands added later are covered too."""
    root = typer.main.get_command(app if group is None else group)
    paths: list[list[str]] = [[]]

    def walk(cmd, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def assert_one_line_error(stderr: str, *needles: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{stderr}"
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def frame_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- version and help ------------------------------------------------------------------------


def test_version_in_process_and_subprocess() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"avat3r {__version__}"
    proc = run_module("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"avat3r {__version__}"


def test_every_command_is_registered() -> None:
    names = {tuple(p) for p in command_paths()}
    assert {("info",), ("render",)} <= names


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_on_every_command(flag: str) -> None:
    for path in command_paths():
        result = invoke(*path, flag)
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.stdout, path
        assert ("avat3r " + " ".join(path)).strip() in result.stdout, path


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "Usage:" in result.output
    assert "render" in result.output and "info" in result.output


def test_module_entry_uses_program_name() -> None:
    proc = run_module("render", "-h")
    assert proc.returncode == 0
    assert "Usage: avat3r render" in proc.stdout


# --- info ------------------------------------------------------------------------------------


def test_info_json_matches_the_file() -> None:
    result = invoke("info", str(HEAD), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout holds exactly one JSON document
    expected = ply_stats(read_ply(HEAD)).to_dict()
    for key, value in expected.items():
        assert data[key] == pytest.approx(value), key
    assert data["count"] == read_ply(HEAD).count
    assert data["file_bytes"] == HEAD.stat().st_size
    assert data["extent"] == pytest.approx(np.subtract(expected["bounds_max"], expected["bounds_min"]).tolist())


def test_info_table() -> None:
    result = invoke("info", str(HEAD))
    assert result.exit_code == 0, result.output
    g = read_ply(HEAD)
    assert f"{g.count:,}" in result.stdout
    assert "SH degree" in result.stdout and "opacity" in result.stdout and "scale" in result.stdout
    assert result.stderr == ""


# --- render ----------------------------------------------------------------------------------


def test_render_mp4(tmp_path: Path) -> None:
    out = tmp_path / "out" / "turntable.mp4"
    result = invoke("render", str(HEAD), "-o", str(out), "--frames", "3", "--size", "64", "--fps", "12")
    assert result.exit_code == 0, result.output
    frames = read_video_frames(out)
    assert frames.shape == (3, 64, 64, 3)
    # White background at the corners, the head (not white) in the middle of the first frame.
    assert frames[0, :4, :4].min() > 235
    assert frames[0, 24:40, 24:40].mean() < 200
    assert result.stdout == ""  # stdout is for --json only
    assert f"Wrote {out} (3 frames, 64x64, 12 fps)" in result.stderr
    assert frame_files(out.parent) == ["turntable.mp4"]  # no temporary left behind


def test_render_gif_with_json(tmp_path: Path) -> None:
    out = tmp_path / "turntable.gif"
    result = invoke("render", str(HEAD), "-o", str(out), "--frames", "3", "--size", "48", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["kind"] == "gif"
    assert (summary["frames"], summary["height"], summary["width"]) == (3, 48, 48)
    assert summary["gaussians"] == read_ply(HEAD).count
    assert read_video_frames(out).shape == (3, 48, 48, 3)


@pytest.mark.parametrize("suffix", ["", "/"])
def test_render_png_folder_and_background(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / "frames"
    result = invoke(
        "render", str(HEAD), "-o", str(out) + suffix, "--frames", "2", "--size", "32", "--background", "#ff0000"
    )
    assert result.exit_code == 0, result.output
    assert frame_files(out) == ["frame_00000.png", "frame_00001.png"]
    frames = read_video_frames(out)
    assert frames.shape == (2, 32, 32, 3)
    assert frames[:, 0, 0].tolist() == [[255, 0, 0], [255, 0, 0]]  # PNG is lossless
    assert "2 PNG frames, 32x32" in result.stderr


@pytest.mark.parametrize(
    "error, line",
    [
        (Avat3rError("simulated failure in frame 2"), "Error: simulated failure in frame 2"),
        # OS errors (disk full, permissions) are known errors too, led by the file like ours.
        (PermissionError(13, "Permission denied", "/some/dir/x"), "Error: /some/dir/x: Permission denied"),
    ],
)
def test_render_failure_mid_way_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, line: str
) -> None:
    import avat3r_cli.pipeline.turntable as turntable

    real_render = turntable.render
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real_render(*args, **kwargs)

    monkeypatch.setattr(turntable, "render", failing_render)
    out = tmp_path / "turntable.mp4"
    result = invoke("render", str(HEAD), "-o", str(out), "--frames", "20", "--size", "32")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert result.stderr.strip() == line
    # Rendering stops at the failure: only the frames already handed to workers still run.
    from avat3r_cli.pipeline.frame_pool import in_flight

    assert 2 <= len(calls) <= 2 + in_flight(torch.device("cpu"))
    assert list(tmp_path.iterdir()) == []  # neither the output nor a partial temporary


# --- errors ----------------------------------------------------------------------------------


def _not_ply(tmp_path: Path) -> Path:
    path = tmp_path / "notes.ply"
    path.write_text("hello, not a splat\n")
    return path


ERROR_CASES = {
    # name: (args built from tmp_path, substrings the one error line must contain)
    "info missing file": (lambda t: ["info", str(t / "missing.ply")], ["missing.ply", "does not exist"]),
    "render missing file": (
        lambda t: ["render", str(t / "missing.ply"), "-o", str(t / "o.mp4"), "--frames", "1", "--size", "16"],
        ["missing.ply", "does not exist"],
    ),
    "info non-PLY": (lambda t: ["info", str(_not_ply(t))], ["notes.ply", "not a PLY file"]),
    "render non-PLY": (
        lambda t: ["render", str(_not_ply(t)), "-o", str(t / "o.mp4"), "--frames", "1", "--size", "16"],
        ["notes.ply", "not a PLY file"],
    ),
    "bad background": (
        lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--background", "blurple"],
        ["--background", "blurple"],
    ),
    "bad extension": (lambda t: ["render", str(HEAD), "-o", str(t / "o.avi")], ["o.avi", ".avi"]),
    "zero frames": (lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--frames", "0"], ["--frames", "0"]),
    "size too small": (lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--size", "8"], ["--size", "8"]),
    "fps too high": (lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--fps", "1000"], ["--fps"]),
    "bad field of view": (lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--fov", "0"], ["--fov"]),
    "camera above the pole": (
        lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--elevation", "90"], ["--elevation"]
    ),
    "unknown device": (lambda t: ["render", str(HEAD), "-o", str(t / "o.mp4"), "--device", "tpu"], ["--device"]),
    "output under a file": (
        lambda t: ["render", str(HEAD), "-o", str(_not_ply(t) / "o.mp4"), "--frames", "1", "--size", "16"],
        ["o.mp4", "notes.ply", "not a folder"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_known_errors_are_one_line_exit_1(tmp_path: Path, case: str) -> None:
    make_args, needles = ERROR_CASES[case]
    args = make_args(tmp_path)
    before = set(tmp_path.rglob("*"))
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert_one_line_error(result.stderr, *needles)
    assert result.stdout == ""
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even a temporary


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    result = invoke("render", str(HEAD), "-o", str(out), "--device", "cuda")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "cuda", "--device cpu")
    assert not out.exists()


def test_error_in_a_real_process(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ply"
    proc = run_module("info", str(missing))
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, str(missing), "does not exist")
    assert proc.stdout == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ply"
    proc = run_module("info", str(missing), debug=True)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "InputFileError" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "missing.ply" in last
    # In-process too: the boundary reads AVAT3R_DEBUG when the error happens.
    result = invoke("render", str(HEAD), "-o", str(tmp_path / "o.mp4"), "--frames", "0", debug=True)
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["render", str(HEAD), "-o", "x.mp4", "--no-such-option"],
        ["render", str(HEAD), "-o", "x.mp4", "--frames", "many"],
        ["render", str(HEAD)],  # -o is required
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_usage_error_in_a_real_process() -> None:
    proc = run_module("info", "--bogus")
    assert proc.returncode == 2
    assert "--bogus" in proc.stderr and "Traceback" not in proc.stderr


# --- startup stays light ---------------------------------------------------------------------

_IMPORT_PROBE = textwrap.dedent(
    """
    import sys
    from avat3r_cli.cli.app import main
    for args in (["--help"], ["-h"], ["--version"], ["render", "--help"], ["info", "-h"]):
        sys.argv = ["avat3r", *args]
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), (args, exc.code)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "gsplat"))
    print("HEAVY:", ",".join(heavy[:5]))
    """
)


def test_help_and_version_do_not_import_torch_or_gsplat() -> None:
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: avat3r render" in proc.stdout  # the probe really ran the commands' help
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY:", proc.stdout[-500:]


def test_probe_detects_torch() -> None:
    """The probe above can fail: a command that does load torch shows up in sys.modules."""
    probe = _IMPORT_PROBE.replace('(["--help"],', '(["info", "' + str(HEAD).replace("\\", "/") + '", "--json"], ["--help"],')
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch" in proc.stdout.strip().splitlines()[-1]
