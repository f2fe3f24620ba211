"""``avat3r animate``: expression files (.npy/.csv/.json), poses, --ply-dir, the avatar pair, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from cli_fixtures import invoke, neutral_code, shared_cache, weights  # noqa: F401
from avat3r_cli.core.errors import InputFileError
from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.core.frames import HEAD_TO_VIEWER
from avat3r_cli.io.ply import read_ply
from avat3r_cli.io.tensors import load_tensors, save_tensors
from avat3r_cli.io.video_read import read_video_frames
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from avat3r_cli.pipeline.avatar import Avatar
from avat3r_cli.pipeline.create import run_create
from avat3r_cli.pipeline.expression_files import read_expressions, read_poses, save_expressions, save_poses

runner = CliRunner()


@pytest.fixture(scope="module")
def avatar(tmp_path_factory, weights: Path) -> Path:
    """An avatar folder made from one real photo (no videos, no cache)."""
    root = tmp_path_factory.mktemp("avatar")
    Image.fromarray(skimage_data.astronaut()).save(root / "astronaut.png")
    run_create([root / "astronaut.png"], root / "out", weights=str(weights), video=False, device="cpu")
    return root / "out"


def codes(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (t, 52)).astype(np.float32)


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_npy_drives_video_and_ply_dir(avatar: Path, tmp_path: Path) -> None:
    expr = tmp_path / "expr.npy"
    save_expressions(expr, codes(3))
    out, plys = tmp_path / "anim.mp4", tmp_path / "plys"
    result = invoke("animate", avatar / "avatar.ply", "--expr", expr, "-o", out, "--ply-dir", plys,
                    "--size", 32, "--fps", 5, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 3 and summary["fps"] == 5
    assert read_video_frames(out).shape == (3, 32, 32, 3)
    files = sorted(p.name for p in plys.iterdir())
    assert files == ["frame_00000.ply", "frame_00001.ply", "frame_00002.ply"]
    neutral = read_ply(avatar / "avatar.ply")
    frames = [read_ply(plys / f) for f in files]
    assert all(g.count == neutral.count == summary["gaussians"] for g in frames)
    # Different codes decode to different Gaussians (the expression reaches the model).
    assert not torch.allclose(frames[0].means, frames[1].means)


def test_neutral_code_frame_is_the_ply(avatar: Path, tmp_path: Path) -> None:
    # Frame 0 at the model's neutral code, frame 1 at the all-zero code: --ply-dir frames are in
    # the .ply's (viewer) frame, and only the neutral one is avatar.ply.
    expr = tmp_path / "codes.npy"
    save_expressions(expr, np.stack([neutral_code().numpy(), np.zeros(52, np.float32)]))
    result = invoke("animate", avatar / "avatar.avat3r.safetensors", "--expr", expr, "-o", tmp_path / "f/",
                    "--ply-dir", tmp_path / "p", "--size", 16, "--device", "cpu")
    assert result.exit_code == 0, result.output
    ply = read_ply(avatar / "avatar.ply")
    neutral, zero = (read_ply(tmp_path / "p" / f"frame_0000{t}.ply") for t in (0, 1))
    torch.testing.assert_close(neutral.means, ply.means, atol=1e-6, rtol=0)
    torch.testing.assert_close(neutral.sh, ply.sh, atol=1e-6, rtol=0)
    assert float((zero.sh - ply.sh).abs().max()) > 1e-3


def test_default_size_is_256_as_create(avatar: Path, tmp_path: Path) -> None:
    expr = tmp_path / "e.npy"
    save_expressions(expr, np.zeros((1, 52)))
    result = invoke("animate", avatar, "--expr", expr, "-o", tmp_path / "d/", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert read_video_frames(tmp_path / "d").shape == (1, 256, 256, 3)


def test_csv_live_link_face_columns(avatar: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "take.csv"
    csv_path.write_text(
        "Timecode,BlendShapeCount,EyeBlinkLeft,JawOpen,MouthSmileLeft,TongueOut,HeadYaw,LeftEyeRoll,Notes\n"
        "00:00:00:01.000,61,0.5,0.25,0.1,0.0,0.3,0.1,x\n"
        "00:00:00:02.000,61,0.0,0.75,0.2,0.0,0.1,0.2,y\n"
    )
    values, warnings = read_expressions(csv_path)
    assert values.shape == (2, 52)
    assert values[0, EXPRESSION_INDEX["eyeBlinkLeft"]] == 0.5 and values[1, EXPRESSION_INDEX["jawOpen"]] == 0.75
    assert values[:, EXPRESSION_INDEX["browInnerUp"]].tolist() == [0.0, 0.0]  # missing -> 0
    # Live Link Face's own extra columns are quiet; a column nobody knows is named; an unused
    # TongueOut (no such channel here) is quiet too.
    ignored = [w for w in warnings if "ignoring" in w]
    assert len(ignored) == 1 and "Notes" in ignored[0], warnings
    assert not any(name in w for w in warnings for name in ("Timecode", "BlendShapeCount", "HeadYaw", "LeftEyeRoll", "TongueOut"))
    out = tmp_path / "a.gif"
    result = invoke("animate", avatar, "--expr", csv_path, "-o", out, "--size", 16, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "Warning" in result.stderr and "Notes" in result.stderr and "Timecode" not in result.stderr
    assert out.is_file()


def test_tongue_out_warns_only_when_used(tmp_path: Path) -> None:
    used = tmp_path / "tongue.csv"
    used.write_text("JawOpen,TongueOut\n0.5,0.0\n0.5,0.4\n")
    values, warnings = read_expressions(used)
    assert values[1, EXPRESSION_INDEX["jawOpen"]] == 0.5
    assert any("TongueOut" in w for w in warnings), warnings
    named = tmp_path / "tongue.json"
    named.write_text(json.dumps([{"jawOpen": 0.5, "TongueOut": 0.0}, {"jawOpen": 0.2, "TongueOut": 0.0}]))
    assert not any("TongueOut" in w for w in read_expressions(named)[1])


def test_the_example_clip_reads_without_warnings() -> None:
    values, warnings = read_expressions(Path(__file__).resolve().parents[1] / "examples" / "expressions.csv")
    assert warnings == []
    assert values.shape == (60, 52) and float(values[:, EXPRESSION_INDEX["jawOpen"]].max()) == pytest.approx(0.8, abs=0.01)


def test_json_forms(avatar: Path, tmp_path: Path) -> None:
    rows = codes(2)
    forms = {
        "list.json": rows.tolist(),
        "frames.json": {"fps": 30, "frames": rows.tolist()},
        "named.json": [{"jawOpen": 0.5}, {"jawOpen": 1.0, "eyeBlinkRight": 0.25}],
        "names.json": {"names": ["jawOpen", "eyeBlinkRight"], "frames": [[0.5, 0.0], [1.0, 0.25]]},
    }
    for name, content in forms.items():
        (tmp_path / name).write_text(json.dumps(content))
    for name in ("list.json", "frames.json"):
        np.testing.assert_allclose(read_expressions(tmp_path / name)[0], rows, atol=1e-6)
    named, _ = read_expressions(tmp_path / "named.json")
    np.testing.assert_array_equal(named, read_expressions(tmp_path / "names.json")[0])
    assert named[1, EXPRESSION_INDEX["jawOpen"]] == 1.0 and named[1, EXPRESSION_INDEX["eyeBlinkRight"]] == 0.25
    result = invoke("animate", avatar, "--expr", tmp_path / "named.json", "-o", tmp_path / "j.mp4", "--size", 16,
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert read_video_frames(tmp_path / "j.mp4").shape[0] == 2


def _pickle_npy(path: Path) -> None:
    np.save(path, np.array([{"jawOpen": 1.0}], dtype=object), allow_pickle=True)


BAD_INPUTS = {
    "shape.npy": (lambda p: np.save(p, np.zeros((3, 51), np.float32)), "[T, 52]"),
    "flat.npy": (lambda p: np.save(p, np.zeros(52, np.float32)), "[T, 52]"),
    "nan.npy": (lambda p: np.save(p, np.where(np.arange(52) == 25, np.nan, 0.0)[None].repeat(2, 0)), "jawOpen"),
    "noframes.npy": (lambda p: np.save(p, np.zeros((0, 52), np.float32)), "no frames"),
    "empty.npy": (lambda p: p.write_bytes(b""), "empty"),
    "garbage.npy": (lambda p: p.write_bytes(b"not numpy"), "not a readable .npy"),
    "pickle.npy": (_pickle_npy, "pickle"),
    "empty.csv": (lambda p: p.write_text(""), "empty"),
    "header.csv": (lambda p: p.write_text("jawOpen,eyeBlinkLeft\n"), "no frames"),
    "unknown.csv": (lambda p: p.write_text("Timecode,Foo\n1,2\n"), "none of its columns"),
    "text.csv": (lambda p: p.write_text("jawOpen\nwide\n"), "line 2"),
    "nan.csv": (lambda p: p.write_text("jawOpen\nnan\n"), "NaN"),
    "bad.json": (lambda p: p.write_text("{"), "not valid JSON"),
    "nan.json": (lambda p: p.write_text("[[" + ", ".join(["NaN"] + ["0"] * 51) + "]]"), "NaN"),
    "short.json": (lambda p: p.write_text("[[0.5, 0.5]]"), "expected 52"),
    "expr.txt": (lambda p: p.write_text("0"), "unsupported"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_expression_files_are_one_line_and_leave_nothing(avatar: Path, tmp_path: Path, name: str) -> None:
    make, needle = BAD_INPUTS[name]
    path = tmp_path / name
    make(path)
    out, plys = tmp_path / "out" / "anim.mp4", tmp_path / "plys"
    result = invoke("animate", avatar / "avatar.ply", "--expr", path, "-o", out, "--ply-dir", plys, "--size", 16)
    assert_one_line_error(result, name, needle)
    assert not out.exists() and not plys.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_pose_moves_the_camera(avatar: Path, tmp_path: Path) -> None:
    expr = tmp_path / "e.npy"
    save_expressions(expr, np.zeros((2, 52)))
    angle = math.radians(20.0)
    turn = np.eye(4, dtype=np.float32)
    turn[:3, :3] = [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    save_poses(tmp_path / "still.npy", np.stack([np.eye(4)] * 2))
    save_poses(tmp_path / "turn.npy", np.stack([np.eye(4), turn]))
    frames = {}
    for name in ("none", "still", "turn"):
        pose = () if name == "none" else ("--pose", tmp_path / f"{name}.npy")
        result = invoke("animate", avatar, "--expr", expr, "-o", tmp_path / f"{name}/", *pose, "--size", 32, "--device", "cpu")
        assert result.exit_code == 0, result.output
        frames[name] = read_video_frames(tmp_path / name).astype(int)
    assert np.array_equal(frames["none"], frames["still"])
    assert np.array_equal(frames["turn"][0], frames["none"][0])
    assert np.abs(frames["turn"][1] - frames["none"][1]).mean() > 1.0

    bad = tmp_path / "bad.npy"
    np.save(bad, np.stack([np.eye(4)] * 3).astype(np.float32))
    assert_one_line_error(invoke("animate", avatar, "--expr", expr, "-o", tmp_path / "x.mp4", "--pose", bad), "3 poses", "2 frames")
    skew = np.stack([np.eye(4)] * 2).astype(np.float32)
    skew[1, 0, 1] = 0.5
    np.save(bad, skew)
    with pytest.raises(InputFileError, match="not a rigid transform"):
        read_poses(bad)
    assert not (tmp_path / "x.mp4").exists()


def test_orbit_camera(avatar: Path, tmp_path: Path) -> None:
    expr = tmp_path / "e.npy"
    save_expressions(expr, np.zeros((4, 52)))
    result = invoke("animate", avatar, "--expr", expr, "-o", tmp_path / "o/", "--camera", "orbit", "--size", 32, "--device", "cpu")
    assert result.exit_code == 0, result.output
    frames = read_video_frames(tmp_path / "o").astype(int)
    assert np.abs(frames[2] - frames[0]).mean() > 1.0  # half a turn later: the back of the head
    assert_one_line_error(invoke("animate", avatar, "--expr", expr, "-o", tmp_path / "c.mp4", "--camera", "side"), "--camera")


def test_each_file_finds_the_other(avatar: Path, tmp_path: Path) -> None:
    expr = tmp_path / "e.npy"
    save_expressions(expr, np.zeros((1, 52)))
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(avatar / "avatar.ply", lone / "avatar.ply")
    result = invoke("animate", lone / "avatar.ply", "--expr", expr, "-o", tmp_path / "a.mp4")
    assert_one_line_error(result, "avatar.avat3r.safetensors")
    # A bundle without its .ply still animates (the .ply is only the neutral export).
    shutil.copy(avatar / "avatar.avat3r.safetensors", tmp_path / "me.avat3r.safetensors")
    result = invoke("animate", tmp_path / "me.avat3r.safetensors", "--expr", expr, "-o", tmp_path / "b.mp4", "--size", 16, "--device", "cpu")
    assert result.exit_code == 0, result.output
    (tmp_path / "me.avat3r.safetensors").write_bytes(b"junk")
    assert_one_line_error(invoke("animate", tmp_path / "me.avat3r.safetensors", "--expr", expr, "-o", tmp_path / "c.mp4"), "me.avat3r.safetensors")
    assert not (tmp_path / "c.mp4").exists()


def _rewrite_metadata(source: Path, target: Path, edit) -> None:
    tensors, header = load_tensors(source)
    meta = json.loads(header["avat3r"])
    edit(meta)
    save_tensors(target, tensors, {**header, "avat3r": json.dumps(meta)})


def test_bundles_record_the_ply_frame_and_older_ones_read_as_the_head_frame(avatar: Path, tmp_path: Path) -> None:
    bundle = avatar / "avatar.avat3r.safetensors"
    new = Avatar.load(bundle, device="cpu")
    assert new.bundle.metadata.ply_from_head == [list(row) for row in HEAD_TO_VIEWER]
    # A bundle written before the frame was recorded: its avatar.ply was in the head frame, and
    # its --ply-dir frames stay there, matching it.
    old_path = tmp_path / "old.avat3r.safetensors"
    _rewrite_metadata(bundle, old_path, lambda meta: meta.pop("ply_from_head"))
    old = Avatar.load(old_path, device="cpu")
    head = old.neutral()
    torch.testing.assert_close(old.ply_gaussians(head).means, head.means, atol=0, rtol=0)
    bad = tmp_path / "bad.avat3r.safetensors"
    _rewrite_metadata(bundle, bad, lambda meta: meta.update(ply_from_head=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(InputFileError, match="bad.avat3r.safetensors.*ply_from_head"):
        Avatar.load(bad, device="cpu")


def test_a_different_model_is_refused(avatar: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    other = save_model(Avat3r(get_preset("tiny")), tmp_path / "other")
    expr = tmp_path / "e.npy"
    save_expressions(expr, np.zeros((1, 52)))
    result = invoke("animate", avatar / "avatar.ply", "--expr", expr, "-o", tmp_path / "a.mp4", "--weights", other, "--device", "cpu")
    assert_one_line_error(result, "this avatar was made with model", "is a different model", str(other))
    assert not (tmp_path / "a.mp4").exists()
