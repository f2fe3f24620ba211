"""Prepared subjects: every view of a subject already turned into model inputs, on disk.

Preparing a dataset runs the same preprocessing ``create`` runs on photos (face analysis, head
crop, position maps) once per image, and stores one safetensors file per subject:

    SUBJECT/prepared_r{R}_{geometry}.safetensors
      images      uint8   [T, C, R, R, 3]   head crops
      masks       uint8   [T, C, R, R]      foreground (255) for the loss's random background
      positions   float16 [T, C, 3, R, R]   head-frame points, metres
      confidence  uint8   [T, C, R, R]      position-map confidence * 255
      K           float32 [C, 3, 3]         crop intrinsics
      world_to_cam float32 [C, 4, 4]
      expressions float32 [T, 52]
      input_views uint8   [C]               optional: 1 where the camera may be a model input
                                            (cameras.json's "input"); absent in older files: all 1

The metadata's ``geometry`` names the backend and ``position_maps`` which maps the file holds
(``MAPS_BY_GEOMETRY``: the template's carried over the silhouette, or DUSt3R's aligned to the
cameras). A template file without it was written before the maps were carried over the person's
silhouette, so ``prepare-data`` writes it again and training and evaluation refuse it.

Training reads only the slices a sample needs (safetensors slicing), so thousands of subjects
fit on disk without being loaded.

Letters: T timesteps, C cameras, R crop side, V input views, M target views.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.data.sampler import SampleSpec
from avat3r_cli.io.tensors import save_tensors
from avat3r_cli.model.inputs import ViewInputs

# The position maps prepare-data writes: the template's, carried over the person's silhouette
# (preprocess/template_geometry.py, extend_to_person). A model trained on one kind reads the
# other as different inputs, so a file of any other kind is stale.
POSITION_MAPS = "silhouette"
# DUSt3R's maps, aligned to the known cameras (data/prepare_dust3r.py).
DUST3R_MAPS = "dust3r-aligned"
MAPS_BY_GEOMETRY = {"template": POSITION_MAPS, "dust3r": DUST3R_MAPS}
PREPARED_KEYS = ("images", "masks", "positions", "confidence", "K", "world_to_cam", "expressions")


def prepared_name(resolution: int, geometry: str) -> str:
    """File name of a subject's prepared data at ``resolution`` with ``geometry``."""
    return f"prepared_r{resolution}_{geometry}.safetensors"


def is_current(path: str | Path) -> bool:
    """Whether the prepared file at ``path`` exists and holds its backend's current maps (module docstring)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return metadata.get("position_maps") == MAPS_BY_GEOMETRY.get(metadata.get("geometry", "template"))
    except Exception:  # safetensors raises its own error types; an unreadable file is not current
        return False


def save_prepared(path: str | Path, arrays: dict[str, np.ndarray | torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a prepared subject (arrays as in the module docstring) atomically."""
    missing = [k for k in PREPARED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"prepared subject lacks {missing}")
    tensors = {k: torch.as_tensor(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    save_tensors(path, tensors, metadata)


@dataclass
class TrainingSample:
    """One sample: V input views (maybe at different timesteps), M targets at one timestep.

    Attributes:
        inputs: ``ViewInputs`` with B = 1.
        expression: ``[1, 52]`` the target timestep's code.
        target_images: ``[M, 3, R, R]`` in 0..1.
        target_masks: ``[M, 1, R, R]`` in 0..1.
        target_K: ``[M, 3, 3]``; target_world_to_cam ``[M, 4, 4]``.
        input_expressions: ``[V, 52]`` the input views' own codes (for baselines).
    """

    inputs: ViewInputs
    expression: torch.Tensor
    target_images: torch.Tensor
    target_masks: torch.Tensor
    target_K: torch.Tensor
    target_world_to_cam: torch.Tensor
    input_expressions: torch.Tensor


class PreparedSubject:
    """Lazy access to one prepared subject file.

    ``input_views`` ``[C]`` bool says which cameras may be model inputs (all of them in files
    written before the flag existed).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(self.path, "prepared subject file does not exist (run the preparation first)")
        try:
            with safe_open(str(self.path), framework="pt") as f:
                keys = set(f.keys())
                self.metadata = f.metadata() or {}
                self.K = f.get_tensor("K")
                self.world_to_cam = f.get_tensor("world_to_cam")
                self.expressions = f.get_tensor("expressions")
                flags = f.get_tensor("input_views") if "input_views" in keys else None
                shape = f.get_slice("images").get_shape()
        except Exception as error:  # safetensors raises its own error types
            raise InputFileError(self.path, f"not a readable prepared subject ({error})") from None
        missing = [k for k in PREPARED_KEYS if k not in keys]
        if missing:
            raise InputFileError(self.path, f"missing tensors: {', '.join(missing)}")
        self.num_timesteps, self.num_cameras, self.resolution = int(shape[0]), int(shape[1]), int(shape[2])
        if flags is None:
            self.input_views = np.ones(self.num_cameras, dtype=bool)
        elif tuple(flags.shape) != (self.num_cameras,) or not bool(flags.any()):
            raise InputFileError(self.path, f"input_views has shape {list(flags.shape)} or no input camera, "
                                            f"expected [{self.num_cameras}] with at least one 1")
        else:
            self.input_views = flags.numpy().astype(bool)

    def camera_centers(self) -> np.ndarray:
        """``[C, 3]`` camera centres in the head frame."""
        rot, trans = self.world_to_cam[:, :3, :3], self.world_to_cam[:, :3, 3]
        return (-(rot.transpose(1, 2) @ trans[..., None])[..., 0]).numpy()

    def views(self, timesteps: list[int], cameras: list[int]) -> dict[str, torch.Tensor]:
        """The (timestep, camera) views as float tensors: images ``[N, 3, R, R]``, masks, positions, confidence."""
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("images", "masks", "positions", "confidence")}
        with safe_open(str(self.path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in out}
            for t, c in zip(timesteps, cameras):
                out["images"].append(slices["images"][t : t + 1, c : c + 1][0, 0].permute(2, 0, 1).float() / 255.0)
                out["masks"].append(slices["masks"][t : t + 1, c : c + 1][0, 0][None].float() / 255.0)
                out["positions"].append(slices["positions"][t : t + 1, c : c + 1][0, 0].float())
                out["confidence"].append(slices["confidence"][t : t + 1, c : c + 1][0, 0][None].float() / 255.0)
        return {k: torch.stack(v) for k, v in out.items()}

    def sample(self, spec: SampleSpec) -> TrainingSample:
        """Assemble the views of ``spec`` into a ``TrainingSample``."""
        cams_in = list(spec.input_cameras)
        inp = self.views(list(spec.input_timesteps), cams_in)
        tgt = self.views([spec.target_timestep] * len(spec.target_cameras), list(spec.target_cameras))
        inputs = ViewInputs(
            images=inp["images"][None],
            positions=inp["positions"][None],
            confidence=inp["confidence"][None],
            K=self.K[cams_in][None],
            world_to_cam=self.world_to_cam[cams_in][None],
        )
        cams_out = list(spec.target_cameras)
        return TrainingSample(
            inputs=inputs,
            expression=self.expressions[spec.target_timestep][None],
            target_images=tgt["images"],
            target_masks=tgt["masks"],
            target_K=self.K[cams_out],
            target_world_to_cam=self.world_to_cam[cams_out],
            input_expressions=self.expressions[list(spec.input_timesteps)],
        )
