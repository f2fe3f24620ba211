"""The Gaussian set every layer passes around (conventions: README.md, "How it works").

Letters: N Gaussians, K SH coefficients per channel ((degree + 1) ** 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

SH_C0 = 0.28209479177387814  # Y_0^0; colour = 0.5 + SH_C0 * sh_dc as in 3DGS


def sh_degree_from_coeffs(num_coeffs: int) -> int:
    """Degree whose coefficient count per channel is ``num_coeffs`` (1, 4, 9, 16 -> 0..3)."""
    degree = math.isqrt(num_coeffs) - 1
    if degree < 0 or (degree + 1) ** 2 != num_coeffs:
        raise ValueError(f"{num_coeffs} SH coefficients per channel is not (degree + 1)^2")
    return degree


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in 0..1 ``[..., 3]`` -> degree-0 SH coefficient ``[..., 3]``."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(sh_dc: torch.Tensor) -> torch.Tensor:
    """Degree-0 SH coefficient ``[..., 3]`` -> colour ``[..., 3]`` (not clamped)."""
    return sh_dc * SH_C0 + 0.5


@dataclass
class Gaussians:
    """A set of 3D Gaussians with activated attributes.

    Attributes:
        means: ``[N, 3]`` centres, world frame, metres.
        quats: ``[N, 4]`` rotations, wxyz, unit length.
        scales: ``[N, 3]`` standard deviations along the rotated axes, metres (> 0).
        opacities: ``[N]`` in 0..1.
        sh: ``[N, K, 3]`` spherical-harmonic coefficients, K = (degree + 1) ** 2.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} has shape {list(got)}, expected {list(shape)}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh has shape {list(self.sh.shape)}, expected [N, K, 3]")
        sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def count(self) -> int:
        """Number of Gaussians N."""
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """SH degree 0..3."""
        return sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Gaussians:
        """Copy to ``device`` (and floating ``dtype`` when given)."""
        return Gaussians(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})

    def select(self, index: torch.Tensor) -> Gaussians:
        """The subset picked by a boolean mask ``[N]`` or an index tensor ``[M]``."""
        return Gaussians(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_sh_degree(self, degree: int) -> Gaussians:
        """Pad with zeros (or truncate) the SH coefficients to ``degree``."""
        k = (degree + 1) ** 2
        have = self.sh.shape[1]
        if k <= have:
            return replace(self, sh=self.sh[:, :k])
        pad = self.sh.new_zeros(self.count, k - have, 3)
        return replace(self, sh=torch.cat([self.sh, pad], dim=1))

    def colors_dc(self) -> torch.Tensor:
        """View-independent colour ``[N, 3]`` from the degree-0 term (not clamped)."""
        return sh_dc_to_rgb(self.sh[:, 0])

    @staticmethod
    def from_colors(
        means: torch.Tensor,
        quats: torch.Tensor,
        scales: torch.Tensor,
        opacities: torch.Tensor,
        colors: torch.Tensor,
    ) -> Gaussians:
        """Build a degree-0 set from plain RGB colours ``[N, 3]`` in 0..1."""
        return Gaussians(means, quats, scales, opacities, rgb_to_sh_dc(colors)[:, None, :])
