"""The animation bundle ``avatar.avat3r.safetensors``: what ``animate`` needs beside ``avatar.ply``.

One safetensors file (no pickles) holding:

* the preprocessed inputs the model re-encodes: ``images`` uint8 ``[V, H, W, 3]``,
  ``positions`` float32 ``[V, 3, H, W]``, ``confidence`` float32 ``[V, 1, H, W]``, ``K``
  ``[V, 3, 3]``, ``world_to_cam`` ``[V, 4, 4]``, ``blendshapes`` ``[V, 52]`` (each photo's own
  code) and, when a feature backend ran, ``features`` float16 ``[V, C_f, h, w]``;
* optional refinement residuals ``residual.offset`` ``[V, H, W, 3]`` (metres, added to the means),
  ``residual.sh_dc`` ``[V, H, W, 3]`` (added to the degree-0 SH), ``residual.log_scale``
  ``[V, H, W, 3]`` (added to log-scales) and ``residual.opacity_logit`` ``[V, H, W, 1]`` (added
  to the opacity logit). They are per input pixel, not per Gaussian index, because the model
  re-decodes the same pixels for every expression: a pixel-aligned residual stays attached to
  its Gaussian whatever the expression moves;
* metadata: the safetensors header key ``avat3r`` holds a JSON object (``BundleMetadata``) with the
  format name and version, the model's name, source and sha256, the tool version, the expression
  space, the confidence threshold, the resolution, the backends, the photos and ``ply_from_head``,
  the rigid 4x4 transform from the head frame (the model's) to the frame of the avatar's .ply
  files (``core/frames.py``; bundles written before it was recorded read as the identity).

Letters: V views, H/W crop pixels, C_f feature channels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from avat3r_cli import __version__
from avat3r_cli.core.errors import InputFileError, input_file_errors
from avat3r_cli.core.expressions import EXPRESSION_DIM
from avat3r_cli.core.frames import HEAD_TO_VIEWER, IDENTITY, rigid_parts
from avat3r_cli.io.tensors import load_tensors, save_tensors
from avat3r_cli.model.inputs import GaussianMaps, ViewInputs
from avat3r_cli.pipeline.bundle_checks import camera_problem, confidence_problem, metadata_problem

BUNDLE_FORMAT = "avat3r-bundle"
BUNDLE_VERSION = 1
BUNDLE_SUFFIX = ".avat3r.safetensors"
EXPRESSION_SPACE = "mediapipe-blendshapes-52"
METADATA_KEY = "avat3r"
# name -> channels; the order is the order refine optimises and the file stores them.
RESIDUAL_CHANNELS: dict[str, int] = {"offset": 3, "sh_dc": 3, "log_scale": 3, "opacity_logit": 1}
_RESIDUAL_PREFIX = "residual."
_LOGIT_EPS = 1e-6  # keeps logit(opacity) finite for opacities that rounded to 0 or 1


@dataclass
class BundleMetadata:
    """What the bundle says about itself (stored as JSON in the safetensors header).

    Attributes:
        model_name: the weights spec given at ``create`` (registry name, hub repo or folder).
        model_source: ``folder:/abs/path`` or ``hf://org/name@rev`` (where they were read from).
        model_sha256: hex sha256 of the model's ``model.safetensors`` (the identity check).
        resolution: crop side H = W.
        confidence_threshold: pixels below it give no Gaussian (the model config's value).
        geometry: position-map backend used; features: feature backend used (``none``).
        photos: file names of the photos used, in view order.
        ply_from_head: 4x4 rows mapping head-frame points into the .ply files' frame (default:
            the viewer frame, ``HEAD_TO_VIEWER``).
        tool_version, expression_space, format, version: filled in by default.
    """

    model_name: str
    model_source: str
    model_sha256: str
    resolution: int
    confidence_threshold: float
    geometry: str
    features: str
    photos: list[str] = field(default_factory=list)
    ply_from_head: list[list[float]] = field(default_factory=lambda: [list(row) for row in HEAD_TO_VIEWER])
    tool_version: str = __version__
    expression_space: str = EXPRESSION_SPACE
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class AvatarBundle:
    """The bundle in memory (CPU tensors; shapes in the module docstring)."""

    images: torch.Tensor
    positions: torch.Tensor
    confidence: torch.Tensor
    K: torch.Tensor
    world_to_cam: torch.Tensor
    blendshapes: torch.Tensor
    metadata: BundleMetadata
    features: torch.Tensor | None = None
    residuals: dict[str, torch.Tensor] | None = None

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    def view_inputs(self, device: torch.device | str = "cpu") -> ViewInputs:
        """Model inputs with batch 1: images ``[1, V, 3, H, W]`` in 0..1 and the rest."""
        images = self.images.permute(0, 3, 1, 2).float() / 255.0
        feats = None if self.features is None else self.features[None].float()
        return ViewInputs(
            images[None], self.positions[None].float(), self.confidence[None].float(),
            self.K[None].float(), self.world_to_cam[None].float(), feats,
        ).to(device)

    def with_residuals(self, residuals: dict[str, torch.Tensor] | None) -> AvatarBundle:
        return replace(self, residuals=None if residuals is None else {k: v.detach().cpu().float() for k, v in residuals.items()})


def zero_residuals(views: int, height: int, width: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """All-zero residual maps ``[V, H, W, C]`` (the identity)."""
    return {name: torch.zeros(views, height, width, c, device=device) for name, c in RESIDUAL_CHANNELS.items()}


def apply_residuals(maps: GaussianMaps, residuals: dict[str, torch.Tensor] | None) -> GaussianMaps:
    """``maps`` ``[B, V, H, W, ...]`` with the residuals ``[V, H, W, C]`` added (differentiably).

    Each residual acts in the space its attribute is optimised in: metres for means, SH units for
    the colour, log space for scales and logit space for opacities, so zero is the identity and
    no activation can leave its valid range.
    """
    if not residuals:
        return maps
    offset, sh_dc = residuals["offset"], residuals["sh_dc"]
    log_scale, logit = residuals["log_scale"], residuals["opacity_logit"]
    opacities = maps.opacities.clamp(_LOGIT_EPS, 1.0 - _LOGIT_EPS)
    sh = torch.cat([maps.sh[..., :1, :] + sh_dc.unsqueeze(-2), maps.sh[..., 1:, :]], dim=-2)
    return replace(
        maps,
        means=maps.means + offset,
        sh=sh,
        scales=maps.scales * torch.exp(log_scale),
        opacities=torch.sigmoid(torch.logit(opacities) + logit.squeeze(-1)),
    )


def bundle_path_for(ply_path: str | Path) -> Path:
    """``dir/avatar.ply`` -> ``dir/avatar.avat3r.safetensors``."""
    path = Path(ply_path)
    return path.with_name(path.stem + BUNDLE_SUFFIX)


def ply_path_for(bundle_path: str | Path) -> Path:
    """``dir/avatar.avat3r.safetensors`` -> ``dir/avatar.ply``."""
    path = Path(bundle_path)
    return path.with_name(path.name[: -len(BUNDLE_SUFFIX)] + ".ply")


def is_bundle_path(path: str | Path) -> bool:
    return Path(path).name.endswith(BUNDLE_SUFFIX)


def save_bundle(path: str | Path, bundle: AvatarBundle) -> None:
    """Write ``bundle`` atomically (inputs, residuals when present, metadata JSON)."""
    tensors: dict[str, torch.Tensor] = {
        "images": bundle.images.to(torch.uint8),
        "positions": bundle.positions.float(),
        "confidence": bundle.confidence.float(),
        "K": bundle.K.float(),
        "world_to_cam": bundle.world_to_cam.float(),
        "blendshapes": bundle.blendshapes.float(),
    }
    if bundle.features is not None:
        tensors["features"] = bundle.features.half()  # Sapiens features are fp16 from the start
    for name, value in (bundle.residuals or {}).items():
        tensors[_RESIDUAL_PREFIX + name] = value.float()
    save_tensors(path, tensors, {METADATA_KEY: bundle.metadata.to_json(), "format": BUNDLE_FORMAT})


def _metadata(path: Path, header: dict[str, str]) -> BundleMetadata:
    if METADATA_KEY not in header:
        raise InputFileError(path, "not an avat3r bundle (no avat3r metadata in the safetensors header)")
    try:
        data: Any = json.loads(header[METADATA_KEY])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InputFileError(path, f"bundle metadata is not valid JSON ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise InputFileError(path, "not an avat3r bundle (wrong format name in its metadata)")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputFileError(path, f"bundle format version {str(version)[:20]!r} is not a version number")
    if version > BUNDLE_VERSION:
        raise InputFileError(
            path, f"bundle format version {version} is newer than this tool reads ({BUNDLE_VERSION}); upgrade avat3r-cli"
        )
    if data.get("expression_space") != EXPRESSION_SPACE:
        raise InputFileError(path, f"expression space {str(data.get('expression_space'))[:40]!r} is not {EXPRESSION_SPACE!r}")
    # Bundles from before the frame was recorded wrote their .ply in the head frame.
    data.setdefault("ply_from_head", [list(row) for row in IDENTITY])
    fields = BundleMetadata.__dataclass_fields__
    problem = metadata_problem(data, fields)
    if problem:
        raise InputFileError(path, problem)
    try:
        rigid_parts(torch.tensor(data["ply_from_head"], dtype=torch.float64))
    except (TypeError, ValueError) as exc:
        raise InputFileError(path, f"bundle metadata ply_from_head is not a rigid 4x4 transform ({exc})") from None
    return BundleMetadata(**{k: v for k, v in data.items() if k in fields})


def load_bundle(path: str | Path) -> AvatarBundle:
    """Read and validate a bundle; InputFileError naming the file for anything unusable.

    Beyond the layout (names, dtypes, shapes, finite values): metadata of the right types and
    ranges, a resolution that matches the images, pinhole intrinsics and rigid extrinsics,
    confidences in 0..1 with at least one pixel (one Gaussian) at the threshold.
    """
    path = Path(path)
    with input_file_errors(path, "avatar bundle"):
        return _read_bundle(path)


def _read_bundle(path: Path) -> AvatarBundle:
    tensors, header = load_tensors(path)
    meta = _metadata(path, header)
    required = ("images", "positions", "confidence", "K", "world_to_cam", "blendshapes")
    missing = [k for k in required if k not in tensors]
    if missing:
        raise InputFileError(path, f"bundle lacks tensor(s) {', '.join(missing)}")
    images = tensors["images"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise InputFileError(path, f"bundle images are {images.dtype} {list(images.shape)}, expected uint8 [V, H, W, 3]")
    v, h, w, _ = images.shape
    if v == 0 or h == 0 or w == 0:
        raise InputFileError(path, f"bundle images are {list(images.shape)}: no views or no pixels")
    expected = {
        "positions": (v, 3, h, w), "confidence": (v, 1, h, w), "K": (v, 3, 3),
        "world_to_cam": (v, 4, 4), "blendshapes": (v, EXPRESSION_DIM),
        **{_RESIDUAL_PREFIX + n: (v, h, w, c) for n, c in RESIDUAL_CHANNELS.items()},
    }
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise InputFileError(path, f"bundle tensor {name} is {list(tensors[name].shape)}, expected {list(shape)}")
    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputFileError(path, f"bundle tensor {name} holds NaN or infinite values")
    present = [n for n in RESIDUAL_CHANNELS if _RESIDUAL_PREFIX + n in tensors]
    if present and len(present) != len(RESIDUAL_CHANNELS):
        raise InputFileError(path, f"bundle has only some residuals ({', '.join(present)})")
    features = tensors.get("features")
    if features is not None and (features.ndim != 4 or features.shape[0] != v):
        raise InputFileError(path, f"bundle features are {list(features.shape)}, expected [{v}, C_f, h, w]")
    if meta.resolution != h or h != w:
        raise InputFileError(path, f"bundle images are {h}x{w} but its metadata says resolution {meta.resolution}")
    problem = camera_problem(tensors["K"], tensors["world_to_cam"]) or confidence_problem(
        tensors["confidence"].float(), meta.confidence_threshold
    )
    if problem:
        raise InputFileError(path, problem)
    residuals = {n: tensors[_RESIDUAL_PREFIX + n].float() for n in present} or None
    return AvatarBundle(
        images=images, positions=tensors["positions"].float(), confidence=tensors["confidence"].float(),
        K=tensors["K"].float(), world_to_cam=tensors["world_to_cam"].float(),
        blendshapes=tensors["blendshapes"].float(), metadata=meta, features=features, residuals=residuals,
    )
