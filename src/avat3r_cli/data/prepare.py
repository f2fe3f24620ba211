"""Preparing a dataset: each image through the same preprocessing ``create`` runs on photos.

Per view: MediaPipe finds the face, its landmarks are lifted with the dataset's (known) camera,
the head is cropped around the same head sphere as photos are, and the template backend renders
the position map, carried over the subject's mask as a photo's is over its person mask. Cameras
come from the dataset (real rigs are calibrated; synthetic ones exact) rather than from PnP, so
targets and inputs share one frame; see docs/dataset.md.

Letters: T timesteps, C cameras, R crop side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.data.layout import list_subjects, read_subject
from avat3r_cli.data.prepare_dust3r import subject_dust3r_maps
from avat3r_cli.data.prepared import MAPS_BY_GEOMETRY, is_current, prepared_name, save_prepared
from avat3r_cli.io.images import load_photo
from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.preprocess.crop import crop_camera, crop_photo, head_crop_box
from avat3r_cli.preprocess.face import FaceAnalyzer
from avat3r_cli.preprocess.template_geometry import (
    extend_to_person,
    lift_landmarks,
    render_position_map,
    template_gaussians,
)

if TYPE_CHECKING:
    from avat3r_cli.preprocess.dust3r.model import Dust3r


def prepare_subject(
    subject_dir: Path, resolution: int, analyzer: FaceAnalyzer, geometry: str = "template", dust3r: Dust3r | None = None
) -> Path:
    """Write ``subject_dir/prepared_r{R}_{geometry}.safetensors``; returns its path.

    Views where MediaPipe finds no face (profiles, backs) use the canonical face unlifted. With
    ``geometry="dust3r"`` the input cameras' maps are then replaced by DUSt3R's
    (``data/prepare_dust3r.py``), which needs the loaded ``dust3r`` model.
    """
    check_geometry(geometry)
    if geometry == "dust3r" and dust3r is None:
        raise ValueError("geometry 'dust3r' needs a loaded DUSt3R model")
    subject = read_subject(subject_dir)
    canonical = load_canonical_face()
    names = subject.camera_names
    t_count, c_count, r = len(subject.timesteps), len(names), resolution
    images = np.zeros((t_count, c_count, r, r, 3), np.uint8)
    masks = np.full((t_count, c_count, r, r), 255, np.uint8)
    positions = np.zeros((t_count, c_count, 3, r, r), np.float16)
    confidence = np.zeros((t_count, c_count, r, r), np.uint8)
    boxes = [head_crop_box(subject.cameras[n]) for n in names]
    crop_cams = [crop_camera(subject.cameras[n], box, r) for n, box in zip(names, boxes)]
    detected = 0
    for t in range(t_count):
        for c, name in enumerate(names):
            photo = load_photo(subject.image_path(t, name))
            images[t, c] = crop_photo(photo, boxes[c], r)
            mask_path = subject.mask_path(t, name)
            if mask_path is not None:
                mask = load_photo(mask_path)
                masks[t, c] = crop_photo(mask, boxes[c], r)[..., 0]
            face = analyzer.analyze(photo)
            if face is not None:
                detected += 1
                vertices = lift_landmarks(face.landmarks, subject.cameras[name], canonical)
            else:
                vertices = canonical.vertices
            pmap = render_position_map(template_gaussians(vertices, canonical), crop_cams[c])
            if mask_path is not None:  # as photos are: the map carried over the person's mask
                pmap = extend_to_person(pmap, torch.from_numpy(masks[t, c] > 127), crop_cams[c])
            positions[t, c] = pmap.points.numpy().astype(np.float16)
            confidence[t, c] = np.round(pmap.confidence[0].numpy() * 255).astype(np.uint8)
    if geometry == "dust3r":
        positions, confidence = subject_dust3r_maps(images, crop_cams, subject.input_candidates(), positions,
                                                    confidence, dust3r)
    path = subject_dir / prepared_name(resolution, geometry)
    arrays = {
        "images": images,
        "masks": masks,
        "positions": positions,
        "confidence": confidence,
        "K": np.stack([cam.K.numpy() for cam in crop_cams]).astype(np.float32),
        "world_to_cam": np.stack([cam.world_to_cam.numpy() for cam in crop_cams]).astype(np.float32),
        "expressions": subject.expressions,
        "input_views": subject.input_candidates().astype(np.uint8),
    }
    save_prepared(path, arrays, {"geometry": geometry, "position_maps": MAPS_BY_GEOMETRY[geometry], "resolution": str(r),
                                 "cameras": ",".join(names), "faces_detected": f"{detected}/{t_count * c_count}"})
    return path


def check_geometry(geometry: str) -> None:
    """Raise ``Avat3rError`` unless ``geometry`` is a backend datasets can be prepared with."""
    if geometry not in MAPS_BY_GEOMETRY:
        raise Avat3rError(f"--geometry {geometry!r} is not one of {', '.join(MAPS_BY_GEOMETRY)}")


def missing_prepared(data_dir: Path, resolution: int, geometry: str) -> list[str]:
    """Subjects of ``data_dir`` without a current prepared file at ``resolution`` (missing or stale)."""
    name = prepared_name(resolution, geometry)
    return [s for s in list_subjects(data_dir) if not is_current(Path(data_dir) / s / name)]


def prepare_dataset(
    data_dir: Path,
    resolution: int,
    geometry: str = "template",
    progress: Callable[[int, int], None] | None = None,
    device: str = "cpu",
    notice: Callable[[str], None] | None = None,
) -> list[str]:
    """Prepare every subject of ``data_dir`` without a current prepared file; returns all subject names.

    With ``geometry="dust3r"`` DUSt3R is loaded once, on ``device`` (``auto|cpu|cuda[:i]|mps``),
    from the user's hub cache (``avat3r weights download dust3r``); ``notice`` gets its licence.
    """
    check_geometry(geometry)
    subjects = list_subjects(data_dir)
    todo = missing_prepared(data_dir, resolution, geometry)
    if not todo:
        return subjects
    dust3r = None
    if geometry == "dust3r":
        from avat3r_cli.core.runtime import resolve_device
        from avat3r_cli.preprocess.dust3r import DUST3R_LICENCE_NOTICE, load_dust3r

        if notice is not None:
            notice(DUST3R_LICENCE_NOTICE)
        dust3r = load_dust3r(device=resolve_device(device))
    with FaceAnalyzer() as analyzer:
        for i, name in enumerate(todo):
            prepare_subject(Path(data_dir) / name, resolution, analyzer, geometry, dust3r)
            if progress is not None:
                progress(i + 1, len(todo))
    return subjects
