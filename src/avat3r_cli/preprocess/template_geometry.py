"""The ``template`` position-map backend: offline, CPU, no learned weights.

Per view, MediaPipe's 468 face landmarks are lifted to 3D at the depth the canonical face has
under the solved camera, so the face mesh follows the photo (mouth open, face width), and a
head-shaped proxy (skull and hair, ears, neck) fills in the rest. The template is rendered into
the crop camera with the project's own rasteriser: expected depth gives a 3D point per pixel,
a label channel gives the confidence (face 1.0, proxy 0.6, background 0). ``extend_to_person``
then carries the map over the person's silhouette (hair past the proxy, the shoulders), as every
bundled model since stage 24 expects.

Letters: R crop side.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.mediapipe_assets import CanonicalFace
from avat3r_cli.render import render

FACE_CONFIDENCE = 1.0
PROXY_CONFIDENCE = 0.6
COVERED = 0.5  # confidence at or above which a pixel is on the template (face or proxy)
_SAMPLES_PER_TRIANGLE = 10  # about 9k face points (1.8 mm apart, 2.5 mm discs): a closed surface
_DISC_RADIUS = 0.0025  # metres; the discs overlap so the surface has no holes
_DISC_THICKNESS = 0.0008


@dataclass(frozen=True)
class PositionMap:
    """Per-pixel 3D points of one crop and how much to trust them.

    Attributes:
        points: ``[3, R, R]`` points in the head frame (metres); where nothing was rendered,
            the point on the pixel's ray at the head centre's depth.
        confidence: ``[1, R, R]`` in 0..1.
    """

    points: torch.Tensor
    confidence: torch.Tensor


def lift_landmarks(landmarks_px: np.ndarray, photo_camera: Camera, canonical: CanonicalFace) -> np.ndarray:
    """The 468 face vertices ``[468, 3]`` (head frame) seen at ``landmarks_px [>=468, 2+]``.

    Each landmark is back-projected through its pixel to the depth its canonical vertex has in
    ``photo_camera``: the image-plane shape comes from the photo, the depth from the template.
    """
    w2c = photo_camera.world_to_cam.double().numpy()
    K = photo_camera.K.double().numpy()
    rot, trans = w2c[:3, :3], w2c[:3, 3]
    depth = (canonical.vertices.astype(np.float64) @ rot.T + trans)[:, 2]
    pix = np.concatenate([landmarks_px[:468, :2].astype(np.float64), np.ones((468, 1))], axis=1)
    rays = pix @ np.linalg.inv(K).T
    points_cam = rays * depth[:, None]
    return ((points_cam - trans) @ rot).astype(np.float32)


def _disc_quats(normals: np.ndarray) -> np.ndarray:
    """wxyz quaternions ``[N, 4]`` turning the local z axis onto unit ``normals [N, 3]``."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(np.broadcast_to(z, normals.shape), normals)
    cos = normals @ z
    quats = np.concatenate([1.0 + cos[:, None], axis], axis=1)
    flipped = cos < -0.9999  # opposite to z: any perpendicular axis
    quats[flipped] = (0.0, 1.0, 0.0, 0.0)
    return quats / np.linalg.norm(quats, axis=1, keepdims=True)


def _surface_gaussians(points: np.ndarray, normals: np.ndarray, label: float) -> tuple[np.ndarray, ...]:
    n = points.shape[0]
    scales = np.tile([_DISC_RADIUS, _DISC_RADIUS, _DISC_THICKNESS], (n, 1))
    return points, _disc_quats(normals), scales, np.full(n, label)


@functools.lru_cache(maxsize=4)
def _barycentric_samples(per_triangle: int) -> np.ndarray:
    """``[S, 3]`` fixed barycentric coordinates spread over a triangle."""
    rng = np.random.default_rng(0)
    u, v = rng.random((2, per_triangle))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    return np.stack([1 - u - v, u, v], axis=1)


