"""Cameras from face landmarks: PnP of MediaPipe's landmarks against its canonical face mesh.

MediaPipe's own facial transformation matrix assumes a fixed ~63 degree camera, so its
translation is not metric and its yaw is compressed (docs/background.md). Instead each
photo's camera is solved here with the photo's focal length. The world frame is the head frame
of ``CanonicalFace`` (metres; x to the subject's left, y down, z from the face to the back of the
head), so several photos of one person give cameras in one head-centred metric frame. Distances
assume the person's face has the canonical face's size (IOD 8.9 cm between outer eye corners);
a real face that is 10 % larger reads 10 % closer.

Measured on renders of the canonical face from known cameras (tests/test_face.py, 256 px, 30
degree field of view): relative rotations between views within 5 degrees over yaw -40..+40 and
pitch -15..+15 taken separately; MediaPipe's landmarks under-read pitch by ~15 %, so views that
combine +-40 yaw with +-10 pitch disagree by up to ~7 degrees.

Letters: H, W pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.io.mediapipe_assets import CanonicalFace

# 50 mm on a 36 mm-wide frame: a "normal" lens, between a phone's main camera (~26 mm
# equivalent, often used at arm's length) and the 70-85 mm of portrait modes. A wrong focal length
# mostly moves the solved distance (proportionally), much less the rotation.
DEFAULT_FOCAL_35MM = 50.0
FILM_WIDTH_MM = 36.0
# Landmarks off by more than this many times the median residual are dropped once and the fit
# repeated (hair over an eye corner, a hand on a cheek).
TRIM_FACTOR = 3.0

# Landmark groups (MediaPipe's connection sets), used to find what moves with expressions.
EYE_CONTOURS = (
    (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),  # subject's right
    (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),  # subject's left
)
EYE_CORNERS = (33, 133, 263, 362)
LIPS = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
    269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
)
# Radii (metres, on the canonical face) of the skin that moves with the lips and the eyelids.
MOUTH_RADIUS = 0.010
LID_RADIUS = 0.008


def pose_landmark_ids(canonical: CanonicalFace, exclude_eyelids: bool = True) -> np.ndarray:
    """``[P]`` mesh landmarks for the pose fit: all 468 but the mouth (and the eyelids).

    Excluded: the lips and the skin within 1 cm of them (smiles, speech) and, by default, the
    eyelids and the skin within 8 mm of them (blinks, squints; the four eye corners are kept).
    The chin and jaw line stay in: on synthetic renders with known cameras they carry pitch
    information that the nose alone under-reads, and leaving them out cost more accuracy on
    neutral faces than it saved under a 12 degree jaw opening.
    """
    verts = canonical.vertices.astype(np.float64)

    def near(ids: list[int], radius: float) -> np.ndarray:
        return np.linalg.norm(verts[:, None] - verts[None, ids], axis=2).min(axis=1) < radius

    mobile = near(list(LIPS), MOUTH_RADIUS)
    if exclude_eyelids:
        lids = [i for contour in EYE_CONTOURS for i in contour if i not in EYE_CORNERS]
        mobile |= near(lids, LID_RADIUS)
        mobile[list(EYE_CORNERS)] = False
    return np.flatnonzero(~mobile)


@dataclass
class PoseFit:
    """How well a camera was solved, and the head pose it implies.

    Angles are the head's rotation as seen along the line of sight (so a frontal face reads zero
    even off the image centre), in degrees: yaw is positive when the nose turns towards image
    right, pitch positive when the head tilts down (nose towards image bottom), roll positive
    when the face turns clockwise in the image. The rotation factors as
    ``R_view = Rz(roll) @ Rx(pitch) @ Ry(-yaw)`` in camera axes.

    Attributes:
        rms_px: reprojection RMS over the fitted landmarks, pixels.
        rms_all_px: reprojection RMS over all 468 mesh landmarks, pixels (expressions raise it).
        yaw_deg, pitch_deg, roll_deg: head angles as above.
        distance_m: distance from the camera centre to the head frame's origin, metres.
        num_points: how many landmarks the fit used.
    """

    rms_px: float
    rms_all_px: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    distance_m: float
    num_points: int


def default_focal_px(height: int, width: int) -> float:
    """Focal length in pixels when nothing is known: a 50 mm full-frame-equivalent lens."""
    return focal_from_exif_35mm(DEFAULT_FOCAL_35MM, height, width)


def focal_from_exif_35mm(f35: float, height: int, width: int) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length in mm: ``f35 / 36 * max(H, W)``.

    The equivalent is taken along the long side of a 36 x 24 mm frame. Some makers define it by
    the diagonal instead; the two agree on 3:2 images and differ by 4 % on 4:3 ones.
    """
    if not f35 > 0:
        raise ValueError(f"35 mm-equivalent focal length must be positive, got {f35}")
    return float(f35) / FILM_WIDTH_MM * float(max(height, width))


