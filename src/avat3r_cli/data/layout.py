"""The multi-view dataset layout (docs/dataset.md): subjects, timesteps, cameras, expressions.

    DATASET/
      dataset.json                      {"format": "avat3r-multiview", "version": 1, ...}
      SUBJECT/
        cameras.json                    {"cameras": {"CAM": {"K", "world_to_cam", "height", "width"[, "input"]}}}
        expressions.npy                 [T, 52] float32, MediaPipe blendshape order
        images/TIMESTEP/CAM.png         RGB (or .jpg); TIMESTEP = 000, 001, ...
        masks/TIMESTEP/CAM.png          optional foreground masks (8-bit, 255 = head)

Letters: T timesteps, C cameras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.errors import InputFileError
from avat3r_cli.core.expressions import EXPRESSION_DIM

DATASET_FORMAT = "avat3r-multiview"
DATASET_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class SubjectLayout:
    """One subject's folder, read (not loaded) from disk.

    Attributes:
        root: the subject folder.
        name: the folder's name.
        cameras: camera name -> Camera, in sorted name order.
        expressions: ``[T, 52]`` float32 per-timestep expression codes.
        timesteps: folder names under images/, sorted; T of them.
        input_views: camera name -> whether it is a plausible input view (cameras.json's optional
            ``"input"``; a camera without it, as in older datasets, is one).
    """

    root: Path
    name: str
    cameras: dict[str, Camera]
    expressions: np.ndarray
    timesteps: tuple[str, ...]
    input_views: dict[str, bool] = field(default_factory=dict)

    @property
    def camera_names(self) -> tuple[str, ...]:
        return tuple(self.cameras)

    def input_candidates(self) -> np.ndarray:
        """``[C]`` bool in camera-name order: the cameras model inputs may be drawn from."""
        return np.array([self.input_views.get(name, True) for name in self.cameras], dtype=bool)

    def image_path(self, timestep: int, camera: str) -> Path:
        """The image of ``camera`` at timestep index ``timestep`` (any accepted suffix)."""
        folder = self.root / "images" / self.timesteps[timestep]
        for suffix in IMAGE_SUFFIXES:
            path = folder / f"{camera}{suffix}"
            if path.is_file():
                return path
        raise InputFileError(folder / f"{camera}.png", "image missing from the dataset")

    def mask_path(self, timestep: int, camera: str) -> Path | None:
        """The optional mask of an image, or None."""
        path = self.root / "masks" / self.timesteps[timestep] / f"{camera}.png"
        return path if path.is_file() else None


def cameras_to_json(cameras: dict[str, Camera], input_views: dict[str, bool] | None = None) -> dict:
    """The ``cameras.json`` document for ``cameras``; ``input_views`` adds each named camera's ``"input"`` flag."""
    doc: dict = {
        "cameras": {
            name: {
                "K": cam.K.tolist(),
                "world_to_cam": cam.world_to_cam.tolist(),
                "height": cam.height,
                "width": cam.width,
            }
            for name, cam in cameras.items()
        }
    }
    for name, flag in (input_views or {}).items():
        doc["cameras"][name]["input"] = bool(flag)
    return doc


def read_input_views(path: Path) -> dict[str, bool]:
    """The optional ``"input"`` flag of each camera in a ``cameras.json`` (cameras without one are left out)."""
    try:
        entries = json.loads(path.read_text())["cameras"]
    except FileNotFoundError:
        raise InputFileError(path, "file does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputFileError(path, f"not a cameras file ({type(error).__name__}: {error})") from None
    flags = {}
    for name, entry in entries.items():
        if isinstance(entry, dict) and "input" in entry:
            if not isinstance(entry["input"], bool):
                raise InputFileError(path, f"camera {name!r}: \"input\" must be true or false, got {entry['input']!r}")
            flags[name] = entry["input"]
    return flags


def read_cameras(path: Path) -> dict[str, Camera]:
    """Cameras from a ``cameras.json``; errors name the file and the camera."""
    try:
        doc = json.loads(path.read_text())
        entries = doc["cameras"]
    except FileNotFoundError:
        raise InputFileError(path, "file does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputFileError(path, f"not a cameras file ({type(error).__name__}: {error})") from None
    cameras = {}
    for name in sorted(entries):
        entry = entries[name]
        try:
            cameras[name] = Camera(
                torch.tensor(entry["K"], dtype=torch.float32),
                torch.tensor(entry["world_to_cam"], dtype=torch.float32),
                int(entry["height"]),
                int(entry["width"]),
            )
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise InputFileError(path, f"camera {name!r} is malformed ({error})") from None
    if not cameras:
        raise InputFileError(path, "no cameras")
    return cameras


def read_subject(root: str | Path) -> SubjectLayout:
    """The layout of one subject folder, validated (cameras, expressions, timesteps)."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "subject folder does not exist")
    cameras = read_cameras(root / "cameras.json")
    expr_path = root / "expressions.npy"
    try:
        expressions = np.load(expr_path, allow_pickle=False).astype(np.float32)
    except FileNotFoundError:
        raise InputFileError(expr_path, "file does not exist") from None
    except (ValueError, OSError) as error:
        raise InputFileError(expr_path, f"not a float array without pickles ({error})") from None
    timesteps = tuple(sorted(p.name for p in (root / "images").iterdir() if p.is_dir())) if (root / "images").is_dir() else ()
    if expressions.ndim != 2 or expressions.shape[1] != EXPRESSION_DIM:
        raise InputFileError(expr_path, f"shape {list(expressions.shape)}, expected [T, {EXPRESSION_DIM}]")
    if len(timesteps) != expressions.shape[0]:
        raise InputFileError(root, f"{len(timesteps)} timestep folders under images/ but {expressions.shape[0]} expression codes")
    if not np.isfinite(expressions).all():
        raise InputFileError(expr_path, "contains NaN or inf")
    input_views = read_input_views(root / "cameras.json")
    if input_views and not any(input_views.get(name, True) for name in cameras):
        raise InputFileError(root / "cameras.json", 'no camera is an input view (every "input" is false)')
    return SubjectLayout(root, root.name, cameras, expressions, timesteps, input_views)


def list_subjects(dataset: str | Path) -> list[str]:
    """Subject folder names of a dataset, from ``dataset.json`` or else every folder with cameras."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputFileError(dataset, "dataset folder does not exist")
    index = dataset / "dataset.json"
    if index.is_file():
        try:
            doc = json.loads(index.read_text())
            return list(doc["subjects"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputFileError(index, f"not a dataset index ({error})") from None
    return sorted(p.name for p in dataset.iterdir() if (p / "cameras.json").is_file())


def write_dataset_index(dataset: str | Path, subjects: list[str], **extra) -> None:
    """Write ``dataset.json`` listing ``subjects`` (plus any extra metadata)."""
    doc = {"format": DATASET_FORMAT, "version": DATASET_VERSION, "expression_space": "mediapipe-blendshapes-52",
           "subjects": subjects, **extra}
    path = Path(dataset) / "dataset.json"
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
