"""A synthetic head made of 3D Gaussians: MediaPipe's canonical face with a procedural texture.

Used to test camera solving against known cameras. The face is the canonical mesh itself, so the
landmarks' true 3D positions are exactly ``CanonicalFace.vertices`` and the head frame is the
world frame. Features are painted in UV space from the landmark topology (as in
reference/synthetic-faces.md, where procedural albedo was detected in 260/260 renders); an
ellipsoid skull with hair, a strip closing the gap to the mask edge and a neck make it a head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from matplotlib.path import Path as PolygonPath

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.mediapipe_assets import CanonicalFace

TEX = 1024
SKIN = np.array([0.86, 0.66, 0.54])
HAIR = np.array([0.22, 0.15, 0.10])
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_BROW = ((70, 63, 105, 66, 107), (46, 53, 52, 65, 55))  # upper, lower edge
LEFT_BROW = ((300, 293, 334, 296, 336), (276, 283, 282, 295, 285))
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
# Skull ellipsoid (centre, semi-axes) in the head frame, metres: behind the face mask.
SKULL_CENTER = np.array([0.0, -0.05, 0.045])
SKULL_AXES = np.array([0.079, 0.145, 0.098])


def _texture(canonical: CanonicalFace, rng: np.random.Generator) -> np.ndarray:
    """``[TEX, TEX, 3]`` float albedo painted in UV space."""
    uv = canonical.uvs * TEX
    mm = np.linalg.norm(uv[33] - uv[263]) / 88.9  # texture pixels per millimetre, from the IOD

    def pts(ids) -> np.ndarray:
        return np.round(uv[list(ids)] * 16).astype(np.int32)  # 4 fractional bits for cv2

    def fill(img: np.ndarray, ids, colour) -> None:
        cv2.fillPoly(img, [pts(ids)], tuple(float(c) for c in colour), cv2.LINE_AA, 4)

    noise = cv2.resize(rng.normal(0.0, 1.0, (6, 6, 3)), (TEX, TEX), interpolation=cv2.INTER_CUBIC)
    tex = SKIN[None, None] + 0.025 * noise
    blush = np.zeros((TEX, TEX), np.float64)
    for i in (50, 280):  # cheeks
        cv2.circle(blush, tuple(np.round(uv[i]).astype(int)), int(12 * mm), 1.0, -1)
    blush = cv2.GaussianBlur(blush, (0, 0), 8 * mm)
    tex += blush[..., None] * (np.array([0.85, 0.52, 0.50]) - SKIN)[None, None] * 0.6

    # Eye sockets a little darker, then the eyes themselves.
    socket = np.zeros((TEX, TEX), np.float64)
    for eye in (RIGHT_EYE, LEFT_EYE):
        fill(socket, eye, (1.0,))
    socket = cv2.GaussianBlur(cv2.dilate(socket, np.ones((int(8 * mm),) * 2)), (0, 0), 4 * mm)
    tex *= 1.0 - 0.18 * socket[..., None]
    for eye in (RIGHT_EYE, LEFT_EYE):
        mask = np.zeros((TEX, TEX), np.float64)
        fill(mask, eye, (1.0,))
        centre = uv[list(eye)].mean(axis=0)
        iris = np.zeros_like(mask)
        cv2.circle(iris, tuple(np.round(centre).astype(int)), int(5.5 * mm), 1.0, -1, cv2.LINE_AA)
        pupil = np.zeros_like(mask)
        cv2.circle(pupil, tuple(np.round(centre).astype(int)), int(2.2 * mm), 1.0, -1, cv2.LINE_AA)
        # Lash lines first, so that the eye drawn over them keeps its full opening.
        upper, lower = eye[:9], eye[8:] + eye[:1]
        cv2.polylines(tex, [pts(upper)], False, (0.08, 0.05, 0.04), max(1, int(1.6 * mm)), cv2.LINE_AA, 4)
        cv2.polylines(tex, [pts(lower)], False, (0.40, 0.26, 0.21), max(1, int(0.8 * mm)), cv2.LINE_AA, 4)
        layer = np.array([0.93, 0.91, 0.88])[None, None] * (1 - iris[..., None])
        layer += np.array([0.36, 0.22, 0.12])[None, None] * (iris - pupil)[..., None]
        layer += np.array([0.03, 0.02, 0.02])[None, None] * pupil[..., None]
        tex = tex * (1 - mask[..., None]) + layer * mask[..., None]
    for upper, lower in (RIGHT_BROW, LEFT_BROW):
        fill(tex, upper + lower[::-1], (0.24, 0.16, 0.11))
    fill(tex, LIPS_OUTER, (0.74, 0.36, 0.36))
    fill(tex, LIPS_INNER, (0.30, 0.08, 0.08))
    # Nostrils on the underside of the nose (vertices whose normals point down), where a camera
    # below the face sees them: a strong cue for head-up poses.
    for ids in ((79, 166, 60, 239), (309, 392, 290, 459)):
        centre = tuple(np.round(uv[list(ids)].mean(axis=0)).astype(int))
        cv2.ellipse(tex, centre, (int(3.6 * mm), int(2.2 * mm)), 0, 0, 360, (0.22, 0.12, 0.10), -1, cv2.LINE_AA)
    return np.clip(cv2.GaussianBlur(tex, (0, 0), 0.6 * mm), 0.0, 1.0)


def _sample_triangles(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator):
    """Area-weighted samples: triangle ids ``[n]`` and barycentrics ``[n, 3]``."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    tri = rng.choice(len(tris), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
    return tri, bary


