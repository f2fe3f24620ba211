"""Fixtures and helpers shared by the command tests (import the fixtures a module needs)."""

from __future__ import annotations

import re

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.cli.app import app
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset

runner = CliRunner()


def invoke(*args: object):
    """Run ``avat3r ARGS...`` through the real command tree and its one error boundary."""
    return runner.invoke(app, [str(a) for a in args], env={"AVAT3R_DEBUG": None})


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One preprocessing cache for the session: each photo is analysed once, not per test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVAT3R_CACHE", str(tmp_path_factory.getbasetemp() / "avat3r-cache"))
        yield


# A neutral code as MediaPipe reads real neutral faces: eyes a little squinted and looking down,
# not the all-zero code, so tests see where the model's recorded neutral is used and where zero.
NEUTRAL_CHANNELS = {"eyeLookDownLeft": 0.35, "eyeLookDownRight": 0.35, "eyeSquintLeft": 0.5, "eyeSquintRight": 0.5}


def neutral_code() -> torch.Tensor:
    """``[52]`` the neutral code the ``weights`` model records."""
    from avat3r_cli.core.expressions import EXPRESSION_INDEX

    code = torch.zeros(52)
    for name, value in NEUTRAL_CHANNELS.items():
        code[EXPRESSION_INDEX[name]] = value
    return code


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny model with seeded random weights and a non-zero neutral code, saved as a model folder."""
    torch.manual_seed(0)
    model = Avat3r(get_preset("tiny"))
    model.set_neutral_expression(neutral_code())
    return save_model(model, tmp_path_factory.mktemp("w") / "m")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two shared cores: one thread avoids oversubscription stalls and keeps float sums identical."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# What `create` prints per stage when stderr is not a terminal (CliRunner's is not).
STAGE_LINE = re.compile(r"^\[ *\d+\.\d s\] [A-Z][a-z]+( [a-z]+)?( \(\d+\))?$")
