"""Sapiens image features (``--features sapiens``): Meta's pretrained ViT, as TorchScript from the hub.

Avat3r concatenates per-view Sapiens-2B features to its patch tokens (``docs/paper.md``
section 10). This module finds and loads the released TorchScript checkpoints
(``facebook/sapiens-pretrain-{0.3b,0.6b,1b,2b}-torchscript``), preprocesses crops the way the
Sapiens ``lite`` demo does, and runs the backbone in fp32.

The weights are CC BY-NC 4.0 (non-commercial): whoever selects them prints
``SAPIENS_LICENCE_NOTICE`` once.

A TorchScript file is code as well as weights, so a hub file is fetched only at the commit
pinned in ``SAPIENS_PINS`` and its sha256 is checked before ``torch.jit.load`` sees it. A local
file (``local_path``) is the caller's own choice and is loaded as given.

Nothing here imports torch at module level, so the CLI can read ``FEATURE_CHOICES`` and check
backends while ``avat3r --help`` stays light.

Letters: V views, R crop side (any H x W works), C embed dim, h x w feature grid (input / 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.verify import sha256_cached

if TYPE_CHECKING:
    import numpy as np
    import torch

# name -> (hub repo, TorchScript file, embed dim C); docs/paper.md section 10.
SAPIENS_VARIANTS: dict[str, tuple[str, str, int]] = {
    "sapiens-0.3b": ("facebook/sapiens-pretrain-0.3b-torchscript", "sapiens_0.3b_epoch_1600_torchscript.pt2", 1024),
    "sapiens-0.6b": ("facebook/sapiens-pretrain-0.6b-torchscript", "sapiens_0.6b_epoch_1600_torchscript.pt2", 1280),
    "sapiens-1b": ("facebook/sapiens-pretrain-1b-torchscript", "sapiens_1b_epoch_173_torchscript.pt2", 1536),
    "sapiens-2b": ("facebook/sapiens-pretrain-2b-torchscript", "sapiens_2b_epoch_660_torchscript.pt2", 1920),
}

@dataclass(frozen=True)
class SapiensPin:
    """The hub commit a variant's file is fetched at and the sha256 of its bytes (its Git LFS oid)."""

    revision: str
    sha256: str


# From each file's page on the hub at that commit ("Git LFS Details": SHA256).
SAPIENS_PINS: dict[str, SapiensPin] = {
    "sapiens-0.3b": SapiensPin(
        "41f19116d3200448dad6bd10f4b0f18e7602de05", "96c6b78fd21c5854225615a1927eb9fa40149154b3df9c9d7523bbae954a8b6c"
    ),
    "sapiens-0.6b": SapiensPin(
        "92131446d55306633d7af0b80ab28a2879d7c378", "af52b2b2a14cbfa2fd364918b907b2aeed878ac500e0d321517bf952b13d5cd0"
    ),
    "sapiens-1b": SapiensPin(
        "14761491f78e87cfbc270904c521c308e8ab2c39", "b5094b60a11ea8f94ef77b9e0a98439f677a5451c995e4dfda1de29538e8d861"
    ),
    "sapiens-2b": SapiensPin(
        "f63d73283111ce86dbe71cfc913c531fc15b7153", "165fb01fdea960396fae1f3f80a21df9d8d8c517d2cba6f119192ab13088c3a0"
    ),
}
DEFAULT_VARIANT = "sapiens-2b"  # what the paper uses
NO_FEATURES = "none"
# What --features accepts; bare "sapiens" means "the variant the model expects" (default 2B).
FEATURE_CHOICES: tuple[str, ...] = (NO_FEATURES, "sapiens", *SAPIENS_VARIANTS)

SAPIENS_LICENCE_NOTICE = (
    "note: Sapiens features (Meta, CC BY-NC 4.0) are licensed for non-commercial use only; "
    "so are avatars made with them"
)

# Sapiens lite demo (extract_feature.py); RGB order, pixel values 0..255.
SAPIENS_MEAN = (123.5, 116.5, 103.5)
SAPIENS_STD = (58.5, 57.0, 57.5)
SAPIENS_SIZE = (1024, 1024)  # (H, W) of the feature-extraction demo
SAPIENS_PATCH = 16
_LOCAL_SUFFIXES = (".pt2", ".pt")