def _vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    normals = np.zeros_like(verts)
    face_n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    for k in range(3):
        np.add.at(normals, tris[:, k], face_n)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    outward = verts - SKULL_CENTER  # orient away from the head's inside
    normals *= np.sign((normals * outward).sum(axis=1, keepdims=True) + 1e-12)
    return normals


def _quats_from_normals(normals: np.ndarray) -> np.ndarray:
    """``[N, 4]`` wxyz rotations taking +z onto each normal (a flat disc facing it)."""
    n = normals * np.where(normals[:, 2:3] < 0, -1.0, 1.0)  # a disc is the same flipped
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros(len(n))], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _skull_and_neck(canonical: CanonicalFace, n_skull: int, n_neck: int, rng: np.random.Generator):
    """Points, normals and colours of the skull ellipsoid, the strip to the mask edge and a neck."""
    verts = canonical.vertices.astype(np.float64)
    oval = PolygonPath(verts[list(FACE_OVAL), :2])
    d = rng.normal(size=(n_skull, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    skull = SKULL_CENTER + d * SKULL_AXES
    skull_n = d / SKULL_AXES
    skull_n /= np.linalg.norm(skull_n, axis=1, keepdims=True)
    hidden = oval.contains_points(skull[:, :2]) & (skull[:, 2] < SKULL_CENTER[2])
    skull, skull_n = skull[~hidden], skull_n[~hidden]
    # Hairline about 2 cm above the mask's top (landmark 10), sloping down towards the back.
    hairy = (skull[:, 1] < -0.10 + 0.6 * (skull[:, 2] + 0.03)) | (skull[:, 2] > 0.09)
    skull_c = np.where(hairy[:, None], HAIR, SKIN * 0.95)

    # Strip: from each mask-edge vertex straight back (+z) onto the ellipsoid's front surface.
    ring = verts[list(FACE_OVAL)]
    rel = (ring[:, :2] - SKULL_CENTER[:2]) / SKULL_AXES[:2]
    inside = np.clip(1.0 - (rel**2).sum(axis=1), 0.0, 1.0)
    back = ring.copy()
    back[:, 2] = np.maximum(ring[:, 2], SKULL_CENTER[2] - SKULL_AXES[2] * np.sqrt(inside)) + 0.004
    n_strip = 3000
    seg = rng.integers(0, len(ring), n_strip)
    s, t = rng.random(n_strip), rng.random(n_strip)
    nxt = (seg + 1) % len(ring)
    front = ring[seg] * (1 - s)[:, None] + ring[nxt] * s[:, None]
    rear = back[seg] * (1 - s)[:, None] + back[nxt] * s[:, None]
    strip = front * (1 - t)[:, None] + rear * t[:, None]
    strip_n = (strip - SKULL_CENTER) / SKULL_AXES**2  # the skull's normal field: no shading seam
    strip_n /= np.linalg.norm(strip_n, axis=1, keepdims=True)
    strip_c = np.tile(SKIN, (n_strip, 1))

    angle = rng.random(n_neck) * 2 * math.pi
    neck_n = np.stack([np.sin(angle), np.zeros(n_neck), -np.cos(angle)], axis=1)
    neck = np.array([0.0, 0.0, 0.05]) + 0.052 * neck_n
    neck[:, 1] = rng.uniform(0.04, 0.19, n_neck)
    neck_c = np.tile(SKIN * 0.9, (n_neck, 1))
    # Ears: flat ellipses on the skull's sides between brow and nose-base height, flaring back.
    n_ear = 1500
    r, phi = np.sqrt(rng.random(2 * n_ear)), rng.random(2 * n_ear) * 2 * math.pi
    side = np.repeat([-1.0, 1.0], n_ear)
    ear_z = 0.062 + 0.017 * r * np.cos(phi)
    ear = np.stack([side * (SKULL_AXES[0] + 0.3 * (ear_z - 0.045)), -0.005 + 0.03 * r * np.sin(phi), ear_z], axis=1)
    ear_n = np.stack([side, np.zeros_like(side), -0.3 * np.ones_like(side)], axis=1)
    ear_n /= np.linalg.norm(ear_n, axis=1, keepdims=True)
    ear_c = SKIN[None] * np.where(r < 0.55, 0.72, 0.95)[:, None]
    return (
        np.concatenate([skull, strip, neck, ear]),
        np.concatenate([skull_n, strip_n, neck_n, ear_n]),
        np.concatenate([skull_c, strip_c, neck_c, ear_c]),
        np.concatenate([np.full(len(skull), 0.0025), np.full(n_strip, 0.0015), np.full(n_neck, 0.0025), np.full(len(ear), 0.0015)]),
    )


@dataclass
class SyntheticHead:
    """Surface samples of the head (head frame, metres): ``[N, 3]`` means and normals, ``[N, 3]`` albedo, ``[N]`` disc radii."""

    means: np.ndarray
    normals: np.ndarray
    albedo: np.ndarray
    sizes: np.ndarray

    def gaussians_for(self, camera: Camera) -> Gaussians:
        """Flat-disc Gaussians lit for ``camera``, back faces dropped (they would be hidden anyway).

        The light is fixed to the camera (above and left of it), as in a photo: a light fixed to
        the head would give every pose the same shading, an unnatural cue.
        """
        w2c = camera.world_to_cam.double().numpy()
        centre = -w2c[:3, :3].T @ w2c[:3, 3]
        light = w2c[:3, :3].T @ np.array([-0.3, -0.5, -1.0])  # towards the light, in head frame
        light /= np.linalg.norm(light)
        facing = ((centre - self.means) * self.normals).sum(axis=1) > -0.002
        n = self.normals[facing]
        shade = 0.4 + 0.6 * np.clip(n @ light, 0.0, 1.0)
        colours = np.clip(self.albedo[facing] * shade[:, None], 0.0, 1.0)
        sizes = self.sizes[facing]
        scales = np.stack([sizes, sizes, sizes * 0.05], axis=1)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(a, dtype=torch.float32)

        return Gaussians.from_colors(
            t(self.means[facing]), t(_quats_from_normals(n)), t(scales), t(np.full(len(n), 0.95)), t(colours)
        )


def open_jaw(verts: np.ndarray, degrees: float) -> np.ndarray:
    """``[468, 3]`` canonical vertices with the jaw opened by ``degrees`` about a hinge below the ears.

    Vertices below the lip line follow fully (the lower lip included), fading out above it and
    towards the sides of the face, as a crude jawOpen for testing expression sensitivity.
    """
    lip_line = 0.5 * (verts[13, 1] + verts[14, 1])
    w = np.clip((verts[:, 1] - lip_line) / 0.004 + 0.5, 0.0, 1.0)
    w *= np.clip((0.078 - np.abs(verts[:, 0])) / 0.02, 0.0, 1.0)
    hinge = np.array([0.0, 0.0, 0.045])
    a = np.radians(degrees) * w
    rel = verts - hinge
    out = verts.copy()
    # Positive angle swings the chin down (+y) and back (+z) about the x axis.
    out[:, 1] = hinge[1] + np.cos(a) * rel[:, 1] - np.sin(a) * rel[:, 2]
    out[:, 2] = hinge[2] + np.sin(a) * rel[:, 1] + np.cos(a) * rel[:, 2]
    return out


def smile(verts: np.ndarray, strength: float) -> np.ndarray:
    """``[468, 3]`` vertices with both mouth corners pulled up, out and back (a crude mouthSmile)."""
    out = verts.copy()
    for corner, side in ((61, -1.0), (291, 1.0)):
        w = strength * np.exp(-np.sum((verts - verts[corner]) ** 2, axis=1) / (2 * 0.016**2))
        out += w[:, None] * np.array([0.006 * side, -0.009, 0.0035])
    return out


def synthetic_head(
    canonical: CanonicalFace, n_face: int = 40_000, seed: int = 0, jaw_open_deg: float = 0.0, smile_strength: float = 0.0
) -> SyntheticHead:
    """The procedurally textured canonical face on a skull with ears and a neck (optionally an expression)."""
    rng = np.random.default_rng(seed)
    verts = canonical.vertices.astype(np.float64)
    tris = canonical.triangles
    tex = _texture(canonical, rng)
    tri, bary = _sample_triangles(verts, tris, n_face, rng)
    corners = tris[tri]
    if jaw_open_deg:
        verts = open_jaw(verts, jaw_open_deg)
    if smile_strength:
        verts = smile(verts, smile_strength)
    means = np.einsum("nk,nkd->nd", bary, verts[corners])
    normals = np.einsum("nk,nkd->nd", bary, _vertex_normals(verts, tris)[corners])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    uv = np.einsum("nk,nkd->nd", bary, canonical.uvs[corners].astype(np.float64))
    px = np.clip(np.round(uv * TEX - 0.5).astype(int), 0, TEX - 1)
    head, head_n, head_c, head_s = _skull_and_neck(canonical, 14_000, 5_000, rng)
    return SyntheticHead(
        means=np.concatenate([means, head]),
        normals=np.concatenate([normals, head_n]),
        albedo=np.concatenate([tex[px[:, 1], px[:, 0]], head_c]),
        sizes=np.concatenate([np.full(n_face, 0.0012), head_s]),
    )


def head_camera(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0, distance: float = 0.6,
                size: int = 256, fov_deg: float = 30.0) -> Camera:
    """A camera looking at the head origin; yaw/pitch/roll follow ``PoseFit``'s head-angle convention.

    Positive yaw (nose towards image right) puts the camera on the subject's right (-x); positive
    pitch (head tilted down) puts it above the head (-y); roll turns the image about the optical axis.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    eye = distance * torch.tensor([-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])
    w2c = look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    r = math.radians(roll_deg)
    rz = torch.eye(4)
    rz[:2, :2] = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return Camera(intrinsics_from_fov(fov_deg, size, size), rz @ w2c, size, size)
