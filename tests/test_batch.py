"""``avat3r create`` in batch: one avatar per subject folder, failures isolated, resumable, sharded."""

from __future__ import annotations

import json
import shutil

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
