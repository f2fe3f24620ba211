"""Model weights on disk: a folder (or hub repo) holding ``config.json`` + ``model.safetensors``.

A spec names the weights in one of three ways, tried in this order:

1. a local folder (checked with ``Path.is_dir`` before anything touches the hub, because a
   folder passed to the hub as a repo id fails validation) or a ``model.safetensors`` inside one;
2. a registered name (``io/registry.py``): hub weights pinned to a commit, sha256 verified;
3. a hub repo ``org/name[@revision]``, loaded through ``huggingface_hub`` and its standard cache
   (``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``).

Never pickle: safetensors only.

This module knows files, not architectures: ``io`` and ``model`` are independent L1 packages
(tests/test_layers.py). The caller passes ``build``, a function from the ``config.json`` dict to
an ``nn.Module`` (for Avat3r: ``Avat3r.from_config_dict``); anything with a ``config.to_dict()``
can be saved. The L2+ code that wants "an Avat3r from a spec" composes the two.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.registry import WeightsEntry, find_entry, known_names
from avat3r_cli.io.verify import bundled_entry, sha256_file, verify_files

if TYPE_CHECKING:
    import torch
    from torch import nn

# config.json dict -> module; raises ValueError/TypeError for a config it cannot build.
Builder = Callable[[dict[str, Any]], "nn.Module"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)
# Files save_model may replace when it overwrites a model folder; anything else makes it refuse.
_REPLACEABLE = {*MODEL_FILES, "README.md", ".gitattributes"}
_HUB_SPEC = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
_LIST_LIMIT = 8


@dataclass
class ModelInfo:
    """Where loaded weights came from.

    Attributes:
        name: the spec as the user gave it (registry name, hub repo or folder).
        source: ``folder:/abs/path`` or ``hf://org/name@revision``.
        folder: the folder the files were read from (a hub snapshot for hub weights).
        config: the ``config.json`` dict (the built module holds the typed config).
        parameters: number of parameters.
        sha256: hex digest of ``model.safetensors`` (the bundle records it).
        licence: from the registry, None when unregistered.
        verified: True when the files were checked against registry hashes.
    """

    name: str
    source: str
    folder: Path
    config: dict[str, Any]
    parameters: int
    sha256: str
    licence: str | None
    verified: bool


def parse_hub_spec(spec: str) -> tuple[str, str | None] | None:
    """``org/name[@revision]`` -> (repo id, revision or None); None when it is not one."""
    if spec.startswith((".", "/", "~")) or "\\" in spec:
        return None
    match = _HUB_SPEC.match(spec)
    return (match["repo"], match["rev"]) if match else None


def _local_folder(spec: str) -> Path | None:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_file() and path.name == WEIGHTS_FILE:
        return path.resolve().parent
    return None


def _short_list(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else "")


def _hub_error(name: str, exc: Exception) -> Avat3rError:
    """One actionable line for a failed hub lookup."""
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, LocalEntryNotFoundError):
        return Avat3rError(f"weights '{name}' are not downloaded; run: avat3r weights download {name}")
    if isinstance(exc, RepositoryNotFoundError):
        return Avat3rError(f"weights '{name}': no such hub repo (or it is private), and no such local folder")
    if isinstance(exc, RevisionNotFoundError):
        return Avat3rError(f"weights '{name}': the hub repo has no such revision")
    return Avat3rError(f"weights '{name}': download failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def _hub_fetch(name: str, repo: str, revision: str | None, files: tuple[str, ...]) -> Path:
    """Fetch ``files`` through the hub cache (no network when cached or offline); the folder."""
    from huggingface_hub import hf_hub_download

    folder = None
    for filename in files:
        try:
            path = Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision))
        except Exception as exc:  # hub errors are many; each becomes one line
            raise _hub_error(name, exc) from exc
        folder = path.parent
    assert folder is not None
    return folder


def resolve(spec: str, download: bool = True) -> tuple[Path, str, WeightsEntry | None]:
    """Find the folder of ``spec`` (see the module docstring), fetching hub files when allowed.

    With ``download`` False a hub spec never goes online (only the cache is consulted).

    Returns:
        (folder, source string, registry entry or None).
    """
    folder = _local_folder(spec)
    if folder is not None:
        # The shipped folder given by its path is still the registered model: its hashes apply.
        return folder, f"folder:{folder}", bundled_entry(folder)
    entry = find_entry(spec)
    if entry is not None:
        if entry.folder is not None:
            if not entry.folder.is_dir():
                raise Avat3rError(f"weights '{spec}': the bundled folder {entry.folder} is missing")
            return entry.folder, f"folder:{entry.folder}", entry
        files = tuple(entry.hashes) or MODEL_FILES
        folder = _fetch(spec, entry.repo, entry.revision, files, download)
        return folder, entry.source, entry
    hub = parse_hub_spec(spec)
    if hub is None:
        raise Avat3rError(
            f"weights '{spec}': not a folder, a registered name ({known_names()}) or a hub repo org/name[@revision]"
        )
    repo, revision = hub
    folder = _fetch(spec, repo, revision, MODEL_FILES, download)
    return folder, f"hf://{repo}" + (f"@{revision}" if revision else ""), None


def resolve_verified(spec: str) -> tuple[Path, str, WeightsEntry | None]:
    """``resolve(spec)``, then the registry's sha256 checks on the files when it lists any."""
    folder, source, entry = resolve(spec)
    if entry is not None and entry.hashes:
        verify_files(folder, entry.hashes, spec)
    return folder, source, entry