def _intrinsics(focal_px: float, height: int, width: int) -> np.ndarray:
    return np.array([[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]])


def _reprojection(
    obj: np.ndarray, img: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, K: np.ndarray
) -> np.ndarray:
    """Per-point reprojection error ``[P]`` in pixels."""
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    return np.linalg.norm(proj.reshape(-1, 2) - img, axis=1)


def _refine_weighted(
    obj: np.ndarray, img: np.ndarray, weights: np.ndarray, K: np.ndarray, rvec: np.ndarray, tvec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on ``sum_i w_i |project(obj_i) - img_i|^2`` over (rvec, tvec).

    OpenCV's PnP solvers take no weights; ``projectPoints`` gives the Jacobian, so this is short.
    """
    sw = np.repeat(np.sqrt(weights), 2)
    x = np.concatenate([rvec.reshape(3), tvec.reshape(3)]).astype(np.float64)

    def residual(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proj, jac = cv2.projectPoints(obj, x[:3], x[3:], K, None)
        return (proj.reshape(-1) - img.reshape(-1)) * sw, jac[:, :6] * sw[:, None]

    r, J = residual(x)
    cost, damping = float(r @ r), 1e-3
    for _ in range(100):
        A, g = J.T @ J, J.T @ r
        step = np.linalg.solve(A + damping * np.diag(np.diag(A) + 1e-12), -g)
        r_new, J_new = residual(x + step)
        cost_new = float(r_new @ r_new)
        if cost_new < cost:
            x, r, J, damping = x + step, r_new, J_new, damping / 10.0
            converged = cost - cost_new < 1e-12 * max(cost, 1.0)
            cost = cost_new
            if converged:
                break
        else:
            damping *= 10.0
            if damping > 1e8:
                break
    return x[:3].reshape(3, 1), x[3:].reshape(3, 1)


def head_angles(rotation: np.ndarray, translation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a head-to-camera ``rotation [3, 3]``, seen along ``translation [3]``.

    The ray's own direction is removed first (the smallest rotation taking it onto the optical
    axis), so the angles describe the face as it appears, not where it sits in the frame.
    """
    ray = translation / max(float(np.linalg.norm(translation)), 1e-12)
    axis = np.cross(ray, [0.0, 0.0, 1.0])
    sin_a, cos_a = float(np.linalg.norm(axis)), float(ray[2])
    align = np.eye(3)
    if sin_a > 1e-12:
        rvec = axis / sin_a * math.atan2(sin_a, cos_a)
        align = cv2.Rodrigues(rvec)[0]
    r = align @ rotation
    pitch = math.degrees(math.asin(float(np.clip(r[2, 1], -1.0, 1.0))))
    yaw = math.degrees(math.atan2(r[2, 0], r[2, 2]))
    roll = math.degrees(math.atan2(-r[0, 1], r[1, 1]))
    return yaw, pitch, roll


def solve_camera(
    landmarks_px: np.ndarray,
    image_size: tuple[int, int],
    focal_px: float,
    canonical: CanonicalFace,
    point_ids: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[Camera, PoseFit]:
    """The camera of a photo in the head frame, from its face landmarks.

    Default landmarks: ``pose_landmark_ids`` (all but the mouth and the eyelids), equally
    weighted. Measured on synthetic renders with known cameras (tests/test_face.py) against
    MediaPipe's own 33 weighted "procrustes" landmarks and all 468: as accurate as all 468 on
    neutral faces, and it moves less than either when the face smiles or opens the jaw.

    Args:
        landmarks_px: ``[478, 3]`` (or ``[468, 2+]``) landmarks; only the first 468 x, y are used.
        image_size: ``(H, W)`` of the image the landmarks are in.
        focal_px: focal length in pixels (``default_focal_px`` or ``focal_from_exif_35mm``).
        canonical: the canonical face (``load_canonical_face()``).
        point_ids: ``[P]`` mesh landmarks to fit (default ``pose_landmark_ids(canonical)``).
        weights: ``[P]`` non-negative weights of those landmarks (default: equal).

    Returns:
        ``Camera`` with the principal point at the image centre and ``world_to_cam`` mapping the
        head frame into the camera, and the ``PoseFit``.
    """
    height, width = int(image_size[0]), int(image_size[1])
    landmarks_px = np.asarray(landmarks_px, dtype=np.float64)
    if landmarks_px.ndim != 2 or landmarks_px.shape[0] < 468 or landmarks_px.shape[1] < 2:
        raise ValueError(f"expected landmarks [478, 3] or [468, 2], got {list(landmarks_px.shape)}")
    if not np.isfinite(landmarks_px[:468, :2]).all():
        raise ValueError("landmarks contain NaN or infinite values")
    if not focal_px > 0:
        raise ValueError(f"focal length must be positive, got {focal_px}")
    ids = pose_landmark_ids(canonical) if point_ids is None else np.asarray(point_ids, dtype=np.int64)
    w = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != ids.shape or len(ids) < 6 or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"need at least 6 landmarks with non-negative weights, got {len(ids)}")
    w = w / w.mean()
    K = _intrinsics(float(focal_px), height, width)
    all_obj = canonical.vertices.astype(np.float64)
    all_img = np.ascontiguousarray(landmarks_px[:468, :2])
    obj, img = all_obj[ids], all_img[ids]
    # SQPNP is a global solver (no initial guess, no local minimum); the weighted
    # Levenberg-Marquardt then polishes from there.
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("PnP failed on these landmarks")
    ok, rvec, tvec = cv2.solvePnP(
        obj, img, K, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        raise ValueError("PnP refinement failed on these landmarks")
    rvec, tvec = _refine_weighted(obj, img, w, K, rvec, tvec)
    # One trimming pass: a landmark can be far off (hair over an eye corner, a hand on the cheek).
    err = _reprojection(obj, img, rvec, tvec, K)
    iod_px = float(np.linalg.norm(all_img[33] - all_img[263]))
    keep = err <= max(TRIM_FACTOR * float(np.median(err)), 0.02 * iod_px, 1.0)
    if keep.sum() >= max(6, int(0.7 * len(keep))) and not keep.all():
        obj, img, w = obj[keep], img[keep], w[keep]
        rvec, tvec = _refine_weighted(obj, img, w, K, rvec, tvec)
        err = _reprojection(obj, img, rvec, tvec, K)
    rotation = cv2.Rodrigues(rvec)[0]
    translation = tvec.reshape(3)
    if translation[2] <= 0:
        raise ValueError("PnP put the face behind the camera")
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rotation, translation
    yaw, pitch, roll = head_angles(rotation, translation)
    fit = PoseFit(
        rms_px=float(np.sqrt(np.mean(err**2))),
        rms_all_px=float(np.sqrt(np.mean(_reprojection(all_obj, all_img, rvec, tvec, K) ** 2))),
        yaw_deg=yaw,
        pitch_deg=pitch,
        roll_deg=roll,
        distance_m=float(np.linalg.norm(translation)),
        num_points=int(obj.shape[0]),
    )
    camera = Camera(
        torch.tensor(K, dtype=torch.float32), torch.tensor(w2c, dtype=torch.float32), height, width
    )
    return camera, fit
