"""Training checkpoints: everything a run needs to continue exactly, as safetensors (no pickle).

    model/NAME            the model's state dict
    optim/PARAM_ID/KEY    Adam's per-parameter tensors (exp_avg, exp_avg_sq, step)
    rng/torch, rng/cuda   global RNG states
    step                  int64 scalar

plus JSON metadata strings: the model config, the train config, and the optimizer's
``param_groups`` with any non-tensor per-parameter state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.tensors import load_tensors, save_tensors
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import ModelConfig
from avat3r_cli.train.step import unwrap

CHECKPOINT_FORMAT = "avat3r-train-checkpoint"
CHECKPOINT_FILE = "checkpoint.safetensors"


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, train_config: dict[str, Any]
) -> None:
    """Write the state after ``step`` optimizer steps to ``path`` (atomically)."""
    tensors = {f"model/{k}": v for k, v in unwrap(model).state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    tensors["step"] = torch.tensor(step, dtype=torch.int64)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "step": str(step),
        "model_config": json.dumps(unwrap(model).config.to_dict()),
        "train_config": json.dumps(train_config),
        "optimizer": json.dumps({"param_groups": opt["param_groups"], "scalars": scalars}),
    }
    save_tensors(path, tensors, metadata)


def load_checkpoint(path: Path, device: torch.device) -> tuple[Avat3r, dict[str, Any], int, dict[str, torch.Tensor]]:
    """(model on ``device`` with the weights, optimizer state dict, step, all tensors) of a checkpoint.

    The optimizer tensors stay on the CPU: ``Optimizer.load_state_dict`` moves them next to their
    parameters (and keeps Adam's ``step`` counters where Adam wants them).
    """
    tensors, meta = load_tensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise Avat3rError(f"{path}: not an avat3r training checkpoint")
    model = Avat3r(ModelConfig.from_dict(json.loads(meta["model_config"])))
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict({**model.state_defaults(), **weights}, strict=True)
    opt_meta = json.loads(meta["optimizer"])
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in opt_meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return model.to(device), {"state": state, "param_groups": opt_meta["param_groups"]}, int(tensors["step"]), tensors
