"""Loading an Avat3r model: the weights layer (io) composed with the model (model)."""

from __future__ import annotations

from pathlib import Path

import torch

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.io.registry import WeightsEntry
from avat3r_cli.io.weights import CONFIG_FILE, ModelInfo, load_model, read_config
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import ModelConfig


def load_avat3r(
    spec: str,
    device: torch.device | str = "cpu",
    resolved: tuple[Path, str, WeightsEntry | None] | None = None,
) -> tuple[Avat3r, ModelInfo]:
    """The model named by ``spec`` (a folder, ``org/name[@revision]`` or a registry name), in eval mode.

    ``resolved`` is ``io.weights.resolve_verified(spec)`` when the caller has it already.
    """
    model, info = load_model(spec, Avat3r.from_config_dict, device=device, resolved=resolved)
    model.eval()
    return model, info


def read_model_config(folder: Path) -> ModelConfig:
    """The ``ModelConfig`` in ``folder/config.json``, without building the model (no tensors).

    Raises:
        InputFileError: the config is missing, not JSON, or not a valid configuration.
    """
    try:
        return ModelConfig.from_dict(read_config(folder))
    except (TypeError, ValueError) as exc:
        raise InputFileError(Path(folder) / CONFIG_FILE, str(exc)) from None
