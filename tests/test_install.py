"""The installed tool: bundled assets found as package data, verified wherever they are loaded
from, help pages, progress off a terminal, and failing fast before the heavy imports.

Building and installing a wheel in a fresh venv is CI's job (``.ci/run``); here the pieces it
relies on are checked in-process.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from skimage import data as skimage_data

from cli_fixtures import invoke, shared_cache, weights  # noqa: F401
from avat3r_cli.cli.app import app
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io import bundled
from avat3r_cli.io.bundled import ASSETS_ENV, assets_dir, restore_hint
from avat3r_cli.io.mediapipe_assets import FACE_LANDMARKER_FILE, face_landmarker_path
from avat3r_cli.io.registry import find_entry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ASSETS = ROOT / "src" / "avat3r_cli" / "assets"


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ASSETS_ENV, raising=False)


@pytest.fixture()
def assets_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled assets, selected with AVAT3R_ASSETS (so a test may damage it)."""
    copy = tmp_path / "assets"
    shutil.copytree(PACKAGE_ASSETS, copy)
    monkeypatch.setenv(ASSETS_ENV, str(copy))
    return copy


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor data: the file still parses
    path.write_bytes(bytes(data))


# --- package data ------------------------------------------------------------------------------


def test_assets_are_package_data_found_through_importlib_resources() -> None:
    assert assets_dir() == Path(str(resources.files("avat3r_cli"))) / "assets"
    assert (assets_dir() / FACE_LANDMARKER_FILE).is_file()
    entry = find_entry("avat3r-small")
    assert entry is not None and entry.folder == assets_dir() / "avat3r-small"
    # Every shipped file matches the package-data globs, so a wheel carries it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["avat3r_cli"]
    shipped = [p.relative_to(ROOT / "src" / "avat3r_cli").as_posix() for p in PACKAGE_ASSETS.rglob("*") if p.is_file()]
    assert {"assets/avat3r-small/model.safetensors", "assets/mediapipe/face_landmarker_v2.task",
            "assets/mediapipe/selfie_segmentation.tflite"} <= set(shipped)
    missed = [f for f in shipped if not any(fnmatch.fnmatchcase(f, pat) and f.count("/") == pat.count("/")
                                            for pat in patterns)]
    assert missed == []


