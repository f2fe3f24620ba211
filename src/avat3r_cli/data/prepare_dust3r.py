"""DUSt3R position maps for a dataset subject (``avat3r prepare-data --geometry dust3r``).

``create --geometry dust3r`` gives DUSt3R all of its photos' crops as one scene and aligns the
result to the photos' solved cameras (``preprocess/dust3r/backend.py``). A training subject gets
its maps the same way, one scene per timestep: the crops of every camera that may be a model
input (``cameras.json``'s ``input``) at that timestep, aligned to their known crop cameras.

Choices, and why:

* One scene per timestep, not one per training sample: a sample draws 1-4 inputs, possibly from
  different timesteps, and there are too many such draws to run DUSt3R on each. Every map of a
  scene is in the head frame, so a sample that mixes timesteps still gets maps that agree with
  their own images. A scene of all the input cameras is more constrained than a user's 1-4
  photos; the model therefore sees somewhat cleaner maps in training than at test time.
* Cameras that are never inputs keep the template maps: training reads only their images and
  masks (as targets), and DUSt3R's cost grows with the square of the views in a scene.

Letters: T timesteps, C cameras, R crop side, I input cameras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from avat3r_cli.core.camera import Camera

if TYPE_CHECKING:
    from avat3r_cli.preprocess.dust3r.model import Dust3r


def subject_dust3r_maps(
    images: np.ndarray,
    cameras: list[Camera],
    input_views: np.ndarray,
    template_positions: np.ndarray,
    template_confidence: np.ndarray,
    model: Dust3r,
) -> tuple[np.ndarray, np.ndarray]:
    """A subject's position maps with the input cameras' replaced by DUSt3R's (module docstring).

    Args:
        images: ``[T, C, R, R, 3]`` uint8 crops.
        cameras: C crop cameras (R x R pixels, head frame, metres).
        input_views: ``[C]`` bool, the cameras that may be model inputs (at least one).
        template_positions: ``[T, C, 3, R, R]`` the template maps (kept for the other cameras).
        template_confidence: ``[T, C, R, R]`` uint8 (confidence x 255), likewise.
        model: a loaded ``Dust3r``; its device runs inference and alignment.

    Returns:
        positions ``[T, C, 3, R, R]`` float16 and confidence ``[T, C, R, R]`` uint8, as
        ``data/prepared.py`` stores them.
    """
    from avat3r_cli.preprocess.dust3r.backend import dust3r_position_maps

    inputs = np.flatnonzero(np.asarray(input_views, dtype=bool))
    if inputs.size == 0:
        raise ValueError("no camera may be an input")
    positions = np.array(template_positions, dtype=np.float16, copy=True)
    confidence = np.array(template_confidence, dtype=np.uint8, copy=True)
    scene_cameras = [cameras[c] for c in inputs]
    for t in range(images.shape[0]):
        points, conf = dust3r_position_maps(images[t, inputs], scene_cameras, model)  # [I, 3, R, R], [I, 1, R, R]
        positions[t, inputs] = points.numpy().astype(np.float16)
        confidence[t, inputs] = np.round(conf[:, 0].numpy() * 255).astype(np.uint8)
    return positions, confidence
