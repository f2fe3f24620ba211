"""Square head crops at the model's resolution, with intrinsics adjusted exactly.

Every photo is cropped around the projection of the same 3D head sphere, so the head has the
same size in every crop whatever the photo's resolution or distance.

Letters: H, W photo pixels; R crop side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from avat3r_cli.core.camera import Camera

# Head sphere in the head frame (metres): centred between the ears, slightly above the eyes,
# large enough to hold hair and the top of the neck.
HEAD_CENTER = (0.0, -0.01, 0.03)
HEAD_RADIUS = 0.16


@dataclass(frozen=True)
class CropBox:
    """A square window in continuous photo coordinates (pixel centres at integer + 0.5).

    Attributes:
        x0: left edge.
        y0: top edge.
        size: side length in photo pixels.
    """

    x0: float
    y0: float
    size: float


def head_crop_box(camera: Camera, center=HEAD_CENTER, radius: float = HEAD_RADIUS) -> CropBox:
    """The square around the head sphere's projection in ``camera``'s photo."""
    c = torch.tensor(center, dtype=torch.float32)
    p = camera.world_to_cam[:3, :3].float() @ c + camera.world_to_cam[:3, 3].float()
    depth = float(p[2])
    if depth <= radius:
        raise ValueError("the head is behind or around the camera; the solved pose is unusable")
    u, v = float(camera.K[0, 0] * p[0] / depth + camera.K[0, 2]), float(camera.K[1, 1] * p[1] / depth + camera.K[1, 2])
    # Half-size of the sphere's image: f * r / sqrt(d^2 - r^2) (the tangent cone, not just f * r / d).
    focal = float((camera.K[0, 0] + camera.K[1, 1]) / 2)
    half = focal * radius / float(np.sqrt(depth * depth - radius * radius))
    return CropBox(u - half, v - half, 2.0 * half)


def crop_intrinsics(K: torch.Tensor, box: CropBox, resolution: int) -> torch.Tensor:
    """``[3, 3]`` intrinsics of the crop ``box`` resized to ``resolution`` squared.

    A photo point x maps to (x - x0) * s in the crop, s = R / size, in continuous coordinates;
    since pixel centres sit at +0.5 in both images, this is exact for the principal point too.
    """
    s = resolution / box.size
    out = K.clone().to(torch.float32)
    out[0, 0], out[1, 1] = K[0, 0] * s, K[1, 1] * s
    out[0, 1] = K[0, 1] * s
    out[0, 2], out[1, 2] = (K[0, 2] - box.x0) * s, (K[1, 2] - box.y0) * s
    return out


def crop_photo(image: np.ndarray, box: CropBox, resolution: int) -> np.ndarray:
    """Resample ``image`` uint8 ``[H, W, 3]`` inside ``box`` to ``[R, R, 3]`` (antialiased).

    Parts of the box outside the photo are filled by repeating the photo's border.
    """
    h, w = image.shape[:2]
    # Pad so the box lies inside the array; edge padding avoids a hard frame around the head.
    pad = int(np.ceil(max(0.0, -box.x0, -box.y0, box.x0 + box.size - w, box.y0 + box.size - h))) + 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad > 2 else image
    offset = pad if pad > 2 else 0
    pil = Image.fromarray(padded)
    region = (box.x0 + offset, box.y0 + offset, box.x0 + offset + box.size, box.y0 + offset + box.size)
    return np.asarray(pil.resize((resolution, resolution), Image.Resampling.LANCZOS, box=region), dtype=np.uint8)


def crop_camera(camera: Camera, box: CropBox, resolution: int) -> Camera:
    """The camera of the crop: same pose, intrinsics from ``crop_intrinsics``."""
    return Camera(crop_intrinsics(camera.K, box, resolution), camera.world_to_cam.clone(), resolution, resolution)