def _fetch(name: str, repo: str | None, revision: str | None, files: tuple[str, ...], download: bool) -> Path:
    assert repo is not None
    if download:
        return _hub_fetch(name, repo, revision, files)
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True  # consult the cache only
    try:
        return _hub_fetch(name, repo, revision, files)
    finally:
        constants.HF_HUB_OFFLINE = previous


def download(spec: str) -> tuple[Path, WeightsEntry | None]:
    """Download registered or hub weights into the hub cache and verify registry hashes.

    Returns:
        (snapshot folder, registry entry or None).
    """
    from huggingface_hub import constants

    if _local_folder(spec) is not None:
        raise Avat3rError(f"'{spec}' is a local folder; there is nothing to download")
    entry = find_entry(spec)
    if entry is not None and entry.folder is not None:
        raise Avat3rError(f"weights '{spec}' are bundled in {entry.folder}; there is nothing to download")
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        folder, _, entry = resolve(spec, download=not offline)  # offline is fine when cached
    except Avat3rError as exc:
        # "run: avat3r weights download" would be circular here: say why the download failed.
        if not isinstance(exc.__cause__, LocalEntryNotFoundError):
            raise
        if offline:
            raise Avat3rError(
                f"weights '{spec}' are not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; "
                "unset it to download"
            ) from None
        raise Avat3rError(
            f"weights '{spec}': the Hugging Face hub is unreachable (no network?) and nothing is cached"
        ) from None
    if entry is not None and entry.hashes:
        verify_files(folder, entry.hashes, spec)
    return folder, entry


