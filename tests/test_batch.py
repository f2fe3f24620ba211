"""``avat3r create`` in batch: one avatar per subject folder, failures isolated, resumable, sharded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from typer.testing import CliRunner

from avat3r_cli.cli.app import app
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    torch.manual_seed(0)
    save_model(Avat3r(get_preset("tiny")), root / "model")
    (root / "alice").mkdir()
    Image.fromarray(skimage_data.astronaut()).save(root / "alice" / "front.png")
    (root / "bob").mkdir()
    Image.fromarray(skimage_data.camera()).save(root / "bob" / "no_face.png")  # fails: no face
    (root / "carol").mkdir()  # fails: no photos
    return root


def create(setup, *args: str, stdin: str | None = None):
    return runner.invoke(
        app, ["create", *args, "--weights", str(setup / "model"), "--no-video"], input=stdin,
        env={"AVAT3R_CACHE": str(setup / "cache"), "AVAT3R_DEBUG": None},
    )


def test_failed_subjects_do_not_stop_the_others(setup, tmp_path):
    result = create(setup, str(setup / "alice"), str(setup / "bob"), str(setup / "carol"), "--per-folder",
                    "-o", str(tmp_path / "out"), "--json")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    status = {row["name"]: row["status"] for row in lines}
    assert status == {"alice": "ok", "bob": "failed", "carol": "failed"}
    errors = {row["name"]: row.get("error", "") for row in lines}
    assert "no face found" in errors["bob"] and "no photos" in errors["carol"]
    assert (tmp_path / "out" / "alice" / "avatar.ply").is_file()
    assert not (tmp_path / "out" / "bob").exists()  # nothing half-written for a failed subject


def test_skip_existing_resumes_and_list_from_stdin(setup, tmp_path):
    out = tmp_path / "out"
    first = create(setup, str(setup / "alice"), "--per-folder", "-o", str(out))
    assert first.exit_code == 0
    stamp = (out / "alice" / "report.json").stat().st_mtime_ns
    again = create(setup, "--subjects-from", "-", "-o", str(out), "--skip-existing", "--json",
                   stdin=f"# subjects\n{setup / 'alice'}\n\n")
    assert again.exit_code == 0
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "skipped"
    assert (out / "alice" / "report.json").stat().st_mtime_ns == stamp


def test_shards_split_the_list(setup, tmp_path):
    subjects = tmp_path / "list.txt"
    shutil.copytree(setup / "alice", tmp_path / "dave")
    subjects.write_text(f"{setup / 'alice'}\n{tmp_path / 'dave'}\n")
    result = create(setup, "--subjects-from", str(subjects), "-o", str(tmp_path / "out"), "--shard", "1/2", "--json")
    assert result.exit_code == 0
    names = [json.loads(line)["name"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert names == ["dave"]
    bad = create(setup, "--subjects-from", str(subjects), "-o", str(tmp_path / "out"), "--shard", "2/2")
    assert bad.exit_code == 1 and "--shard" in bad.output


# --- a batch survives anything one subject does ------------------------------------------------


def fake_report(photos, out, **options):
    return {"gaussians": 1, "photos": {"used": [p.name for p in photos]}, "seconds": 0.0}


def test_any_subject_exception_is_a_failed_line_and_the_batch_goes_on(tmp_path, monkeypatch):
    import avat3r_cli.pipeline.batch as batch

    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(b"")

    def run_create(photos, out, **options):
        if out.name == "a":
            raise RuntimeError("boom")
        if out.name == "b":
            raise MemoryError()
        return fake_report(photos, out)

    monkeypatch.setattr(batch, "run_create", run_create)
    args = ["create", *(str(tmp_path / n) for n in "abc"), "--per-folder", "-o", str(tmp_path / "out"), "--json"]
    result = runner.invoke(app, args, env={"AVAT3R_DEBUG": None})
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [("a", "failed"), ("b", "failed"), ("c", "ok")]
    assert "RuntimeError: boom" in rows[0]["error"] and "MemoryError" in rows[1]["error"]
    assert "Traceback" not in result.stderr
    debug = runner.invoke(app, args, env={"AVAT3R_DEBUG": "1"})
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and "RuntimeError: boom" in debug.stderr


def test_ctrl_c_stops_the_batch(tmp_path, monkeypatch):
    import avat3r_cli.pipeline.batch as batch

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(b"")
    made = []

    def run_create(photos, out, **options):
        made.append(out.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_create", run_create)
    with pytest.raises(KeyboardInterrupt):
        batch.run_batch([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert made == ["a"]


def test_subject_names_stay_inside_out(tmp_path, monkeypatch):
    import avat3r_cli.pipeline.batch as batch

    (tmp_path / "photos" / "alice").mkdir(parents=True)
    for folder in (tmp_path / "photos", tmp_path / "photos" / "alice"):
        (folder / "x.jpg").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "photos" / "alice")
    outputs = []

    def run_create(photos, out, **options):
        outputs.append(out)
        return fake_report(photos, out)

    monkeypatch.setattr(batch, "run_create", run_create)
    subjects = tmp_path / "list.txt"
    subjects.write_text("photos/alice/..\n.\n/\n".replace("photos", str(tmp_path / "photos")))
    result = runner.invoke(app, ["create", "--subjects-from", str(subjects), "-o", str(tmp_path / "out"), "--json"],
                           env={"AVAT3R_DEBUG": None})
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [("photos", "ok"), ("alice", "ok"), ("/", "failed")]
    assert result.exit_code == 1 and "cannot name a subject" in rows[2]["error"]
    assert outputs == [tmp_path / "out" / "photos", tmp_path / "out" / "alice"]
    assert batch.subject_name(Path("a/b/..")) == "a" and batch.subject_name(Path("a/./b/")) == "b"


def test_subject_list_that_is_not_text_is_one_line(tmp_path):
    subjects = tmp_path / "list.txt"
    subjects.write_bytes(b"\xff\xfe\x00binary")
    result = runner.invoke(app, ["create", "--subjects-from", str(subjects), "-o", str(tmp_path / "out")],
                           env={"AVAT3R_DEBUG": None})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(subjects) in lines[0] and "UTF-8" in lines[0], result.stderr


def test_malformed_exif_does_not_stop_the_batch(setup, tmp_path):
    """The reported case: an EXIF unit of the wrong type made create raise, ending the batch."""
    image = Image.fromarray(skimage_data.astronaut())
    exif = image.getexif()
    exif.get_ifd(0x8769).update({0x920A: 4.0, 0xA20E: 100.0, 0xA210: "abc"})
    (tmp_path / "exif").mkdir()
    image.save(tmp_path / "exif" / "front.jpg", exif=exif)
    result = create(setup, str(tmp_path / "exif"), str(setup / "alice"), "--per-folder", "-o", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["name"], r["status"]) for r in rows] == [("exif", "ok"), ("alice", "ok")]
