"""Misregistered input views: every pixel still projects where it did, the views move."""

from __future__ import annotations

import numpy as np
import torch

from avat3r_cli.core.camera import orbit_cameras
from avat3r_cli.data.prepared import TrainingSample
from avat3r_cli.model.inputs import ViewInputs
from avat3r_cli.train.misregister import misregister_inputs


def _sample(v: int = 3, r: int = 8) -> TrainingSample:
    cams = orbit_cameras(torch.zeros(3), 0.6, v, r, r)
    g = torch.Generator().manual_seed(0)
    inputs = ViewInputs(
        images=torch.rand(1, v, 3, r, r, generator=g),
        positions=0.1 * torch.randn(1, v, 3, r, r, generator=g),
        confidence=torch.ones(1, v, 1, r, r),
        K=torch.stack([c.K for c in cams])[None],
        world_to_cam=torch.stack([c.world_to_cam for c in cams])[None],
    )
    return TrainingSample(inputs=inputs, expression=torch.zeros(1, 52), target_images=torch.rand(2, 3, r, r),
                          target_masks=torch.ones(2, 1, r, r), target_K=inputs.K[0, :2],
                          target_world_to_cam=inputs.world_to_cam[0, :2], input_expressions=torch.zeros(v, 52))


def _pixels(inputs: ViewInputs) -> torch.Tensor:
    """``[V, 2, H*W]`` where each position-map point projects."""
    out = []
    for v in range(inputs.K.shape[1]):
        w2c, k = inputs.world_to_cam[0, v], inputs.K[0, v]
        cam = w2c[:3, :3] @ inputs.positions[0, v].reshape(3, -1) + w2c[:3, 3:]
        uvw = k @ cam
        out.append(uvw[:2] / uvw[2:])
    return torch.stack(out)


def test_views_move_but_every_pixel_projects_where_it_did():
    sample = _sample()
    moved = misregister_inputs(sample, 2.0, 0.002, np.random.default_rng(0))
    torch.testing.assert_close(_pixels(moved.inputs), _pixels(sample.inputs), atol=1e-3, rtol=0)
    shift_mm = (moved.inputs.positions - sample.inputs.positions).norm(dim=2).mean(dim=(0, 2, 3)) * 1000
    assert (shift_mm > 0.5).all() and (shift_mm < 20).all()
    assert torch.equal(moved.target_world_to_cam, sample.target_world_to_cam)
    assert torch.equal(moved.inputs.images, sample.inputs.images)


def test_zero_noise_changes_nothing():
    sample = _sample()
    same = misregister_inputs(sample, 0.0, 0.0, np.random.default_rng(0))
    torch.testing.assert_close(same.inputs.positions, sample.inputs.positions)
    torch.testing.assert_close(same.inputs.world_to_cam, sample.inputs.world_to_cam)
