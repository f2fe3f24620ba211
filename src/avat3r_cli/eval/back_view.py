"""Is the head closed? What a camera behind an avatar sees, compared with the front.

A head whose back is empty still covers the view from behind: the face's own Gaussians, seen
through the missing skull, mirrored left to right. Coverage (alpha) cannot tell that apart from a
real back of the head, so this check looks at two other things, both from an orbit of the head
frame's centre (docs/evaluation.md):

* **mirror correlation**: the Pearson correlation of the grey-level detail (each image minus its
  own blur, so the lighting drops out) of the view from behind and the left-right mirrored
  frontal view, inside the box where a face's eyes, nose and mouth project (``FACE_BOX``; the
  ears, the neck and the collar legitimately look alike from both sides and stay out). An open
  head shows the face's eyes, brows and mouth in both and scores far from 0 (either sign: seen from behind, a
  dark pupil can lie in front of a light eyeball); hair behind scores near 0.
* **back depth**: the median depth, from behind, of the first surface inside the same box (where
  alpha is high), minus the camera's distance to the head centre. A closed head's back sits in
  front of the centre (negative, about -0.08 m for an adult); an open one shows the face, a
  head's depth further (positive).

Letters: N Gaussians, H/W pixels of the square check renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.frames import HEAD_FRONT, HEAD_UP
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.render.api import RenderOutput, render

# Far and narrow, nearly orthographic: a face 9 cm in front of the centre, seen through from
# behind, must project at the size it has from the front (at 0.7 m it would be 30% smaller and
# no longer line up with the mirrored front view). The view spans 0.37 m, a head and its neck.
RADIUS = 3.0
FOV_DEG = 7.0
MIDDLE_ALPHA = 0.9  # pixels that count as solid surface for the depth
BLUR_KERNEL = 9  # at 96² a 9-pixel box keeps eyes and mouth, drops the shading
# Eyes to chin of an adult face in the head frame (x left-right, y down; metres), drawn on the
# plane through the head centre facing the camera: where a see-through head shows the face.
FACE_BOX = ((-0.05, 0.05), (-0.04, 0.06))


@dataclass(frozen=True)
class BackViewCheck:
    """What the view from behind an avatar shows.

    Attributes:
        mirror_correlation: signed correlation (-1..1) of the back view's detail with the mirrored
            front view's (module docstring); NaN when the views share too few pixels.
        back_depth_m: median first-surface depth from behind minus the distance to the head
            centre, metres (negative: in front of the centre, as a head's back is).
        back_coverage: fraction of the front view's silhouette that the back view covers too.
    """

    mirror_correlation: float
    back_depth_m: float
    back_coverage: float


def _camera(direction: tuple[float, float, float], size: int) -> Camera:
    eye = torch.tensor(direction) * RADIUS
    w2c = look_at(eye, torch.zeros(3), torch.tensor(HEAD_UP))
    return Camera(intrinsics_from_fov(FOV_DEG, size, size), w2c, size, size)


def _face_box_mask(size: int) -> torch.Tensor:
    """``[H, W]`` True inside ``FACE_BOX`` as seen by the check cameras (the same for front and back)."""
    focal = float(intrinsics_from_fov(FOV_DEG, size, size)[0, 0])
    (x0, x1), (y0, y1) = FACE_BOX
    to_px = lambda v: size / 2.0 + focal * v / RADIUS  # noqa: E731
    centres = torch.arange(size) + 0.5
    cols = (centres >= to_px(x0)) & (centres <= to_px(x1))
    rows = (centres >= to_px(y0)) & (centres <= to_px(y1))
    return rows[:, None] & cols[None, :]


def _detail(out: RenderOutput) -> torch.Tensor:
    """``[H, W]`` grey level minus its box blur: the features, not the outline or the shading."""
    grey = out.image.clamp(0, 1).mean(0, keepdim=True)[None]
    blurred = F.avg_pool2d(F.pad(grey, [BLUR_KERNEL // 2] * 4, mode="replicate"), BLUR_KERNEL, stride=1)
    return (grey - blurred)[0, 0]


def back_view_check(gaussians: Gaussians, size: int = 96) -> BackViewCheck:
    """Render a head-frame avatar from the front and from behind and compare (module docstring).

    Args:
        gaussians: the avatar in the head frame (face towards -z, y down), N Gaussians.
        size: side of the square check renders in pixels.

    Returns:
        ``BackViewCheck``.
    """
    g = gaussians.to("cpu") if gaussians.means.device.type != "cpu" else gaussians
    front_dir = HEAD_FRONT
    back_dir = (-front_dir[0], -front_dir[1], -front_dir[2])
    white = (1.0, 1.0, 1.0)
    with torch.no_grad():
        front = render(g, _camera(front_dir, size), white)
        back = render(g, _camera(back_dir, size), white)
    front_mask = front.alpha[0] > 0.5
    back_mask = back.alpha[0] > 0.5
    # From behind, the subject's left is on the image's left: mirroring the front view lines the
    # two up pixel for pixel where a see-through head would show the same face.
    mirrored_front = torch.flip(_detail(front), dims=[1])
    box = _face_box_mask(size)
    both = back_mask & torch.flip(front_mask, dims=[1])
    shared = both & box
    a, b = _detail(back)[shared], mirrored_front[shared]
    correlation = float("nan")
    if int(shared.sum()) >= 16:
        a, b = a - a.mean(), b - b.mean()
        correlation = float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12))
    solid = (back.alpha[0] > MIDDLE_ALPHA) & box
    depth = float(back.depth[0][solid].median()) - RADIUS if bool(solid.any()) else float("nan")
    coverage = float(both.sum() / front_mask.sum().clamp(min=1))
    return BackViewCheck(mirror_correlation=correlation, back_depth_m=depth, back_coverage=coverage)
