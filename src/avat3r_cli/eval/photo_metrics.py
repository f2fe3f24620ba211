"""Scoring one image against a real photo's head crop: inside the face, over the crop, and as MediaPipe reads it.

* ``face_mask``: the convex hull of the photo's 478 landmarks (in crop pixels), so the face
  metrics ignore hair, ears and background, which the avatar may or may not cover.
* ``psnr_crop`` / ``ssim_crop`` compare over the whole head crop; the caller composites both
  sides over the same background outside their silhouettes (a real photo's background is not
  something an avatar should reproduce).
* AKD (average keypoint distance, the paper's expression and geometry metric): MediaPipe's 478
  landmarks are read on the image and on the photo crop, both resized to ``AKD_SIZE``² the same
  way, and their mean 2D distance is in pixels at that size. Reading both sides the same way
  means an image identical to the photo scores 0.
* The same readings give the jawOpen, smile and blink scores (``expression_accuracy.GROUPS``)
  of both, so a reader can see whether the expression came through.

Letters: R crop side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from avat3r_cli.eval.expression_accuracy import group_scores
from avat3r_cli.eval.metrics import psnr, ssim
from avat3r_cli.preprocess.face import FaceAnalyzer

AKD_SIZE = 512
READ_GROUPS = ("jawOpen", "smile", "blink")


@dataclass
class FaceReading:
    """MediaPipe's reading of one image at ``AKD_SIZE``²: landmarks ``[478, 2]`` (pixels) and ``[52]`` scores."""

    landmarks: np.ndarray
    blendshapes: np.ndarray


@dataclass
class ImageScore:
    """One image compared with a photo crop (None: not measurable, e.g. no face read).

    Attributes:
        psnr_face, ssim_face: inside the hull of the photo's landmarks.
        psnr_crop, ssim_crop: over the whole crop.
        akd_px512: mean landmark distance in pixels at 512² (needs a face read on both).
        face_found: MediaPipe found a face in the image.
        expression: per group in ``READ_GROUPS``, ``{"read": image's score, "photo": photo's}``.
    """

    psnr_face: float | None
    ssim_face: float | None
    psnr_crop: float | None
    ssim_crop: float | None
    akd_px512: float | None
    face_found: bool
    expression: dict[str, dict[str, float | None]]


def face_mask(landmarks: np.ndarray, resolution: int) -> torch.Tensor:
    """``[1, R, R]`` float mask: 1 where a pixel centre lies inside the convex hull of ``landmarks [478, 2]``.

    Landmarks are in crop pixels with pixel centres at integer + 0.5 (as ``Camera``).
    """
    hull = cv2.convexHull(np.asarray(landmarks, np.float32)[:, :2])[:, 0].astype(np.float64)  # [H, 2], one winding
    centres = np.stack(np.meshgrid(np.arange(resolution) + 0.5, np.arange(resolution) + 0.5, indexing="xy"), axis=-1)
    edges = np.roll(hull, -1, axis=0) - hull
    # The sign of each edge's cross product with (centre - edge start): inside = the same sign for every edge.
    cross = edges[:, 0] * (centres[..., None, 1] - hull[:, 1]) - edges[:, 1] * (centres[..., None, 0] - hull[:, 0])
    inside = (cross >= 0).all(axis=-1) | (cross <= 0).all(axis=-1)
    return torch.from_numpy(inside.astype(np.float32))[None]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in 0..1 -> ``uint8 [H, W, 3]``."""
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def read_face(analyzer: FaceAnalyzer, image: torch.Tensor) -> FaceReading | None:
    """MediaPipe on ``image [3, R, R]`` (0..1) resized to ``AKD_SIZE``² (bicubic); None when no face is found."""
    big = torch.nn.functional.interpolate(image[None].float(), size=AKD_SIZE, mode="bicubic", align_corners=False)[0]
    face = analyzer.analyze(to_uint8(big))
    if face is None:
        return None
    return FaceReading(face.landmarks[:, :2].copy(), face.blendshapes.copy())


def keypoint_distance(a: FaceReading, b: FaceReading) -> float:
    """Mean 2D distance (pixels at ``AKD_SIZE``²) between the two readings' 478 landmarks."""
    return float(np.linalg.norm(a.landmarks - b.landmarks, axis=1).mean())


def _finite(value: torch.Tensor) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


def score_image(
    image: torch.Tensor,
    photo: torch.Tensor,
    mask: torch.Tensor,
    image_reading: FaceReading | None,
    photo_reading: FaceReading | None,
) -> ImageScore:
    """Compare ``image [3, R, R]`` with ``photo [3, R, R]`` (both in 0..1, composited alike).

    Args:
        image, photo: the two crops.
        mask: ``[1, R, R]`` the face region (``face_mask`` of the photo's landmarks).
        image_reading, photo_reading: ``read_face`` of each (None: no face found).
    """
    img, ref, m = image[None], photo[None], mask[None]
    groups_read = group_scores(image_reading.blendshapes) if image_reading is not None else None
    groups_photo = group_scores(photo_reading.blendshapes) if photo_reading is not None else None
    expression = {
        g: {"read": None if groups_read is None else float(groups_read[g][0]),
            "photo": None if groups_photo is None else float(groups_photo[g][0])}
        for g in READ_GROUPS
    }
    akd = None
    if image_reading is not None and photo_reading is not None:
        akd = keypoint_distance(image_reading, photo_reading)
    return ImageScore(
        psnr_face=_finite(psnr(img, ref, m)[0]), ssim_face=_finite(ssim(img, ref, m)[0]),
        psnr_crop=_finite(psnr(img, ref)[0]), ssim_crop=_finite(ssim(img, ref)[0]),
        akd_px512=akd, face_found=image_reading is not None, expression=expression,
    )
