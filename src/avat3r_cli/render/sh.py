"""Real spherical harmonics up to degree 3, in the 3DGS / gsplat basis and sign convention."""

from __future__ import annotations

import torch

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """SH basis values ``[..., (degree + 1) ** 2]`` at unit directions ``dirs [..., 3]``."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], _C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            _C2[0] * xy,
            _C2[1] * yz,
            _C2[2] * (2.0 * zz - xx - yy),
            _C2[3] * xz,
            _C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            _C3[0] * y * (3.0 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4.0 * zz - xx - yy),
            _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            _C3[4] * x * (4.0 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_color(sh: torch.Tensor, means: torch.Tensor, camera_center: torch.Tensor) -> torch.Tensor:
    """Colour ``[N, 3]`` of each Gaussian seen from ``camera_center [3]``.

    ``sh [N, K, 3]`` coefficients, ``means [N, 3]``. As in gsplat (and the original 3DGS CUDA code)
    the result is ``max(SH(dir) + 0.5, 0)``: clamped below only.
    """
    degree = int(round(sh.shape[1] ** 0.5)) - 1
    if degree == 0:
        rgb = _C0 * sh[:, 0]
    else:
        dirs = torch.nn.functional.normalize(means - camera_center, dim=-1)
        rgb = (sh_basis(degree, dirs)[..., None] * sh).sum(dim=1)
    return torch.clamp_min(rgb + 0.5, 0.0)