@dataclass
class SapiensModel:
    """A loaded Sapiens backbone and what it is.

    Attributes:
        module: the TorchScript module (eval mode); ``module(x [B, 3, H, W])`` -> ``[B, C, H/16, W/16]``.
        variant: e.g. ``sapiens-2b``.
        embed_dim: C, the channel count its output must have.
        path: the file it was loaded from.
    """

    module: Any
    variant: str
    embed_dim: int
    path: Path


def feature_backend_name(variant: str) -> str:
    """Canonical backend name: ``none``, or ``sapiens-<size>`` (``sapiens`` and ``2b`` -> ``sapiens-2b``).

    Raises:
        Avat3rError: for an unknown name (the message lists the choices).
    """
    name = variant.strip().lower()
    if name in ("", NO_FEATURES):
        return NO_FEATURES
    if name == "sapiens":
        return DEFAULT_VARIANT
    if not name.startswith("sapiens-"):
        name = "sapiens-" + name
    if name not in SAPIENS_VARIANTS:
        raise Avat3rError(f"unknown features '{variant}'; choose one of: {', '.join(FEATURE_CHOICES)}")
    return name


def check_feature_backend(expected: str, chosen: str) -> str:
    """Check that ``--features`` fits the model's config; the backend to use.

    Bare ``sapiens`` takes the variant the weights expect, so users need not know the size.

    Raises:
        Avat3rError: ``these weights expect --features sapiens-2b, got none`` (or the reverse).
    """
    want = feature_backend_name(expected)
    if chosen.strip().lower() == "sapiens" and want != NO_FEATURES:
        return want
    got = feature_backend_name(chosen)
    if got != want:
        why = " (they take no image features)" if want == NO_FEATURES else ""
        raise Avat3rError(f"these weights expect --features {want}{why}, got {got}")
    return got


def _variant_info(variant: str) -> tuple[str, str, str, int]:
    name = feature_backend_name(variant)
    if name == NO_FEATURES:
        raise Avat3rError("no Sapiens variant chosen ('none'); choose one of: " + ", ".join(SAPIENS_VARIANTS))
    repo, filename, dim = SAPIENS_VARIANTS[name]
    return name, repo, filename, dim


def _local_file(local_path: str | Path, filename: str) -> Path:
    """The TorchScript file in ``local_path`` (a file, or a folder holding it)."""
    path = Path(local_path).expanduser()
    if path.is_file():
        return path.resolve()
    if not path.is_dir():
        raise InputFileError(path, "no such Sapiens file or folder")
    if (path / filename).is_file():
        return (path / filename).resolve()
    # Accept a renamed file, but only when the choice is unambiguous.
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _LOCAL_SUFFIXES)
    if len(found) == 1:
        return found[0].resolve()
    listed = ", ".join(p.name for p in found) or "none"
    raise InputFileError(path, f"expected {filename} or a single .pt2/.pt file (found: {listed})")


