"""Device choice and seeding, shared by every command."""

from __future__ import annotations

import random

import torch

from avat3r_cli.core.errors import Avat3rError

DEVICE_CHOICES = "auto|cpu|cuda[:i]|mps"


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``--device`` (auto picks CUDA when present, else CPU).

    Raises Avat3rError for an unknown name or a device this machine does not have.
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise Avat3rError(f"--device {name!r} is not one of {DEVICE_CHOICES}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise Avat3rError("--device cuda was asked for, but this machine has no usable CUDA GPU (try --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise Avat3rError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise Avat3rError("--device mps was asked for, but MPS is not available on this machine")
    elif device.type != "cpu":
        raise Avat3rError(f"--device {name!r} is not one of {DEVICE_CHOICES}")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (and CUDA) and return a CPU generator seeded the same way."""
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
