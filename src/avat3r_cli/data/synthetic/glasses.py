"""Glasses for a synthetic head: two rims, a bridge on the nose, temples back to the ears and faint lenses.

Placed from the neutral face: each lens is centred in front of its eye, its plane about 1.4 cm
in front of the eye opening and wrapped a little round the face; the temples run from hinges
beside the face to the tops of the ears. The glasses are rigid, so they sit in the head's
static parts (expressions do not move them).

Each part is a tuple ``(means [n, 3], normals [n, 3], albedo [n, 3], scales, lit, opacity, tangents [n, 3], two_sided, sheen)``
in the head frame (metres; x to the subject's left, y down, z from the face towards the back).
"""

from __future__ import annotations

import math

import numpy as np

from avat3r_cli.data.synthetic.appearance import Glasses
from avat3r_cli.data.synthetic.deformers import LEFT_EYE, RIGHT_EYE

N_RIM, N_LENS, N_TEMPLE, N_BRIDGE = 700, 350, 260, 90
LENS_IN_FRONT = 0.014  # metres from the eye opening to the lens plane
WRAP = 0.12  # the lens plane bends back this many metres per metre out from the lens centre
EAR_TOP = (-0.034, 0.056)  # head-frame (y, z) where a temple rests on the ear


def _outline(g: Glasses, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[n, 2]`` (x, y offsets from the lens centre) on the superellipse outline at angles
    ``t`` ``[n]``, and their unit outward normals ``[n, 2]``."""
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / g.roundness
    xy = np.stack([g.half_width * np.sign(c) * np.abs(c) ** e, g.half_height * np.sign(s) * np.abs(s) ** e], axis=1)
    # Outward normal of |x/a|^p + |y/b|^p = 1 is the gradient.
    p = g.roundness
    grad = np.stack([np.sign(xy[:, 0]) * np.abs(xy[:, 0] / g.half_width) ** (p - 1) / g.half_width,
                     np.sign(xy[:, 1]) * np.abs(xy[:, 1] / g.half_height) ** (p - 1) / g.half_height], axis=1)
    return xy, grad / (np.linalg.norm(grad, axis=1, keepdims=True) + 1e-12)


def _even_outline(g: Glasses, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` outline points evenly spaced by arc length, and their outward normals (see ``_outline``)."""
    dense, _ = _outline(g, np.linspace(0.0, 2 * math.pi, 2049))
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    t = np.interp((np.arange(n) + 0.5) / n * length[-1], length, np.linspace(0.0, 2 * math.pi, 2049))
    return _outline(g, t)


def _lens_z(plane: float, centre_x: float, x: np.ndarray) -> np.ndarray:
    return plane + WRAP * np.abs(x - centre_x) * (np.sign(x - centre_x) == np.sign(centre_x))


def glasses_parts(g: Glasses, rest: np.ndarray, skull_centre: np.ndarray, skull_axes: np.ndarray,
                  rng: np.random.Generator) -> list[tuple]:
    """The parts of glasses ``g`` on the neutral face ``rest`` ``[468, 3]`` and its skull ellipsoid."""
    frame = np.array(g.frame)
    parts = []
    ear_y, ear_z = EAR_TOP
    rel = ((ear_y - skull_centre[1]) / skull_axes[1]) ** 2 + ((ear_z - skull_centre[2]) / skull_axes[2]) ** 2
    ear_x = skull_axes[0] * math.sqrt(max(0.0, 1.0 - rel)) + 0.006
    inner_edges = []
    for eye in (LEFT_EYE, RIGHT_EYE):
        ring = rest[list(eye)]
        cx, cy = float(ring[:, 0].mean()) + math.copysign(0.001, ring[:, 0].mean()), float(ring[:, 1].mean()) - 0.002
        plane = float(ring[:, 2].min()) - LENS_IN_FRONT
        # Rim: rows of samples evenly along the outline, front and back faces so it shows edge-on.
        rows = max(1, round(g.rim / 0.0012))
        per_row = N_RIM // (2 * rows)
        xy, out = _even_outline(g, per_row)
        offsets = ((np.arange(rows) + 0.5) / rows * g.rim)[:, None, None]
        band = (xy[None] + out[None] * offsets).reshape(-1, 2)
        band, out = np.concatenate([band, band]), np.tile(out, (2 * rows, 1))
        n = len(band)
        x, y = cx + band[:, 0], cy + band[:, 1]
        z = _lens_z(plane, cx, x) + np.repeat([-0.0008, 0.0008], n // 2)
        along = np.stack([-out[:, 1], out[:, 0], np.zeros(n)], axis=1)
        normals = np.stack([out[:, 0] * 0.3, out[:, 1] * 0.3, -np.ones(n)], axis=1)
        step = 2 * math.pi * math.sqrt(0.5 * (g.half_width**2 + g.half_height**2)) / per_row
        scales = np.stack([np.full(n, 0.8 * step), np.full(n, 0.6 * g.rim / rows), np.full(n, 0.0007)], axis=1)
        parts.append((np.stack([x, y, z], axis=1), normals, frame, scales, 1.0, 0.97, along, True, 1.0))
        # Lens: a jittered grid inside the outline (an even film, not blotches), faint and dark
        # (it shows a dim room) with a strong sheen (its reflections of the key light).
        k = int(math.sqrt(N_LENS * 4 / math.pi))
        grid = (np.stack(np.meshgrid(np.arange(k), np.arange(k)), axis=-1).reshape(-1, 2) + 0.5) / k * 2 - 1
        u = grid + rng.uniform(-0.3, 0.3, grid.shape) / k
        u = u[(np.abs(u[:, 0]) ** g.roundness + np.abs(u[:, 1]) ** g.roundness) < 1.0]
        lx, ly = cx + u[:, 0] * g.half_width, cy + u[:, 1] * g.half_height
        lens = np.stack([lx, ly, _lens_z(plane, cx, lx)], axis=1)
        n_lens = np.tile([0.0, 0.0, -1.0], (len(lens), 1))
        size = 1.2 * 2 * g.half_width / k
        parts.append((lens, n_lens, np.array(g.lens_tint) * 0.3, size, 1.0, g.lens_opacity, None, True, 1.0))
        # Temple: from a hinge beside the face back over the ear.
        side = math.copysign(1.0, cx)
        hinge = np.array([cx + side * (g.half_width + g.rim), cy - 0.3 * g.half_height, plane + 0.004])
        bend = np.array([side * max(abs(hinge[0]) + 0.012, 0.08), hinge[1] + 0.002, hinge[2] + 0.03])
        ear = np.array([side * ear_x, ear_y, ear_z])
        s = rng.random(N_TEMPLE)
        first = s < 0.3
        pts = np.where(first[:, None], hinge + (bend - hinge) * (s / 0.3)[:, None],
                       bend + (ear - bend) * ((s - 0.3) / 0.7)[:, None])
        dirs = np.where(first[:, None], bend - hinge, ear - bend)
        pts += rng.normal(0.0, 0.0004, pts.shape)
        t_normals = np.tile([side, 0.0, 0.0], (N_TEMPLE, 1))
        scales = _bar(N_TEMPLE, 0.0025, max(g.rim, 0.0012))
        parts.append((pts, t_normals, frame, scales, 1.0, 0.97, dirs, True, 1.0))
        inner_edges.append(np.array([cx - side * (g.half_width + 0.5 * g.rim), cy - 0.3 * g.half_height, plane]))
    # Bridge: an arch over the nose between the rims' inner edges.
    a, b = inner_edges
    s = rng.random(N_BRIDGE)
    pts = a + (b - a) * s[:, None]
    pts[:, 1] -= 0.004 * np.sin(math.pi * s)
    pts[:, 2] -= 0.002
    scales = _bar(N_BRIDGE, 0.0012, max(g.rim * 0.6, 0.001))
    parts.append((pts, np.tile([0.0, 0.0, -1.0], (N_BRIDGE, 1)), frame, scales, 1.0, 0.97,
                  np.tile(b - a, (N_BRIDGE, 1)), True, 1.0))
    return parts


def _bar(n: int, along: float, across: float) -> np.ndarray:
    return np.stack([np.full(n, along), np.full(n, across), np.full(n, across)], axis=1)
