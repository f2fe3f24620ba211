"""Procedural face albedo painted in the canonical mesh's UV space, per identity.

Features are placed from the landmark topology (docs/background.md: procedural albedo
was detected by MediaPipe in 260/260 renders): skin with low-frequency blotches, blush, darker
eye sockets, lash lines, brows, lips and nostrils; then the detail of photographed skin: a
beard shadow, freckles, moles and pore-scale grain. The eyes themselves are separate Gaussians
(an eyeball behind the lids, see head.py), so the eye openings are painted only for the helper
views that look at the texture directly.
"""

from __future__ import annotations

import cv2
import numpy as np

from avat3r_cli.data.synthetic.deformers import (
    FACE_OVAL, LEFT_BROW, LEFT_EYE, LIPS_INNER, LIPS_OUTER, RIGHT_BROW, RIGHT_EYE,
)
from avat3r_cli.data.synthetic.identity import Identity
from avat3r_cli.io.mediapipe_assets import CanonicalFace

TEX = 1024
# The beard area: the face outline from ear to ear under the chin, closed under the cheekbones
# and the nose.
BEARD = FACE_OVAL[9:28] + (187, 205, 164, 425, 411)
FRECKLE_CENTRES = (4, 50, 280, 9)  # nose, cheeks, between the brows


