"""Find and load DUSt3R weights: a local folder or the hub repo, strict keys, safetensors only.

The default is ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``: ``config.json`` (450 B) +
``model.safetensors`` (2.28 GB, 571 M float32 parameters), fetched once into the standard
Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``; ``HF_HUB_OFFLINE`` is honoured). The weights
are CC BY-NC-SA 4.0 (``backend.DUST3R_LICENCE_NOTICE``).

CroCo registers each DPT ``scratch.layer{k}_rn`` conv a second time as ``scratch.layer_rn.{k-1}``;
safetensors stores a shared tensor once, under either name. Before the strict check the missing
name of each pair is filled from the present one (two different tensors under both names are an
error), so a file with either, or both, loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.weights import CONFIG_FILE, WEIGHTS_FILE, check_keys, parse_hub_spec, read_config, read_state_dict

if TYPE_CHECKING:
    import torch

    from avat3r_cli.preprocess.dust3r.model import Dust3r

DUST3R_REPO = "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt"
DUST3R_FILES = (CONFIG_FILE, WEIGHTS_FILE)
DUST3R_DOWNLOAD_BYTES = 2_285_000_000  # model.safetensors, about 2.28 GB
DOWNLOAD_COMMAND = "avat3r weights download dust3r"


def _hub_folder(spec: str, repo: str, revision: str | None) -> Path:
    """The snapshot folder holding both files, from the cache or the hub; one line on failure."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    folder = None
    for filename in DUST3R_FILES:
        try:
            folder = Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision)).parent
        except LocalEntryNotFoundError:
            # Offline (or no network) and not cached.
            raise Avat3rError(f"DUSt3R weights '{spec}' are not downloaded; run: {DOWNLOAD_COMMAND}") from None
        except RepositoryNotFoundError:
            raise Avat3rError(f"DUSt3R weights '{spec}': no such hub repo (or it is private)") from None
        except RevisionNotFoundError:
            raise Avat3rError(f"DUSt3R weights '{spec}': the hub repo has no such revision") from None
        except Exception as exc:  # hub errors are many; each becomes one line
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise Avat3rError(f"DUSt3R weights '{spec}': download failed: {type(exc).__name__}: {first}") from None
    assert folder is not None
    return folder


def resolve_dust3r(spec: str = DUST3R_REPO) -> Path:
    """The folder with ``config.json`` + ``model.safetensors`` named by ``spec``.

    A local folder is checked with ``Path.is_dir`` before anything touches the hub (a path is not
    a valid repo id); otherwise ``org/name[@revision]`` goes through ``hf_hub_download`` (no
    network when cached; downloads 2.28 GB on first use unless ``HF_HUB_OFFLINE`` is set).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    hub = parse_hub_spec(spec)
    if hub is None:
        raise Avat3rError(f"DUSt3R weights '{spec}': not a folder and not a hub repo org/name[@revision]")
    return _hub_folder(spec, *hub)


def download_dust3r(spec: str = DUST3R_REPO) -> Path:
    """Fetch the weights into the hub cache (no-op when cached); the snapshot folder.

    For ``avat3r weights download dust3r``: unlike ``load_dust3r`` it says why a download could
    not happen instead of telling the user to run itself.
    """
    from huggingface_hub import constants

    try:
        return resolve_dust3r(spec)
    except Avat3rError as exc:
        if DOWNLOAD_COMMAND not in str(exc):
            raise
        if constants.HF_HUB_OFFLINE:
            raise Avat3rError(
                f"DUSt3R weights '{spec}' are not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
                "is set; unset it to download"
            ) from None
        raise Avat3rError(f"DUSt3R weights '{spec}': the Hugging Face hub is unreachable (no network?)") from None


def fill_aliases(state: dict[str, torch.Tensor], where: str | Path) -> dict[str, torch.Tensor]:
    """Give each shared DPT tensor both of its names (see the module docstring); a new dict.

    Raises:
        Avat3rError: both names are present with different values.
    """
    import torch

    from avat3r_cli.preprocess.dust3r.model import state_dict_aliases

    state = dict(state)
    for canonical, alias in state_dict_aliases():
        a, b = state.get(canonical), state.get(alias)
        if a is not None and b is not None:
            if a.shape != b.shape or not torch.equal(a, b):
                raise Avat3rError(f"weights in {where}: {canonical} and {alias} should be one tensor but differ")
        elif a is not None:
            state[alias] = a
        elif b is not None:
            state[canonical] = b
    return state


def shared_free_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with each shared DPT tensor once (its ``layer{k}_rn`` name), for safetensors."""
    from avat3r_cli.preprocess.dust3r.model import state_dict_aliases

    aliases = {alias for _, alias in state_dict_aliases()}
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in aliases}


def load_dust3r(spec: str = DUST3R_REPO, device: str | torch.device = "cpu") -> Dust3r:
    """Load DUSt3R from a folder or the hub (see ``resolve_dust3r``), keys checked strictly.

    Args:
        spec: a folder with ``config.json`` + ``model.safetensors``, or ``org/name[@revision]``
            (default: the official ViT-L / ViT-B / DPT 512 model, 2.28 GB).
        device: where the parameters go.

    Returns:
        ``Dust3r`` in eval mode, float32.

    Raises:
        Avat3rError: not downloaded (with the command that fixes it), a hub failure, or weights
            that do not fit the config (missing / unexpected / mis-shaped keys, listed).
        InputFileError: a missing, corrupt or truncated ``config.json`` / ``model.safetensors``.
    """
    import torch

    from avat3r_cli.preprocess.dust3r.model import Dust3r

    folder = resolve_dust3r(spec)
    config = read_config(folder)
    try:
        with torch.device("meta"):  # no memory until the real tensors are assigned
            model = Dust3r.from_config_dict(config)
    except (TypeError, ValueError) as exc:
        raise InputFileError(folder / CONFIG_FILE, str(exc)) from None
    weights_path = folder / WEIGHTS_FILE
    state = fill_aliases(read_state_dict(weights_path, device=device), weights_path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(expected, {k: tuple(v.shape) for k, v in state.items()}, weights_path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
