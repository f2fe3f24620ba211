"""The parts of a synthetic head that expressions never move: scalp and hair, ears, neck.

Each part is a tuple ``(means [n, 3], normals [n, 3], albedo [n, 3], scales, lit, opacity, tangents [n, 3][, two_sided])``
in the head frame (metres; x to the subject's left, y down, z from the face towards the back),
as ``head._pack`` concatenates them.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.path import Path as PolygonPath

from avat3r_cli.data.synthetic.deformers import FACE_OVAL
from avat3r_cli.data.synthetic.identity import Identity

N_SKULL, N_LONG, N_EAR, N_NECK = 14_000, 7_000, 1_000, 4_000


def ellipsoid_points(rng: np.random.Generator, n: int, centre: np.ndarray, axes: np.ndarray):
    """``[n, 3]`` points on an ellipsoid (roughly uniform by area) and their unit normals."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    normals = d / axes
    return centre + d * axes, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def _strand_scales(n: int, along: float, across: float) -> np.ndarray:
    return np.stack([np.full(n, along), np.full(n, across), np.full(n, across * 0.15)], axis=1)


def _hair_albedo(identity: Identity, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-strand brightness jitter, so hair reads as strands rather than paint."""
    return np.clip(np.array(identity.hair)[None] * rng.uniform(0.65, 1.3, (n, 1)), 0.0, 1.0)


def scalp_and_hair(identity: Identity, rest: np.ndarray, centre: np.ndarray, axes: np.ndarray,
                   rng: np.random.Generator) -> list[tuple]:
    """Skull (skin and hair-covered), hair shell and long-hair curtain by style, ears and a neck.

    ``rest`` is the ``[468, 3]`` neutral face, whose outline decides which skull points are hidden
    behind the face; ``centre`` and ``axes`` ``[3]`` are the skull ellipsoid.
    """
    skin = np.array(identity.skin)
    pts, normals = ellipsoid_points(rng, N_SKULL, centre, axes)
    oval = PolygonPath(rest[list(FACE_OVAL), :2])
    hidden = oval.contains_points(pts[:, :2]) & (pts[:, 2] < centre[2])
    pts, normals = pts[~hidden], normals[~hidden]
    # Hairline above the forehead, sloping down towards the back; all of the back is hair.
    depth_in_hair = np.maximum(identity.hairline + 0.6 * (pts[:, 2] + 0.03) - pts[:, 1], pts[:, 2] - 0.09)
    hairy = depth_in_hair > 0
    crown = centre + np.array([0.0, -axes[1], 0.3 * axes[2]])
    strand_dir = pts - crown  # strands fall away from the crown

    parts: list[tuple] = []
    if identity.hair_style == "buzz":
        stubble = 0.5 * _hair_albedo(identity, len(pts), rng) + 0.5 * skin * 0.8
        colour = np.where(hairy[:, None], stubble, skin * 0.95)
    else:
        colour = np.where(hairy[:, None], _hair_albedo(identity, len(pts), rng), skin * 0.95)
    parts.append((pts, normals, colour, 0.0034, 1.0, 0.95, strand_dir))

    if identity.hair_style != "buzz":
        h_pts, h_n, h_dir = pts[hairy], normals[hairy], strand_dir[hairy]
        # Full thickness a couple of centimetres into the hair, thinner at the hairline and nape.
        thick = identity.hair_volume * np.clip(depth_in_hair[hairy] / 0.02, 0.15, 1.0)
        thick *= np.clip((0.07 - h_pts[:, 1]) / 0.07, 0.3, 1.0)
        shell = h_pts + h_n * thick[:, None]
        parts.append((shell, h_n, _hair_albedo(identity, len(shell), rng), _strand_scales(len(shell), 0.006, 0.0022),
                      1.0, 0.95, h_dir))
    if identity.hair_style == "long":
        parts.append(_long_hair(identity, centre, axes, rng))
    parts.append(_ears(identity, centre, axes, rng))
    angle = rng.random(N_NECK) * 2 * math.pi
    neck_n = np.stack([np.sin(angle), np.zeros(N_NECK), -np.cos(angle)], axis=1)
    neck = np.array([0.0, 0.0, 0.045]) + 0.05 * neck_n
    neck[:, 1] = rng.uniform(0.03, 0.2, N_NECK)
    # Shadowed under the jaw, so the jaw line stands out against the neck as on a photo.
    shadow = 0.68 + 0.22 * np.clip((neck[:, 1] - 0.09) / 0.06, 0.0, 1.0)
    parts.append((neck, neck_n, skin * shadow[:, None], 0.0045, 1.0, 0.95, np.tile([0.0, 1.0, 0.0], (N_NECK, 1))))
    return parts


def _long_hair(identity: Identity, centre: np.ndarray, axes: np.ndarray, rng: np.random.Generator) -> tuple:
    """A curtain hanging from above the ears to ``identity.hair_length`` round the back and sides."""
    theta = np.radians(rng.uniform(-115.0, 115.0, N_LONG))  # 0 = straight back
    top = centre[1] - 0.3 * axes[1]
    y = rng.uniform(top, identity.hair_length, N_LONG)
    rel = np.minimum((y - centre[1]) / axes[1], 0.0)
    shrink = np.sqrt(np.clip(1.0 - rel**2, 0.0, 1.0))  # follow the skull above its equator
    flare = 0.02 * np.clip((y - centre[1]) / 0.15, 0.0, 1.0)
    pad = identity.hair_volume + 0.004 + flare
    x = np.sin(theta) * (axes[0] * shrink + pad)
    z = centre[2] + np.cos(theta) * (axes[2] * shrink + pad)
    pts = np.stack([x, y, z], axis=1)
    normals = np.stack([np.sin(theta), np.zeros(N_LONG), np.cos(theta)], axis=1)
    tangents = np.tile([0.0, 1.0, 0.0], (N_LONG, 1))
    return (pts, normals, _hair_albedo(identity, N_LONG, rng), _strand_scales(N_LONG, 0.009, 0.0026), 1.0, 0.95, tangents, True)


def _ears(identity: Identity, centre: np.ndarray, axes: np.ndarray, rng: np.random.Generator) -> tuple:
    """Flat ellipses on the skull's sides between brow and nose-base height, flaring back."""
    y_c, z_c = -0.005, 0.062
    rel = ((y_c - centre[1]) / axes[1]) ** 2 + ((z_c - centre[2]) / axes[2]) ** 2
    x_s = axes[0] * math.sqrt(max(0.0, 1.0 - rel))
    r, phi = np.sqrt(rng.random(2 * N_EAR)), rng.random(2 * N_EAR) * 2 * math.pi
    side = np.repeat([-1.0, 1.0], N_EAR)
    ear_z = z_c + 0.017 * r * np.cos(phi)
    x = side * (x_s + 0.002 + 0.3 * (ear_z - (z_c - 0.017)))
    pts = np.stack([x, y_c + 0.03 * r * np.sin(phi), ear_z], axis=1)
    normals = np.stack([side, np.zeros_like(side), -0.3 * np.ones_like(side)], axis=1)
    albedo = np.array(identity.skin)[None] * np.where(r < 0.55, 0.72, 0.95)[:, None]
    return (pts, normals, albedo, 0.0015, 1.0, 0.95, np.tile([0.0, 1.0, 0.0], (2 * N_EAR, 1)), True)