def _hub_file(name: str, repo: str, filename: str) -> Path:
    """The cached (or freshly downloaded) file at the pinned commit, sha256 checked; one line on failure."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    pin = SAPIENS_PINS[name]
    try:
        path = Path(hf_hub_download(repo_id=repo, filename=filename, revision=pin.revision))
    except LocalEntryNotFoundError:
        raise Avat3rError(
            f"Sapiens weights '{name}' are not downloaded; run: avat3r weights download {name}"
        ) from None
    except RepositoryNotFoundError:
        raise Avat3rError(f"Sapiens weights '{name}': hub repo {repo} not found") from None
    except Exception as exc:  # hub errors are many; each becomes one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise Avat3rError(f"Sapiens weights '{name}': download failed: {type(exc).__name__}: {first}") from None
    return verify_sapiens_file(name, path)


def verify_sapiens_file(name: str, path: Path) -> Path:
    """``path`` when its sha256 is the pinned one for variant ``name``; InputFileError otherwise."""
    expected = SAPIENS_PINS[name].sha256
    got = sha256_cached(path)
    if got != expected:
        # The snapshot entry links to a blob; removing the blob makes the next download fetch it again.
        raise InputFileError(
            path,
            f"sha256 {got[:16]}... is not the pinned {expected[:16]}... of {name} (corrupt or changed); "
            f"delete {path.resolve()} and run: avat3r weights download {name}",
        )
    return path


def download_sapiens(variant: str = DEFAULT_VARIANT) -> Path:
    """Fetch a variant's TorchScript file into the hub cache (no-op when cached); its path, verified.

    For ``avat3r weights download sapiens-2b``. Unlike ``load_sapiens`` it says why a download
    could not happen instead of telling the user to run itself.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    name, repo, filename, _ = _variant_info(variant)
    cached = try_to_load_from_cache(repo, filename, revision=SAPIENS_PINS[name].revision)
    if isinstance(cached, str):
        return verify_sapiens_file(name, Path(cached))
    if constants.HF_HUB_OFFLINE:
        raise Avat3rError(
            f"Sapiens weights '{name}' are not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; "
            "unset it to download"
        )
    try:
        return _hub_file(name, repo, filename)
    except Avat3rError as exc:
        if "not downloaded" in str(exc):  # online but nothing came back: the hub is unreachable
            raise Avat3rError(f"Sapiens weights '{name}': the Hugging Face hub is unreachable (no network?)") from None
        raise


def load_sapiens(
    variant: str = DEFAULT_VARIANT, device: str | torch.device = "cpu", local_path: str | Path | None = None
) -> SapiensModel:
    """Load a Sapiens TorchScript backbone, from ``local_path`` or the hub cache.

    Args:
        variant: ``sapiens-0.3b`` | ``sapiens-0.6b`` | ``sapiens-1b`` | ``sapiens-2b`` (or ``sapiens``, ``2b``).
        device: where the parameters go (TorchScript ``map_location``).
        local_path: a ``.pt2``/``.pt`` file, or a folder holding the variant's file. Checked
            before any hub call, so a local file never needs the network. Without it the file
            comes from the hub cache at the pinned commit and must have the pinned sha256.

    Returns:
        ``SapiensModel`` in eval mode; the module maps ``[B, 3, H, W]`` -> ``[B, C, H/16, W/16]``.

    Raises:
        Avat3rError: not downloaded (with the command that fixes it) or a hub failure.
        InputFileError: a missing, corrupt or non-TorchScript file, or a hub file whose sha256 is
            not the pinned one (the message names it).
    """
    import warnings

    import torch

    name, repo, filename, dim = _variant_info(variant)
    path = _local_file(local_path, filename) if local_path is not None else _hub_file(name, repo, filename)
    try:
        # TorchScript's own zip format, not a pickle: torch.load is never used for these files.
        # torch warns that TorchScript is deprecated; the released checkpoints are TorchScript anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as exc:  # RuntimeError / ValueError from the zip reader: all mean an unusable file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "float16" in path.name:  # the torch.export (bf16/fp16) releases need a different loader
            hint = f"; this looks like a torch.export file: use the fp32 TorchScript {filename}"
        raise InputFileError(path, f"not a readable TorchScript file (corrupt or truncated?): {first}{hint}") from None
    module.eval()
    return SapiensModel(module=module, variant=name, embed_dim=dim, path=path)


def _as_uint8_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    import numpy as np
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"images must be [V, H, W, 3] RGB, got shape {list(tensor.shape)}")
    if tensor.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {tensor.dtype}")
    return tensor


