"""Input views misregistered as a real capture's are: each view's camera and position map moved together.

A photo's camera is solved from its own landmarks, so its error moves the camera and the
template geometry placed through it as one: the view still explains its own pixels, but sits
a little off the head frame the other views and the targets share. Here each input view gets
a small rigid motion M of the world (rotation about the head centre, then a shift):
``world_to_cam' = world_to_cam @ M`` and ``positions' = M^-1 positions``, so every pixel
projects where it did while the views disagree with each other and with the targets.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from avat3r_cli.data.prepared import TrainingSample


def misregister_inputs(
    sample: TrainingSample, rotation_deg: float, translation_m: float, rng: np.random.Generator
) -> TrainingSample:
    """``sample`` with each input view moved by a rigid motion drawn from ``rng``.

    Args:
        sample: a training sample (B = 1; inputs with positions ``[1, V, 3, H, W]`` and
            world_to_cam ``[1, V, 4, 4]``).
        rotation_deg: standard deviation of each rotation-vector component (degrees).
        translation_m: standard deviation of each shift component (metres).
        rng: where the motions come from (three rotation then three shift draws per view).

    Returns:
        A new sample; the targets are unchanged.
    """
    inputs = sample.inputs
    positions, world_to_cam = inputs.positions.clone(), inputs.world_to_cam.clone()
    for view in range(world_to_cam.shape[1]):
        rotvec = rng.normal(0.0, np.radians(rotation_deg), 3)
        shift = torch.tensor(rng.normal(0.0, translation_m, 3), dtype=torch.float32)
        skew = torch.tensor([[0.0, -rotvec[2], rotvec[1]], [rotvec[2], 0.0, -rotvec[0]], [-rotvec[1], rotvec[0], 0.0]],
                            dtype=torch.float32)
        rotation = torch.linalg.matrix_exp(skew)
        motion = torch.eye(4)
        motion[:3, :3], motion[:3, 3] = rotation, shift
        world_to_cam[0, view] = world_to_cam[0, view] @ motion.to(world_to_cam)
        points = positions[0, view].reshape(3, -1)
        moved = rotation.T.to(points) @ (points - shift[:, None].to(points))
        positions[0, view] = moved.reshape(positions[0, view].shape)
    return replace(sample, inputs=replace(inputs, positions=positions, world_to_cam=world_to_cam))
