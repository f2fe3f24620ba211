"""Named tensors with string metadata in one safetensors file (never pickles)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.atomic import atomic_output

# safetensors reports I/O failures as "... I/O error: No space left on device (os error 28)".
_OS_ERROR = re.compile(r"os error (\d+)")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (contiguous CPU copies) and ``metadata`` atomically to ``path``.

    Raises:
        OSError: the write failed (disk full, quota, I/O error), naming ``path``.
        Avat3rError: safetensors refused the data, naming ``path``.
    """
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        try:
            save_file(data, str(tmp), metadata=metadata or {})
        except SafetensorError as exc:
            raise save_error(exc, tmp, Path(path)) from None


def save_error(exc: SafetensorError, written: Path, final: Path) -> Exception:
    """A safetensors write failure as the OSError it wraps (naming ``written``) or one Avat3rError line."""
    found = _OS_ERROR.search(str(exc))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(written))
    return Avat3rError(f"{final}: cannot write the safetensors file ({exc})")


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; InputFileError when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise InputFileError(path, f"not a readable safetensors file ({error})") from None
    return tensors, metadata