def read_config(folder: str | Path) -> dict[str, Any]:
    """The dict in ``folder/config.json``; InputFileError when missing or not a JSON object."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputFileError(path, "missing (a model folder holds config.json + model.safetensors)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a JSON object")
    return data


def read_state_dict(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; InputFileError when it is missing, corrupt or truncated."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "missing")
    try:
        return load_file(path, device=str(device))
    except Exception as exc:  # SafetensorError, OSError, bad header JSON: all mean an unusable file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(path, f"not a readable safetensors file (corrupt or truncated?): {first}") from None


def check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str | Path) -> None:
    """Strict key and shape check: Avat3rError listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} {list(found[k])} vs {list(expected[k])}" for k in set(expected) & set(found) if expected[k] != found[k]
    )
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_short_list(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_short_list(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (file vs model): {_short_list(shapes)}")
    raise Avat3rError(f"weights in {where} do not fit the model in its config.json: " + "; ".join(parts))


def _build_on_meta(build: Builder, folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the module of ``folder``'s config with no memory; config errors name the file."""
    import torch

    config = read_config(folder)
    try:
        with torch.device("meta"):
            return build(config), config
    except (TypeError, ValueError) as exc:
        raise InputFileError(folder / CONFIG_FILE, str(exc)) from None


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_folder(folder: str | Path, build: Builder) -> tuple[dict[str, Any], int]:
    """Validate a model folder without loading tensor data: config, header, keys and shapes.

    Returns:
        (config dict, parameter count).
    """
    from safetensors import safe_open

    folder = Path(folder)
    module, config = _build_on_meta(build, folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise InputFileError(path, "missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        raise InputFileError(path, f"not a readable safetensors file (corrupt or truncated?): {exc}") from None
    check_keys({k: tuple(v.shape) for k, v in module.state_dict().items()}, found, path)
    return config, _num_parameters(module)


def load_model(
    spec: str,
    build: Builder,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    resolved: tuple[Path, str, WeightsEntry | None] | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Load weights named by ``spec`` (folder, registered name or ``org/name[@revision]``).

    Args:
        spec: see the module docstring.
        build: config dict -> module (e.g. ``Avat3r.from_config_dict``); run on the meta device.
        device: where the parameters go.
        dtype: floating parameter dtype (default float32; use autocast for bf16 compute).
        resolved: what ``resolve_verified(spec)`` returned, when the caller already read the
            config from that folder (the model is then built from the same files).

    Returns:
        (the module in eval mode with the weights, ``ModelInfo``).
    """
    import torch

    folder, source, entry = resolved if resolved is not None else resolve_verified(spec)
    module, config = _build_on_meta(build, folder)
    weights_path = folder / WEIGHTS_FILE
    state = read_state_dict(weights_path, device=device)
    # Tensors added to a model after some weights were saved, with the value that reproduces
    # those weights' behaviour (e.g. Avat3r's identity code statistics).
    defaults = getattr(module, "state_defaults", dict)()
    state.update({k: v.to(device) for k, v in defaults.items() if k not in state})
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_keys(expected, {k: tuple(v.shape) for k, v in state.items()}, weights_path)
    dtype = dtype or torch.float32
    state = {k: v.to(dtype=dtype) if v.is_floating_point() else v for k, v in state.items()}
    # assign=True adopts the loaded tensors in place of the meta ones: no second copy in memory.
    module.load_state_dict(state, strict=True, assign=True)
    module.eval()
    digest = entry.hashes.get(WEIGHTS_FILE) if entry is not None else None  # verified just above
    info = ModelInfo(
        name=spec,
        source=source,
        folder=folder,
        config=config,
        parameters=_num_parameters(module),
        sha256=digest or sha256_file(weights_path),
        licence=entry.licence if entry is not None else None,
        verified=bool(entry is not None and entry.hashes),
    )
    return module, info


def save_model(model: nn.Module, folder: str | Path) -> Path:
    """Write ``config.json`` (from ``model.config.to_dict()``) + ``model.safetensors`` into ``folder``.

    Atomic as a pair: the folder is written under a temporary name and renamed, so a crash never leaves a config
    beside the wrong weights. An existing folder is replaced only when it holds nothing but model
    files; otherwise Avat3rError (so a mistyped path cannot wipe unrelated files).

    Returns:
        the folder.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from avat3r_cli.io.tensors import save_error

    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise Avat3rError(f"{folder}: exists and is not a folder")
        others = sorted(p.name for p in folder.iterdir() if p.name not in _REPLACEABLE)
        if others:
            raise Avat3rError(
                f"{folder}: refusing to overwrite a folder that holds other files ({_short_list(others)})"
            )
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_output(folder) as tmp:
        tmp.mkdir()
        config_text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"
        (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
        try:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        except SafetensorError as exc:  # disk full and other I/O errors name the file, not a traceback
            raise save_error(exc, tmp / WEIGHTS_FILE, folder / WEIGHTS_FILE) from None
    return folder
