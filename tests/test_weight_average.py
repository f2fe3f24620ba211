"""Tests for ``weights/average.py`` (the uniform weight average the bundled model is made with)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from avat3r_cli.io.weights import load_model, save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset

SCRIPT = Path(__file__).resolve().parents[1] / "weights" / "average.py"


def write_model(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, folder / "model.safetensors")
    return folder


def run_average(*args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_average_is_the_elementwise_mean_and_keeps_integer_tensors(tmp_path: Path) -> None:
    steps = torch.tensor([3], dtype=torch.int64)
    a = write_model(tmp_path / "a", {"k": 1}, {"w": torch.tensor([1.0, 2.0]), "n": steps})
    b = write_model(tmp_path / "b", {"k": 1}, {"w": torch.tensor([3.0, 6.0]).half(), "n": steps})
    done = run_average(a, b, "-o", tmp_path / "soup")
    assert done.returncode == 0, done.stderr
    soup = load_file(tmp_path / "soup" / "model.safetensors")
    assert soup["w"].dtype == torch.float32
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(soup["n"], steps)
    assert json.loads((tmp_path / "soup" / "config.json").read_text()) == {"k": 1}


@pytest.mark.parametrize(
    ("config_b", "tensors_b", "message"),
    [
        ({"k": 2}, {"w": torch.zeros(2)}, "config.json files differ"),
        ({"k": 1}, {"w": torch.zeros(3)}, "shape"),
        ({"k": 1}, {"v": torch.zeros(2)}, "other tensor names"),
        ({"k": 1}, {"w": torch.ones(2, dtype=torch.int64)}, "non-float tensor"),
    ],
)
def test_average_refuses_models_that_do_not_match(tmp_path: Path, config_b, tensors_b, message) -> None:
    first = {"w": torch.zeros(2, dtype=torch.int64)} if "non-float" in message else {"w": torch.zeros(2)}
    a = write_model(tmp_path / "a", {"k": 1}, first)
    b = write_model(tmp_path / "b", config_b, tensors_b)
    done = run_average(a, b, "-o", tmp_path / "soup")
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "soup").exists()


def test_average_of_two_tiny_models_loads_as_a_model(tmp_path: Path) -> None:
    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = Avat3r(get_preset("tiny"))
        folders.append(save_model(model, tmp_path / f"m{seed}"))
    done = run_average(*folders, "-o", tmp_path / "soup")
    assert done.returncode == 0, done.stderr
    soup, _ = load_model(str(tmp_path / "soup"), Avat3r.from_config_dict)
    parts = [load_file(f / "model.safetensors") for f in folders]
    for name, tensor in soup.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (parts[0][name] + parts[1][name]) / 2)
