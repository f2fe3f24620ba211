"""``prepare-data --geometry dust3r``: DUSt3R's maps for a dataset's input cameras, and training on them.

A tiny random DUSt3R in a hand-made offline hub cache stands in for the 2.28 GB checkpoint, so
these tests check the plumbing (which views, which frame, which file, what training reads), not
the maps' quality.
"""

from __future__ import annotations

import json

import pytest
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.data.prepare import prepare_dataset
from avat3r_cli.data.prepared import DUST3R_MAPS, PreparedSubject, is_current, prepared_name
from avat3r_cli.data.synthetic import generate_dataset
from avat3r_cli.preprocess.dust3r import load as load_module
from avat3r_cli.preprocess.dust3r.backend import DUST3R_LICENCE_NOTICE, dust3r_position_maps
from avat3r_cli.preprocess.dust3r.config import Dust3rConfig
from avat3r_cli.preprocess.dust3r.load import DUST3R_REPO, shared_free_state_dict
from avat3r_cli.preprocess.dust3r.model import Dust3r

from cli_fixtures import invoke, one_thread  # noqa: F401
from hub_cache import add_hub_repo, offline_hub_cache

R = 64  # the tiny preset's input size


@pytest.fixture(scope="module")
def tiny_dust3r(tmp_path_factory):
    """The tiny DUSt3R, also installed as the official repo in an offline hub cache for the module."""
    torch.manual_seed(0)
    model = Dust3r(Dust3rConfig.tiny()).eval()
    folder = tmp_path_factory.mktemp("dust3r")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    from safetensors.torch import save_file

    save_file(shared_free_state_dict(model), str(folder / "model.safetensors"))
    with pytest.MonkeyPatch.context() as mp:
        cache = offline_hub_cache(tmp_path_factory.mktemp("hub"), mp)
        add_hub_repo(cache, DUST3R_REPO, folder)
        yield model


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_dust3r):
    """Two subjects, two timesteps, three cameras (the third never an input), prepared both ways."""
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, subjects=2, seed=5, timesteps=2, cameras=3, resolution=96, label=False)
    notices: list[str] = []
    prepare_dataset(root, R, "template")
    prepare_dataset(root, R, "dust3r", notice=notices.append)
    return root, notices


def test_only_the_input_cameras_get_dust3r_maps(dataset, tiny_dust3r):
    root, notices = dataset
    assert notices == [DUST3R_LICENCE_NOTICE]  # once, for the whole dataset
    template = PreparedSubject(root / "subject_0000" / prepared_name(R, "template"))
    dust3r = PreparedSubject(root / "subject_0000" / prepared_name(R, "dust3r"))
    assert dust3r.metadata["geometry"] == "dust3r" and dust3r.metadata["position_maps"] == DUST3R_MAPS
    assert dust3r.input_views.tolist() == [True, True, False]
    for key in ("K", "world_to_cam", "expressions"):
        assert torch.equal(getattr(dust3r, key), getattr(template, key)), key
    cams = [Camera(dust3r.K[c], dust3r.world_to_cam[c], R, R) for c in range(3)]
    for t in range(2):
        a, b = template.views([t] * 3, [0, 1, 2]), dust3r.views([t] * 3, [0, 1, 2])
        assert torch.equal(a["images"], b["images"]) and torch.equal(a["masks"], b["masks"])
        # The camera no sample reads as an input keeps the template's map.
        assert torch.equal(a["positions"][2], b["positions"][2]) and torch.equal(a["confidence"][2], b["confidence"][2])
        assert not torch.equal(a["positions"][:2], b["positions"][:2])
        # The input cameras' maps are what the photo pipeline computes from that timestep's crops
        # (test_dust3r.py checks that those lie on their pixels' rays in the head frame).
        crops = (b["images"][:2] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        expected, confidence = dust3r_position_maps(crops, cams[:2], tiny_dust3r)
        torch.testing.assert_close(b["positions"][:2], expected.half().float(), atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(b["confidence"][:2], (confidence * 255).round() / 255, atol=1 / 255, rtol=0)


def test_prepared_files_are_current_and_not_redone(dataset, monkeypatch):
    root, _ = dataset
    for s in ("subject_0000", "subject_0001"):
        assert is_current(root / s / prepared_name(R, "dust3r"))

    def no_load(*args, **kwargs):
        raise AssertionError("DUSt3R loaded although every subject is prepared")

    monkeypatch.setattr(load_module, "load_dust3r", no_load)
    assert prepare_dataset(root, R, "dust3r") == ["subject_0000", "subject_0001"]


def test_training_reads_the_dust3r_files_and_records_the_backend(dataset, tmp_path):
    root, _ = dataset
    run = tmp_path / "run"
    result = invoke("train", "--data", root, "-o", run, "--preset", "tiny", "--geometry", "dust3r", "--steps", "2",
                    "--val-subjects", "1", "--validate-every", "0", "--checkpoint-every", "0", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "model" / "config.json").read_text())["geometry_backend"] == "dust3r"
    subjects = {json.loads(line)["subject"] for line in (run / "log.jsonl").read_text().splitlines()}
    assert subjects <= {"subject_0000", "subject_0001"}


def test_unknown_backend_and_missing_weights_are_one_line_errors(tmp_path, hub_cache):
    root = tmp_path / "data"
    generate_dataset(root, subjects=1, seed=1, timesteps=1, cameras=2, resolution=32, label=False)
    wrong = invoke("prepare-data", root, "--geometry", "magic")
    assert wrong.exit_code == 1 and wrong.output.strip() == "Error: --geometry 'magic' is not one of template, dust3r"
    missing = invoke("prepare-data", root, "--resolution", "32", "--geometry", "dust3r", "--device", "cpu")
    assert missing.exit_code == 1, missing.output
    assert "avat3r weights download dust3r" in missing.output and "Traceback" not in missing.output
    assert not any("prepared" in p.name for p in (root / "subject_0000").iterdir())  # nothing half-written