def test_no_module_finds_files_by_walking_up_to_the_source_tree() -> None:
    offenders = [p for p in (ROOT / "src").rglob("*.py") if "parents[3]" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_one_override_moves_every_bundled_file(assets_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert face_landmarker_path() == assets_copy / FACE_LANDMARKER_FILE
    assert find_entry("avat3r-small").folder == assets_copy / "avat3r-small"
    empty = assets_copy.parent / "empty"
    empty.mkdir()
    monkeypatch.setenv(ASSETS_ENV, str(empty))
    with pytest.raises(Avat3rError, match=f"missing.*{ASSETS_ENV}"):
        face_landmarker_path()


# --- the bundled model is verified wherever it is loaded from --------------------------------------


def test_a_flipped_byte_in_the_bundled_model_fails_by_name_and_by_path(assets_copy: Path, tmp_path: Path) -> None:
    folder = assets_copy / "avat3r-small"
    flip_a_byte(folder / "model.safetensors")
    for target in (str(folder), "avat3r-small", None):
        result = invoke("weights", "verify", *([target] if target else []))
        assert result.exit_code == 1, result.output
        assert "FAILED" in result.output and "model.safetensors has sha256" in result.output
        assert f"unset {ASSETS_ENV}" in result.output  # the fix for a damaged override copy
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    result = invoke("create", photo, "-o", tmp_path / "out", "--weights", folder, "--no-video")
    assert result.exit_code == 1 and "model.safetensors has sha256" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_flipped_byte_in_the_face_model_is_caught(assets_copy: Path) -> None:
    flip_a_byte(assets_copy / FACE_LANDMARKER_FILE)
    with pytest.raises(Avat3rError, match="does not match the expected"):
        face_landmarker_path()


def test_restore_advice_is_a_command_that_works(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    tracked = repo / "src" / "model.safetensors"
    tracked.parent.mkdir(parents=True)
    tracked.write_bytes(b"the real bytes")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-q", "-m", "x"], check=True)
    tracked.write_bytes(b"the real bytes, damaged")
    hint = restore_hint(tracked)
    command = hint.split("restore it with: ", 1)[1]
    subprocess.run(shlex.split(command), check=True)
    assert tracked.read_bytes() == b"the real bytes"

    # Outside a checkout: reinstall into this very interpreter's environment.
    outside = tmp_path / "site-packages" / "x.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"")
    advice = restore_hint(outside)
    assert f"{shlex.quote(sys.executable)} -m pip install --force-reinstall --no-deps " in advice


def test_reinstall_command_uses_the_recorded_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wheel = tmp_path / "avat3r_cli-0.1.0-py3-none-any.whl"

    class Dist:
        def read_text(self, name: str) -> str | None:
            return f'{{"url": "{wheel.as_uri()}", "archive_info": {{}}}}' if name == "direct_url.json" else None

    monkeypatch.setattr(bundled.metadata, "distribution", lambda name: Dist())
    assert bundled.reinstall_command().endswith(f"--no-deps {wheel}")


# --- help, progress, failing fast --------------------------------------------------------------


def test_help_shows_no_type_after_flags() -> None:
    root = typer.main.get_command(app)
    paths = [[]] + [[name] for name in root.commands]
    paths += [["weights", sub] for sub in root.commands["weights"].commands]
    for path in paths:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, path
        assert "<bool>" not in result.output, (path, result.output)
    create_help = invoke("create", "--help").output
    assert "<int>" in create_help  # options that take a value keep their type


def test_off_a_terminal_create_prints_one_line_per_stage(weights: Path, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    result = invoke("create", photo, "-o", tmp_path / "out", "--weights", weights, "--size", 16, "--frames", 2,
                    "--fps", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    stages = [line.split("] ", 1)[1] for line in lines if line.startswith("[")]
    from avat3r_cli.pipeline.expression_tour import TOUR_FPS, frames_per_expression, tour_frames

    tour = len(tour_frames(frames_per_expression(min(2, TOUR_FPS)), np.zeros(52, np.float32))[0])
    assert stages == ["Preprocessing", "Loading model", "Encoding", "Refining (50)", "Turntable (2)", f"Expressions ({tour})"]
    assert lines[-1].startswith("Wrote ") and "\x1b" not in result.stderr  # no live bars, no escapes


def test_bad_paths_fail_before_torch_or_mediapipe_load(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from avat3r_cli.cli.app import main\n"
        "sys.argv = ['avat3r', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, sorted(m for m in ('torch', 'mediapipe', 'cv2') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AVAT3R_DEBUG"}
    cases = {
        "missing photo": (["create", str(tmp_path / "nonexistent.jpg"), "-o", str(tmp_path / "o")], "does not exist"),
        "a folder as photo": (["create", str(tmp_path), "-o", str(tmp_path / "o")], "--per-folder"),
        "OUT is a file": (["create", __file__, "-o", __file__], "not a folder"),
    }
    for name, (args, needle) in cases.items():
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
        assert proc.stdout.strip() == "1 []", (name, proc.stdout, proc.stderr)
        assert needle in proc.stderr.strip().splitlines()[-1], (name, proc.stderr)
    assert not (tmp_path / "o").exists()


def test_a_photo_without_a_face_fails_before_the_model_loads(
    weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import avat3r_cli.pipeline.models as models

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the photos were checked")

    monkeypatch.setattr(models, "load_avat3r", no_model)
    photo = tmp_path / "camera.png"
    Image.fromarray(skimage_data.camera()).resize((160, 160)).save(photo)
    result = invoke("create", photo, "-o", tmp_path / "out", "--weights", weights, "--no-cache")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: {photo}: no face found"
    assert not (tmp_path / "out").exists()