def face_surface(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[T*S, 3]`` and unit normals on the face mesh, normals facing out of the face."""
    bary = _barycentric_samples(_SAMPLES_PER_TRIANGLE)
    tri = vertices[triangles]  # [T, 3, 3]
    points = np.einsum("sk,tkd->tsd", bary, tri).reshape(-1, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    # The face looks towards -z in the head frame; orient every normal that way.
    normals *= np.where(normals[:, 2:3] > 0, -1.0, 1.0)
    return points, np.repeat(normals, bary.shape[0], axis=0)


def _ellipsoid(center, radii, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and outward normals on an ellipsoid (Fibonacci lattice, so evenly spread)."""
    i = np.arange(count) + 0.5
    phi = np.arccos(1 - 2 * i / count)
    theta = np.pi * (1 + 5**0.5) * i + seed
    unit = np.stack([np.sin(phi) * np.cos(theta), np.cos(phi), np.sin(phi) * np.sin(theta)], axis=1)
    radii = np.asarray(radii, dtype=np.float64)
    points = unit * radii + np.asarray(center)
    normals = unit / radii
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def behind_face(points: np.ndarray, face: np.ndarray, margin: float = 0.01) -> np.ndarray:
    """``[N]`` True where a point lies behind the face mask (or outside its outline)."""
    d2 = ((points[:, None, :2] - face[None, :, :2]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    over_face = d2[np.arange(len(points)), nearest] < 0.012**2
    return ~over_face | (points[:, 2] > face[nearest, 2] + margin)


@dataclass(frozen=True)
class ProxyPart:
    """One ellipsoid of the head proxy (head frame, metres) and how densely it is sampled."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    count: int
    seed: int


# Skull and hair, the two ears, the neck. The neck keeps only points below NECK_TOP_Y (the jaw line).
SKULL = ProxyPart((0.0, -0.015, 0.035), (0.085, 0.12, 0.105), 9000, 0)
EARS = tuple(ProxyPart((side * 0.077, 0.005, 0.035), (0.012, 0.03, 0.018), 400, 1) for side in (-1.0, 1.0))
NECK = ProxyPart((0.0, 0.12, 0.04), (0.055, 0.09, 0.055), 3000, 2)
NECK_TOP_Y = 0.06


def proxy_part_points(part: ProxyPart, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points and outward normals ``[N, 3]`` on ``part`` (``count`` overrides its own density)."""
    return _ellipsoid(part.center, part.radii, part.count if count is None else count, part.seed)


@functools.lru_cache(maxsize=1)
def head_proxy(canonical_vertices: bytes) -> tuple[np.ndarray, ...]:
    """Gaussian parameters of the proxy for skull and hair, ears and neck (head frame).

    Proxy points in front of the canonical face are dropped so the proxy never pokes through
    the face mask; what remains wraps the face from the temples to the back of the head.
    ``canonical_vertices`` is the ``[468, 3]`` float32 array's bytes (hashable, for the cache).
    """
    face = np.frombuffer(canonical_vertices, dtype=np.float32).reshape(-1, 3)
    skull, skull_n = proxy_part_points(SKULL)
    keep = behind_face(skull, face)
    skull, skull_n = skull[keep], skull_n[keep]
    parts = [(skull, skull_n)]
    for ear in EARS:
        parts.append(proxy_part_points(ear))
    neck, neck_n = proxy_part_points(NECK)
    keep = (neck[:, 1] > NECK_TOP_Y) & behind_face(neck, face)  # below the jaw line only
    parts.append((neck[keep], neck_n[keep]))
    points = np.concatenate([p for p, _ in parts])
    normals = np.concatenate([n for _, n in parts])
    return _surface_gaussians(points, normals, PROXY_CONFIDENCE)


def template_gaussians(face_vertices: np.ndarray, canonical: CanonicalFace) -> Gaussians:
    """The template head for one view: the lifted face mesh plus the proxy, coloured by label."""
    face = _surface_gaussians(*face_surface(face_vertices, canonical.triangles), FACE_CONFIDENCE)
    proxy = head_proxy(canonical.vertices.astype(np.float32).tobytes())
    means, quats, scales, labels = (np.concatenate([a, b]) for a, b in zip(face, proxy))
    colors = np.repeat(labels[:, None], 3, axis=1)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return Gaussians.from_colors(t(means), t(quats), t(scales), torch.ones(len(means)), t(colors))


def render_position_map(template: Gaussians, crop_camera: Camera) -> PositionMap:
    """Render ``template`` into ``crop_camera``: points ``[3, R, R]`` and confidence ``[1, R, R]``."""
    with torch.no_grad():
        out = render(template, crop_camera, background=(0.0, 0.0, 0.0))
    h, w = crop_camera.height, crop_camera.width
    covered = out.alpha > 0.5
    confidence = torch.where(covered, out.image[:1] / out.alpha.clamp(min=1e-6), torch.zeros_like(out.alpha))
    w2c = crop_camera.world_to_cam.float()
    head_depth = float((w2c[:3, :3] @ template.means.mean(0) + w2c[:3, 3])[2])
    depth = torch.where(covered, out.depth, torch.full_like(out.depth, head_depth))
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(3, -1)
    rays = torch.linalg.inv(crop_camera.K.float()) @ pix
    points_cam = rays * depth.reshape(1, -1)
    points = w2c[:3, :3].T @ (points_cam - w2c[:3, 3:4])
    return PositionMap(points.reshape(3, h, w), confidence.clamp(0.0, 1.0))


def extend_to_person(pmap: PositionMap, person: torch.Tensor, crop_camera: Camera) -> PositionMap:
    """``pmap`` carried over the person's silhouette where the template head does not reach.

    About a third of a head-and-shoulders crop is person outside the template (hair past the
    skull proxy, a beard, the shoulders); without this those pixels have confidence 0 and give
    no Gaussian. Each such pixel gets the point on its own ray at the camera depth of the
    nearest covered pixel, and the proxy's confidence.

    Args:
        pmap: the template's position map, points ``[3, R, R]``, confidence ``[1, R, R]``.
        person: ``[R, R]`` bool, True on the person (hair, clothes included).
        crop_camera: the crop camera the map was rendered for.

    Returns:
        The extended map (``pmap`` itself when nothing is to extend).
    """
    covered = pmap.confidence[0] >= COVERED
    extra = person.bool() & ~covered
    if not bool(extra.any()) or not bool(covered.any()):
        return pmap
    # The nearest covered pixel to an uncovered one always has an uncovered 8-neighbour, so the
    # search runs over the covered region's outline only (hundreds of pixels, not thousands).
    uncovered = F.pad((~covered).float()[None, None], (1, 1, 1, 1), value=0.0)
    outline = covered & (F.max_pool2d(uncovered, 3, stride=1)[0, 0] > 0)
    oy, ox = outline.nonzero(as_tuple=True)
    ey, ex = extra.nonzero(as_tuple=True)
    nearest = torch.cat([
        ((y[:, None] - oy[None]) ** 2 + (x[:, None] - ox[None]) ** 2).argmin(dim=1)
        for y, x in zip(ey.split(4096), ex.split(4096))  # bounded memory at any crop size
    ])
    w2c = crop_camera.world_to_cam.float()
    depth = (torch.einsum("ij,jhw->ihw", w2c[:3, :3], pmap.points) + w2c[:3, 3, None, None])[2]
    pix = torch.stack([ex.float() + 0.5, ey.float() + 0.5, torch.ones(len(ex))])
    rays = torch.linalg.inv(crop_camera.K.float()) @ pix  # [3, E]
    points_cam = rays * depth[oy[nearest], ox[nearest]][None]
    points = pmap.points.clone()
    points[:, ey, ex] = w2c[:3, :3].T @ (points_cam - w2c[:3, 3:4])
    confidence = pmap.confidence.clone()
    confidence[0, ey, ex] = PROXY_CONFIDENCE
    return PositionMap(points, confidence)