def face_texture(identity: Identity, canonical: CanonicalFace, size: int = TEX) -> np.ndarray:
    """``[size, size, 3]`` float64 albedo in 0..1 for ``identity`` (rows follow UV v, columns u)."""
    rng = np.random.default_rng(identity.seed)
    skin = np.array(identity.skin)
    uv = canonical.uvs.astype(np.float64) * size
    mm = np.linalg.norm(uv[33] - uv[263]) / 88.9  # texture pixels per millimetre, from the IOD

    def pts(ids) -> np.ndarray:
        return np.round(uv[list(ids)] * 16).astype(np.int32)  # 4 fractional bits for cv2

    def fill(img: np.ndarray, ids, colour) -> None:
        cv2.fillPoly(img, [pts(ids)], tuple(float(c) for c in colour), cv2.LINE_AA, 4)

    noise = cv2.resize(rng.normal(0.0, 1.0, (6, 6, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.normal(0.0, 1.0, (48, 48, 1)), (size, size), interpolation=cv2.INTER_CUBIC)
    tex = skin[None, None] * (1.0 + 0.03 * noise)
    blush = np.zeros((size, size), np.float64)
    for i in (50, 280):  # cheeks
        cv2.circle(blush, tuple(np.round(uv[i]).astype(int)), int(12 * mm), 1.0, -1)
    blush = cv2.GaussianBlur(blush, (0, 0), 8 * mm)
    redder = skin * np.array([0.99, 0.80, 0.82])
    tex += blush[..., None] * (redder - skin)[None, None] * identity.blush

    # Eye sockets a little darker: the strongest shading cue of a face under soft light.
    socket = np.zeros((size, size), np.float64)
    for eye in (RIGHT_EYE, LEFT_EYE):
        fill(socket, eye, (1.0,))
    socket = cv2.GaussianBlur(cv2.dilate(socket, np.ones((int(8 * mm),) * 2)), (0, 0), 4 * mm)
    tex *= 1.0 - 0.16 * socket[..., None]
    lash = tuple(np.minimum(np.array(identity.brow) * 0.5, 0.06))
    for eye in (RIGHT_EYE, LEFT_EYE):
        fill(tex, eye, (0.93, 0.91, 0.88))  # sclera, only seen where the eyeball is not drawn
        upper, lower = eye[:9], eye[8:] + eye[:1]
        cv2.polylines(tex, [pts(upper)], False, lash, max(1, int(1.6 * mm)), cv2.LINE_AA, 4)
        cv2.polylines(tex, [pts(lower)], False, tuple(skin * 0.55), max(1, int(0.8 * mm)), cv2.LINE_AA, 4)
    brows = np.zeros((size, size), np.float64)
    for upper, lower in (RIGHT_BROW, LEFT_BROW):
        # Thicker brows: push the upper edge away from the lower one.
        up, lo = uv[list(upper)], uv[list(lower)]
        top = lo + (up - lo) * identity.brow_width
        poly = np.concatenate([top, lo[::-1]])
        cv2.fillPoly(brows, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    brows = cv2.GaussianBlur(brows, (0, 0), 0.8 * mm)
    hairs = np.clip(0.75 + 0.5 * fine[..., 0], 0.3, 1.0)  # patchy, not a painted block
    a = (brows * hairs)[..., None]
    tex = tex * (1 - a) + np.array(identity.brow)[None, None] * a
    lips = np.zeros((size, size), np.float64)
    fill(lips, LIPS_OUTER, (1.0,))
    lips = cv2.GaussianBlur(lips, (0, 0), 0.7 * mm)[..., None]
    tex = tex * (1 - lips) + np.array(identity.lip)[None, None] * lips
    fill(tex, LIPS_INNER, np.array(identity.lip) * 0.45)
    # Nostrils on the underside of the nose (vertices whose normals point down), where a camera
    # below the face sees them: a strong cue for head-up poses.
    for ids in ((79, 166, 60, 239), (309, 392, 290, 459)):
        centre = tuple(np.round(uv[list(ids)].mean(axis=0)).astype(int))
        cv2.ellipse(tex, centre, (int(3.6 * mm), int(2.2 * mm)), 0, 0, 360, tuple(skin * 0.3), -1, cv2.LINE_AA)
    tex = cv2.GaussianBlur(tex, (0, 0), 0.6 * mm)
    _skin_detail(tex, identity, uv, mm, pts, rng)
    return np.clip(tex, 0.0, 1.0)


def _skin_detail(tex: np.ndarray, identity: Identity, uv: np.ndarray, mm: float, pts, rng: np.random.Generator) -> None:
    """Beard shadow, freckles, moles and pore-scale grain, painted into ``tex`` in place."""
    size = tex.shape[0]
    skin = np.array(identity.skin)
    if identity.stubble > 0:
        beard = np.zeros((size, size), np.float64)
        cv2.fillPoly(beard, [pts(BEARD)], 1.0, cv2.LINE_AA, 4)
        cv2.fillPoly(beard, [pts(LIPS_OUTER)], 0.0, cv2.LINE_AA, 4)
        beard = cv2.GaussianBlur(beard, (0, 0), 3 * mm)
        speckle = np.clip(0.7 + 0.6 * rng.random((size, size)), 0.0, 1.0)  # stubble is grainy, not a wash
        a = (0.4 * identity.stubble * beard * speckle)[..., None]
        stubble = 0.45 * skin + 0.55 * np.array(identity.hair) * 0.8
        tex[:] = tex * (1 - a) + stubble[None, None] * a
    count = int(round(identity.freckles * 260))
    if count:
        spots = np.zeros((size, size), np.float64)
        centres = uv[list(FRECKLE_CENTRES)][rng.integers(len(FRECKLE_CENTRES), size=count)]
        xy = centres + rng.normal(0.0, 14 * mm, (count, 2))
        for (x, y), r, w in zip(xy, rng.uniform(0.35, 0.9, count) * mm, rng.uniform(0.3, 0.9, count)):
            cv2.circle(spots, (int(x * 16), int(y * 16)), max(1, int(r * 16)), w, -1, cv2.LINE_AA, 4)
        a = (0.7 * spots)[..., None]
        tex[:] = tex * (1 - a) + (skin * np.array([0.8, 0.62, 0.5]))[None, None] * a
    plain = np.setdiff1d(np.arange(len(uv)), np.array(LEFT_EYE + RIGHT_EYE + LIPS_OUTER + LIPS_INNER))
    for _ in range(int(rng.poisson(0.8))):
        x, y = uv[int(plain[rng.integers(len(plain))])]
        cv2.circle(tex, (int(x * 16), int(y * 16)), max(1, int(rng.uniform(0.5, 1.2) * mm * 16)),
                   tuple(float(c) for c in skin * np.array([0.45, 0.33, 0.28])), -1, cv2.LINE_AA, 4)
    tex *= 1.0 + identity.skin_grain * rng.standard_normal((size, size, 1))


def sample_texture(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``[N, 3]`` colours of ``tex`` at ``uv`` ``[N, 2]`` in 0..1 (nearest texel)."""
    size = tex.shape[0]
    px = np.clip(np.round(uv * size - 0.5).astype(int), 0, size - 1)
    return tex[px[:, 1], px[:, 0]]
