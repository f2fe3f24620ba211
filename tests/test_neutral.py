"""train/neutral.py: the neutral code a model records, the fallback for older weights, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cli_fixtures import one_thread  # noqa: F401
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.data.synthetic import generate_dataset
from avat3r_cli.io.weights import load_model, save_model, sha256_file
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from avat3r_cli.train.neutral import main, neutral_expression, record_neutral_expression

SQUINT = EXPRESSION_INDEX["eyeSquintLeft"]
JAW = EXPRESSION_INDEX["jawOpen"]


@pytest.fixture()
def model_folder(tmp_path: Path) -> Path:
    """A tiny model stored as the bundled one is: float16, with statistics and a metadata entry."""
    torch.manual_seed(0)
    folder = save_model(Avat3r(get_preset("tiny")), tmp_path / "m")
    state = {k: v.half() for k, v in load_file(str(folder / "model.safetensors")).items()}
    state["expression_mean"] = torch.full((52,), 0.1).half()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_the_neutral_code_is_the_median_of_first_timesteps() -> None:
    first = torch.zeros(5, 52)
    first[:, SQUINT] = torch.tensor([0.4, 0.5, 0.45, 0.55, 0.5])
    first[4, JAW] = 0.9  # one subject whose first frame has the mouth open does not move it
    code = neutral_expression(first)
    assert float(code[SQUINT]) == pytest.approx(0.5) and float(code[JAW]) == 0.0
    with pytest.raises(ValueError, match="S >= 1"):
        neutral_expression(torch.zeros(0, 52))


def test_weights_without_a_neutral_code_load_with_the_all_zero_one(model_folder: Path) -> None:
    # Older weights were exported at code 0: the fallback keeps their avatars as they were.
    state = load_file(str(model_folder / "model.safetensors"))
    assert "neutral_expression" in state
    del state["neutral_expression"]
    save_file(state, str(model_folder / "model.safetensors"))
    model, _ = load_model(str(model_folder), Avat3r.from_config_dict)
    assert torch.equal(model.neutral_expression, torch.zeros(52))


def test_recording_rewrites_only_the_neutral_code(model_folder: Path) -> None:
    path = model_folder / "model.safetensors"
    before = load_file(str(path))
    code = torch.zeros(52)
    code[SQUINT] = 0.45
    digest = record_neutral_expression(model_folder, code)
    after = load_file(str(path))
    assert digest == sha256_file(path) and set(after) == set(before)
    for name, tensor in before.items():
        if name != "neutral_expression":
            assert torch.equal(after[name], tensor) and after[name].dtype == tensor.dtype, name
    assert after["neutral_expression"].dtype == torch.float16  # as the file's other statistics
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    model, _ = load_model(str(model_folder), Avat3r.from_config_dict)
    assert float(model.neutral_expression[SQUINT]) == pytest.approx(0.45, abs=1e-3)
    with pytest.raises(Avat3rError, match="52 finite values"):
        record_neutral_expression(model_folder, torch.full((52,), float("nan")))


def test_the_command_reads_a_dataset_s_training_subjects(model_folder: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    generate_dataset(data, subjects=3, seed=0, timesteps=2, cameras=1, resolution=16, label=False)
    for i, squint in enumerate([0.3, 0.4, 0.9]):  # subject 2 is held out: its 0.9 must not count
        codes = np.zeros((2, 52), np.float32)
        codes[:, SQUINT] = squint
        codes[1, JAW] = 0.8  # the second timestep is an expression: not part of the neutral
        np.save(data / f"subject_{i:04d}" / "expressions.npy", codes)
    summary = main([str(model_folder), "--data", str(data), "--val-subjects", "1"])
    assert json.loads(capsys.readouterr().out.strip()) == summary
    assert summary["subjects"] == 2 and summary["sha256"] == sha256_file(model_folder / "model.safetensors")
    model, _ = load_model(str(model_folder), Avat3r.from_config_dict)
    expected = torch.zeros(52)
    expected[SQUINT] = 0.35
    torch.testing.assert_close(model.neutral_expression, expected, atol=1e-3, rtol=0)
    # Against the file's statistics (mean 0.1, spread 1): the zero code is 0.1 off, the neutral 0.25.
    assert summary["max_abs_z"]["zero_code"] == pytest.approx(0.1, abs=1e-3)
    assert summary["max_abs_z"]["neutral_code"] == pytest.approx(0.25, abs=1e-3)
