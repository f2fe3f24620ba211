"""Loading an Avat3r model: the weights layer (io) composed with the model (model)."""

from __future__ import annotations

import torch

from avat3r_cli.io.weights import ModelInfo, load_model
from avat3r_cli.model.avat3r import Avat3r


def load_avat3r(spec: str, device: torch.device | str = "cpu") -> tuple[Avat3r, ModelInfo]:
    """The model named by ``spec`` (a folder, ``org/name[@revision]`` or a registry name), in eval mode."""
    model, info = load_model(spec, Avat3r.from_config_dict, device=device)
    model.eval()
    return model, info
