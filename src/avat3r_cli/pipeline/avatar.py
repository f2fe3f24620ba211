"""An animatable avatar: the bundle's inputs encoded once by the model that made them.

``Avatar.load`` takes ``avatar.ply`` or ``avatar.avat3r.safetensors`` (or their folder), finds the
other, loads the model the bundle names (or ``--weights``) and refuses a different model by
sha256. ``gaussians_at(code)`` then decodes any expression and applies the bundle's refinement
residuals, in the head frame; at the model's neutral code (``neutral()``) they are the Gaussians
of ``avatar.ply`` (same count, same order), which holds them moved by the bundle's
``ply_from_head`` (``core/frames.py``).

Letters: V views, H/W crop pixels, N Gaussians, E = 52.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.core.expressions import EXPRESSION_DIM
from avat3r_cli.core.frames import transform_gaussians
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.bundled import ASSETS_ENV
from avat3r_cli.io.registry import find_entry
from avat3r_cli.io.weights import CONFIG_FILE, WEIGHTS_FILE, ModelInfo
from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
from avat3r_cli.model.inputs import EncodedViews, GaussianMaps
from avat3r_cli.pipeline.bundle import (
    BUNDLE_SUFFIX,
    AvatarBundle,
    apply_residuals,
    bundle_path_for,
    is_bundle_path,
    load_bundle,
    ply_path_for,
)

# The weights `create` uses without --weights: the registry entry of this name, a folder shipped
# in the package's assets (io/bundled.py) and verified by its registered sha256.
DEFAULT_WEIGHTS = "avat3r-small"
AVATAR_PLY = "avatar.ply"


def default_weights_folder() -> Path | None:
    """The bundled folder of the default weights (whether or not it exists), None if not registered."""
    entry = find_entry(DEFAULT_WEIGHTS)
    return entry.folder if entry is not None else None


def resolve_weights_spec(weights: str | None) -> str:
    """The spec to load: ``weights`` when given, else the default (its registry name).

    Raises:
        Avat3rError: the default weights are not registered or their folder is absent, saying how
            to pass other weights.
    """
    if weights:
        return weights
    folder = default_weights_folder()
    if folder is not None and (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
        return DEFAULT_WEIGHTS
    where = f"no {folder}/" if folder is not None else "not registered"
    raise Avat3rError(
        f"the default weights '{DEFAULT_WEIGHTS}' are missing ({where}; they ship with the package, or "
        f"{ASSETS_ENV} names a folder holding {DEFAULT_WEIGHTS}/); "
        f"pass --weights FOLDER (holding {CONFIG_FILE} + {WEIGHTS_FILE}) or --weights org/name for a hub repo"
    )


def find_avatar_files(path: str | Path) -> tuple[Path | None, Path]:
    """``(ply or None, bundle)`` for ``avatar.ply``, ``avatar.avat3r.safetensors`` or their folder.

    The pair is found by name in one folder: ``X.ply`` <-> ``X.avat3r.safetensors``. Only the
    bundle is needed to animate, so a missing .ply beside a bundle is not an error.
    """
    path = Path(path)
    if path.is_dir():
        bundles = sorted(path.glob("*" + BUNDLE_SUFFIX))
        preferred = path / (Path(AVATAR_PLY).stem + BUNDLE_SUFFIX)
        if preferred.is_file():
            bundles = [preferred]
        if len(bundles) != 1:
            found = "none" if not bundles else ", ".join(b.name for b in bundles)
            raise InputFileError(path, f"expected one *{BUNDLE_SUFFIX} in this folder, found {found}")
        path = bundles[0]
    if is_bundle_path(path):
        if not path.is_file():
            raise InputFileError(path, "no such file")
        ply = ply_path_for(path)
        return (ply if ply.is_file() else None), path
    if path.suffix.lower() == ".ply":
        if not path.is_file():
            raise InputFileError(path, "no such file")
        bundle = bundle_path_for(path)
        if not bundle.is_file():
            raise InputFileError(
                path, f"no animation bundle beside it (expected {bundle.name}); only avatars made by `avat3r create` animate"
            )
        return path, bundle
    raise InputFileError(path, f"not an avatar: give avatar.ply or avatar{BUNDLE_SUFFIX} (or their folder)")


def _recorded_spec(bundle: AvatarBundle) -> str:
    """The registered name the bundle records, else the folder it was loaded from (if still there), else the name.

    A registered name is found in this installation wherever it lives now (a bundle made from a
    source checkout animates with an installed wheel) and is sha256-verified.
    """
    meta = bundle.metadata
    if find_entry(meta.model_name) is not None:
        return meta.model_name
    if meta.model_source.startswith("folder:"):
        folder = Path(meta.model_source[len("folder:") :])
        if folder.is_dir():
            return str(folder)
    return meta.model_name


def check_model(bundle: AvatarBundle, info: ModelInfo, where: Path | str, weights: str | None) -> None:
    """Raise Avat3rError when ``info`` is not the model the bundle was made with (by sha256)."""
    meta = bundle.metadata
    if info.sha256 == meta.model_sha256:
        return
    given = f"--weights {weights}" if weights else f"the weights found as '{info.name}'"
    raise Avat3rError(
        f"{where}: this avatar was made with model {meta.model_name} (sha256 {meta.model_sha256[:12]}...); "
        f"{given} is a different model (sha256 {info.sha256[:12]}...); pass the original weights with --weights"
    )


@dataclass
class Avatar:
    """A bundle bound to its model on one device.

    Attributes:
        model: the Avat3r model (eval mode) on ``device``.
        info: where its weights came from.
        bundle: inputs, residuals and metadata (CPU tensors).
        device: where decoding and rendering run.
        ply_path, bundle_path: the files it was loaded from (None when built in memory).
    """

    model: Avat3r
    info: ModelInfo
    bundle: AvatarBundle
    device: torch.device
    ply_path: Path | None = None
    bundle_path: Path | None = None
    _encoded: EncodedViews | None = field(default=None, repr=False)
    _residuals: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path, weights: str | None = None, device: torch.device | str = "cpu") -> Avatar:
        """Load the avatar at ``path`` (ply, bundle or folder) with its model.

        Args:
            path: ``avatar.ply``, ``avatar.avat3r.safetensors`` or the folder holding them.
            weights: a weights spec; default the model the bundle records (its folder when it
                still exists, else its name).
            device: a torch device.

        Raises:
            Avat3rError: unusable files, the model missing, or a different model (by sha256).
        """
        from avat3r_cli.pipeline.models import load_avat3r

        ply, bundle_path = find_avatar_files(path)
        bundle = load_bundle(bundle_path)
        spec = weights or _recorded_spec(bundle)
        try:
            model, info = load_avat3r(spec, device)
        except Avat3rError as exc:
            if weights:
                raise
            meta = bundle.metadata
            raise Avat3rError(
                f"{bundle_path}: this avatar was made with model {meta.model_name} (sha256 {meta.model_sha256[:12]}...), "
                f"which cannot be loaded here ({exc}); pass its weights with --weights"
            ) from None
        check_model(bundle, info, bundle_path, weights)
        return cls(model, info, bundle, torch.device(device), ply, bundle_path)

    @property
    def confidence_threshold(self) -> float:
        return float(self.bundle.metadata.confidence_threshold)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the input crops."""
        return int(self.bundle.images.shape[1]), int(self.bundle.images.shape[2])

    def encode(self) -> EncodedViews:
        """The expression-independent encoding, computed once and cached."""
        if self._encoded is None:
            with torch.no_grad():
                self._encoded = self.model.encode_views(self.bundle.view_inputs(self.device))
        return self._encoded

    def set_residuals(self, residuals: dict[str, torch.Tensor] | None) -> None:
        """Replace the bundle's residuals ``[V, H, W, C]`` (e.g. after refinement)."""
        self.bundle = self.bundle.with_residuals(residuals)
        self._residuals = None

    def _device_residuals(self) -> dict[str, torch.Tensor] | None:
        if self.bundle.residuals is None:
            return None
        if self._residuals is None:
            self._residuals = {k: v.to(self.device) for k, v in self.bundle.residuals.items()}
        return self._residuals

    def _code(self, expression: np.ndarray | torch.Tensor) -> torch.Tensor:
        code = torch.as_tensor(np.asarray(expression, dtype=np.float32) if not isinstance(expression, torch.Tensor) else expression)
        code = code.to(self.device, torch.float32).reshape(-1)
        if code.shape[0] != EXPRESSION_DIM:
            raise ValueError(f"expression has {code.shape[0]} values, expected {EXPRESSION_DIM}")
        return code[None]

    def raw_maps_at(self, expression: np.ndarray | torch.Tensor) -> GaussianMaps:
        """Model output ``[1, V, H, W, ...]`` at ``expression [52]``, without residuals (no grad)."""
        with torch.no_grad():
            return self.model.decode(self.encode(), self._code(expression))

    def maps_at(self, expression: np.ndarray | torch.Tensor) -> GaussianMaps:
        """Per-pixel maps ``[1, V, H, W, ...]`` at ``expression [52]`` with the residuals applied."""
        return apply_residuals(self.raw_maps_at(expression), self._device_residuals())

    def gaussians_at(self, expression: np.ndarray | torch.Tensor) -> Gaussians:
        """The avatar's Gaussians ``[N, ...]`` at ``expression [52]``.

        N is fixed by the confidences (pixels kept) plus the model's anchor Gaussians, in that order.
        """
        with torch.no_grad():
            return maps_to_gaussians(self.maps_at(expression), self.confidence_threshold)

    @property
    def neutral_code(self) -> np.ndarray:
        """The model's neutral expression ``[52]`` (recorded with its weights, see ``Avat3r``)."""
        return self.model.neutral_expression.detach().cpu().numpy().astype(np.float32)

    def neutral(self) -> Gaussians:
        """The Gaussians at the neutral code, head frame (``avatar.ply`` holds them as ``ply_gaussians`` gives)."""
        return self.gaussians_at(self.neutral_code)

    def ply_gaussians(self, gaussians: Gaussians) -> Gaussians:
        """``gaussians`` (head frame) moved into the frame this avatar's .ply files use."""
        return transform_gaussians(gaussians, torch.tensor(self.bundle.metadata.ply_from_head, dtype=torch.float32))

    def input_cameras(self) -> list[Camera]:
        """The V input cameras (crop intrinsics, head frame to camera), on ``device``."""
        h, w = self.image_size
        b = self.bundle
        return [Camera(b.K[v], b.world_to_cam[v], h, w).to(self.device) for v in range(b.num_views)]
