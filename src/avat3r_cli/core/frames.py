"""The two world frames of the project: the head frame the model works in, the viewer frame of files.

* **Head frame** (cameras, position maps, the model, ``Avatar``): OpenCV-like, metres, origin
  inside the head, x towards the subject's left, y down, z from the face towards the back of the
  head. The face looks towards -z and up is -y.
* **Viewer frame** (``avatar.ply``, ``animate --ply-dir`` frames, what ``avat3r render`` expects):
  the head frame turned 180° about x, so y is up and the face looks towards +z. Splat viewers
  (PlayCanvas / SuperSplat, the web viewers built on three.js) put their camera on +z looking at
  the origin with y up, so they show the face first and upright. x still points to the
  subject's left, which a viewer facing the subject sees on its right: a rotation, not a mirror.

``transform_gaussians`` moves a Gaussian set by a rigid 4x4 transform: means, rotations and, for
the axis flips used here, the view-dependent SH coefficients.

Letters: N Gaussians, K SH coefficients per channel.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from avat3r_cli.core.gaussians import Gaussians

HEAD_UP = (0.0, -1.0, 0.0)
HEAD_FRONT = (0.0, 0.0, -1.0)  # from the head's centre towards the face
VIEWER_UP = (0.0, 1.0, 0.0)
VIEWER_FRONT = (0.0, 0.0, 1.0)
# Head frame -> viewer frame: 180° about x, (x, y, z) -> (x, -y, -z). Its own inverse.
HEAD_TO_VIEWER = ((1.0, 0.0, 0.0, 0.0), (0.0, -1.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0), (0.0, 0.0, 0.0, 1.0))
IDENTITY = ((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))

# Which of x, y, z each real SH basis function (3DGS order, coefficients 1..15) is odd in: under
# an axis flip diag(sx, sy, sz) the function picks up the product of the flipped odd axes' signs.
_SH_ODD_AXES = (
    (0, 1, 0), (0, 0, 1), (1, 0, 0),  # degree 1: y, z, x
    (1, 1, 0), (0, 1, 1), (0, 0, 0), (1, 0, 1), (0, 0, 0),  # 2: xy, yz, 3z²-r², xz, x²-y²
    (0, 1, 0), (1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0), (0, 0, 1), (1, 0, 0),  # 3
)  # fmt: skip
_RIGID_TOL = 1e-5


def rigid_parts(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rotation [3, 3], translation [3])`` of a rigid ``[4, 4]``; ValueError when it is not one."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if tuple(m.shape) != (4, 4) or not bool(torch.isfinite(m).all()):
        raise ValueError(f"a rigid transform is a finite 4x4 matrix, got shape {list(m.shape)}")
    rot = m[:3, :3]
    last = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    orthonormal = torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=_RIGID_TOL, rtol=0)
    if not orthonormal or abs(float(torch.linalg.det(rot)) - 1.0) > _RIGID_TOL or not torch.allclose(m[3], last):
        raise ValueError("not a rigid transform (rotation part not orthonormal with determinant 1, or last row not 0 0 0 1)")
    return rot, m[:3, 3]


def rotation_to_quat(rot: torch.Tensor) -> torch.Tensor:
    """Unit quaternion ``[4]`` (wxyz) of a rotation matrix ``[3, 3]`` (Shepperd's method: stable for any angle)."""
    r = rot.to(torch.float64)
    trace = float(r.trace())
    diag = [float(r[i, i]) for i in range(3)]
    if trace >= max(diag):
        w = (1.0 + trace) ** 0.5 / 2.0
        q = [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]
    else:
        i = diag.index(max(diag))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = (1.0 + r[i, i] - r[j, j] - r[k, k]) ** 0.5 * 2.0  # 4 * |q_i|
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = s / 4.0
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    out = torch.tensor([float(v) for v in q], dtype=torch.float64)
    return out / torch.linalg.norm(out)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a ⊗ b`` of wxyz quaternions ``[..., 4]`` (rotation b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)  # fmt: skip


def _sh_signs(rot: torch.Tensor, coeffs: int) -> torch.Tensor:
    """``[K]`` signs that carry SH coefficients through the axis flip ``rot``; ValueError otherwise."""
    if coeffs == 1:
        return torch.ones(1, dtype=torch.float64)
    flips = torch.diagonal(rot)
    if not torch.allclose(rot, torch.diag(flips), atol=_RIGID_TOL, rtol=0):
        raise ValueError(
            "moving SH coefficients of degree > 0 is implemented for axis flips (180° turns about x, y or z) "
            "only; this transform is a general rotation"
        )
    sx, sy, sz = (1.0 if float(f) > 0 else -1.0 for f in flips)
    signs = [1.0] + [sx**ox * sy**oy * sz**oz for ox, oy, oz in _SH_ODD_AXES[: coeffs - 1]]
    return torch.tensor(signs, dtype=torch.float64)


def transform_gaussians(gaussians: Gaussians, matrix: torch.Tensor) -> Gaussians:
    """``gaussians`` moved by the rigid transform ``matrix [4, 4]`` (new point = R p + t).

    Means are transformed, rotations composed (``q' = q_R ⊗ q``), scales and opacities kept;
    SH coefficients of degree > 0 are carried exactly through axis flips (the only rotations the
    project's frames need) and refused for other rotations.

    Raises:
        ValueError: ``matrix`` is not rigid, or it is a general rotation and the SH degree is > 0.
    """
    rot, shift = rigid_parts(matrix)
    signs = _sh_signs(rot, gaussians.sh.shape[1])
    dtype, device = gaussians.means.dtype, gaussians.means.device
    r, t = rot.to(device, dtype), shift.to(device, dtype)
    q = rotation_to_quat(rot).to(device, gaussians.quats.dtype)
    return replace(
        gaussians,
        means=gaussians.means @ r.T + t,
        quats=quat_multiply(q.expand_as(gaussians.quats), gaussians.quats),
        sh=gaussians.sh * signs.to(device, gaussians.sh.dtype)[None, :, None],
    )


def head_to_viewer(gaussians: Gaussians) -> Gaussians:
    """Head-frame Gaussians in the viewer frame (module docstring)."""
    return transform_gaussians(gaussians, torch.tensor(HEAD_TO_VIEWER))
