"""Held-out views grouped by where the camera stands relative to the face: front, side, back.

The dataset's world frame is the head frame (docs/dataset.md): x towards the subject's left, y
down, z from the face towards the back of the head. A camera's *yaw* is the angle of its centre
about the vertical (y) axis, measured from the direction the face looks (-z): 0 in front,
+90 at the subject's left, -90 at the right, ±180 behind. Its height (pitch) is ignored, so a
camera straight above or below the head counts as frontal.

Groups by ``|yaw|``: ``front`` below 45°, ``side`` 45°..135°, ``back`` above 135°. A model
that has only seen the front of a head from its inputs has to invent the back; grouping the
scores says how well it does apart from the easy frontal views.

Letters: N cameras (or images).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from avat3r_cli.eval.metrics import mean_finite

VIEW_GROUPS = ("front", "side", "back")
FRONT_MAX_DEG = 45.0
SIDE_MAX_DEG = 135.0


def camera_yaw_deg(world_to_cam: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[N, 4, 4]`` head-frame-to-camera matrices -> ``[N]`` yaw in degrees (-180..180; module docstring)."""
    w2c = torch.as_tensor(world_to_cam)
    rot, trans = w2c[:, :3, :3].double(), w2c[:, :3, 3].double()
    centre = -(rot.transpose(1, 2) @ trans[..., None])[..., 0]
    return np.degrees(np.arctan2(centre[:, 0].numpy(), -centre[:, 2].numpy()))


def view_group(yaw_deg: float) -> str:
    """``front`` (|yaw| < 45°), ``side`` (45°..135°) or ``back`` (> 135°)."""
    a = abs(float(yaw_deg))
    if a < FRONT_MAX_DEG:
        return "front"
    return "side" if a <= SIDE_MAX_DEG else "back"


@dataclass
class GroupResult:
    """One view group's means over its target images (None when it has none).

    Attributes:
        group: ``front``, ``side``, ``back`` or ``all``.
        num_images: target images in the group.
        psnr: mean whole-image PSNR (dB).
        iou: mean silhouette IoU of the rendered alpha against the target's mask.
    """

    group: str
    num_images: int
    psnr: float | None
    iou: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def group_results(rows: Iterable[dict[str, Any]]) -> dict[str, GroupResult]:
    """Per-image rows (each with ``view_group``, ``psnr``, ``iou``) -> ``{group: GroupResult}``, ``all`` last."""
    rows = list(rows)
    out = {}
    for group in (*VIEW_GROUPS, "all"):
        members = [r for r in rows if group == "all" or r["view_group"] == group]
        out[group] = GroupResult(
            group, len(members), mean_finite([r["psnr"] for r in members]), mean_finite([r["iou"] for r in members])
        )
    return out