def preprocess_for_sapiens(
    images: np.ndarray | torch.Tensor,
    size: tuple[int, int] = SAPIENS_SIZE,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """RGB crops -> normalised Sapiens input, as the Sapiens lite demo prepares images.

    Args:
        images: ``[V, H, W, 3]`` uint8 RGB (e.g. ``[V, R, R, 3]`` crops).
        size: output (H, W); the feature-extraction demo uses 1024 x 1024.
        device: where to compute (default: the images' device).

    Returns:
        ``[V, 3, size[0], size[1]]`` float32, ``(x - mean) / std`` with x in 0..255.
    """
    import torch
    import torch.nn.functional as F

    x = _as_uint8_tensor(images)
    x = x.to(device=device if device is not None else x.device)
    x = x.permute(0, 3, 1, 2).float()  # the demo flips BGR->RGB; these are RGB already
    if tuple(x.shape[-2:]) != tuple(size):
        # Bilinear with half-pixel centres is cv2.INTER_LINEAR when enlarging (512^2 crops -> 1024^2);
        # when shrinking, cv2 would alias, so antialias instead (torch ignores it when enlarging).
        shrinking = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)
        x = x.clamp_(0.0, 255.0)  # cv2 saturates to uint8; antialias kernels can overshoot
    mean = torch.tensor(SAPIENS_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(SAPIENS_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _module_device(module: Any) -> torch.device:
    import torch

    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def extract_features(
    model: SapiensModel | torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    size: tuple[int, int] = SAPIENS_SIZE,
    embed_dim: int | None = None,
    out_size: tuple[int, int] | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Sapiens features of each crop, in fp32, ``batch_size`` views at a time.

    Args:
        model: from ``load_sapiens``, or a bare module (then ``embed_dim`` is what is checked).
        images: ``[V, H, W, 3]`` uint8 RGB crops (e.g. ``[V, R, R, 3]``).
        batch_size: views per forward pass; 1 keeps Sapiens-2B at 1024^2 within small GPUs.
        device: where to run (default: where the model's parameters are).
        size: the (H, W) the crops are resized to before the backbone.
        embed_dim: expected C for a bare module (None: unchecked).
        out_size: optional (h, w) to shrink the grid to (antialiased bilinear), e.g. the model's
            token grid: [V, 1920, 64, 64] fp32 is 31 MiB per view, at 32 x 32 a quarter of that.
        out_dtype: storage dtype; ``torch.float16`` halves memory again (LayerNorm'd ViT
            features are far inside fp16's range; values beyond it are clamped, never inf).

    Returns:
        ``[V, C, h, w]`` on the CPU (so V views never pile up on the GPU), float32 unless
        ``out_dtype`` says otherwise; ``h, w = size / 16`` unless ``out_size`` is given.

    Raises:
        Avat3rError: the output is not ``[B, C, h, w]`` or C is not the variant's embed dim.
    """
    import torch
    import torch.nn.functional as F

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    module = model.module if isinstance(model, SapiensModel) else model
    expected = model.embed_dim if isinstance(model, SapiensModel) else embed_dim
    label = model.variant if isinstance(model, SapiensModel) else "the feature model"
    run_device = torch.device(device) if device is not None else _module_device(module)
    images = _as_uint8_tensor(images)
    out_dtype = out_dtype or torch.float32
    outputs = []
    # The TorchScript checkpoints are meant for fp32 only: keep a caller's autocast out.
    with torch.no_grad(), torch.autocast(run_device.type, enabled=False):
        for start in range(0, images.shape[0], batch_size):
            x = preprocess_for_sapiens(images[start : start + batch_size], size=size, device=run_device)
            feats = module(x)
            if isinstance(feats, (tuple, list)):  # the released models return (feat,)
                feats = feats[0]
            if not isinstance(feats, torch.Tensor) or feats.ndim != 4 or feats.shape[0] != x.shape[0]:
                got = list(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
                raise Avat3rError(f"{label} returned {got}, expected [{x.shape[0]}, C, h, w] features")
            if expected is not None and feats.shape[1] != expected:
                raise Avat3rError(
                    f"{label} returned {feats.shape[1]}-channel features, expected {expected}: "
                    "the file is not that Sapiens variant"
                )
            feats = feats.float()
            if out_size is not None and tuple(feats.shape[-2:]) != tuple(out_size):
                shrinking = feats.shape[-2] > out_size[0] or feats.shape[-1] > out_size[1]
                feats = F.interpolate(feats, size=tuple(out_size), mode="bilinear", align_corners=False,
                                      antialias=shrinking)
            if out_dtype == torch.float16:
                feats = feats.clamp(-65504.0, 65504.0)
            outputs.append(feats.to(device="cpu", dtype=out_dtype))
    return torch.cat(outputs, dim=0)
