"""eval/back_view.py: the view from behind tells a see-through head from a closed one."""

from __future__ import annotations

import math

import torch

from avat3r_cli.core.frames import head_to_viewer
from avat3r_cli.core.gaussians import Gaussians, rgb_to_sh_dc
from avat3r_cli.eval.back_view import back_view_check
from avat3r_cli.io.ply import read_ply

from test_example_avatar import COMMITTED


def sheet(z: float, texture: torch.Tensor) -> Gaussians:
    """A 0.2 m square of opaque Gaussians at depth ``z`` (head frame) coloured by ``texture [n, n]``."""
    n = texture.shape[0]
    xy = (torch.arange(n) + 0.5) / n * 0.2 - 0.1
    ys, xs = torch.meshgrid(xy, xy, indexing="ij")
    means = torch.stack([xs.flatten(), ys.flatten(), torch.full((n * n,), z)], dim=1)
    grey = texture.flatten()[:, None].expand(-1, 3)
    step = 0.2 / n
    return Gaussians(
        means=means, quats=torch.tensor([[1.0, 0, 0, 0]]).expand(n * n, 4).clone(),
        scales=torch.tensor([[step * 0.7, step * 0.7, 1e-4]]).expand(n * n, 3).clone(),
        opacities=torch.full((n * n,), 0.99), sh=rgb_to_sh_dc(grey)[:, None, :],
    )


def merged(*parts: Gaussians) -> Gaussians:
    return Gaussians(**{k: torch.cat([getattr(p, k) for p in parts]) for k in ("means", "quats", "scales", "opacities", "sh")})


def face_texture(n: int = 48) -> torch.Tensor:
    """Two dark eyes, a dark mouth off-centre (so that mirroring matters) on light skin."""
    t = torch.full((n, n), 0.8)
    for r, c, size in ((18, 15, 4), (18, 31, 4), (32, 26, 6)):
        t[r - 2:r + 2, c - size // 2:c + size // 2] = 0.15
    return t


def test_a_see_through_mask_mirrors_the_face_and_lies_a_head_further() -> None:
    # A one-photo avatar at its worst: only the face, a flat mask at the front (z = -0.09).
    check = back_view_check(sheet(-0.09, face_texture()))
    assert check.mirror_correlation > 0.8
    assert check.back_depth_m > 0.05


def test_a_back_of_the_head_hides_the_face() -> None:
    hair = 0.25 + 0.1 * torch.rand(48, 48, generator=torch.Generator().manual_seed(0))
    check = back_view_check(merged(sheet(-0.09, face_texture()), sheet(0.09, hair)))
    assert abs(check.mirror_correlation) < 0.2
    assert check.back_depth_m < -0.05
    assert check.back_coverage > 0.95


def test_the_hand_made_example_head_is_closed_and_its_front_half_is_not() -> None:
    head = head_to_viewer(read_ply(COMMITTED))  # 180° about x is its own inverse: viewer -> head
    closed = back_view_check(head)
    front = head.means[:, 2] < 0.0
    half = back_view_check(Gaussians(**{k: getattr(head, k)[front] for k in ("means", "quats", "scales", "opacities", "sh")}))
    assert abs(closed.mirror_correlation) < 0.2 and closed.back_depth_m < -0.05
    assert half.back_depth_m > 0.05
    assert not math.isnan(half.mirror_correlation)
