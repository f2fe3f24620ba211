"""Build the stylised example head ``examples/head.ply``: deterministic, numpy only, no downloads.

~18k flat Gaussian discs on simple implicit surfaces (skull, hair, eyes, nose, lips, ears, neck),
built in the project's head frame (metres, OpenCV-style, face towards -z, +y down, head at the
origin) and written, as ``avatar.ply`` files are, in the viewer frame (y up, face towards +z;
``avat3r_cli/core/frames.py``). ``tests/test_example_avatar.py`` checks that the committed file is
reproduced byte for byte.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.frames import head_to_viewer
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.ply import write_ply

DEFAULT_SEED = 0
DEFAULT_OUTPUT = Path(__file__).resolve().with_name("head.ply")
SPACING = 0.003  # metres between neighbouring samples on the large surfaces
FINE = 0.0016  # on the eyes and lips, so the iris and the mouth line stay sharp
SKULL = np.array([0.08, 0.11, 0.10])  # semi-axes: 0.16 m wide, 0.22 m tall, 0.20 m deep
SKIN, HAIR, LIPS = np.array([0.87, 0.67, 0.55]), np.array([0.24, 0.15, 0.09]), np.array([0.74, 0.3, 0.3])
SHIRT, SCLERA = np.array([0.20, 0.32, 0.52]), np.array([0.95, 0.95, 0.93])
IRIS, PUPIL = np.array([0.45, 0.30, 0.16]), np.array([0.05, 0.04, 0.04])
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))
Part = tuple[np.ndarray, np.ndarray, np.ndarray, float]  # points, normals, colours [M, 3]; spacing
Colour = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (points, normals) -> colours [M, 3]


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors ``[n, 3]`` (golden-angle spiral)."""
    i = np.arange(n) + 0.5
    y, r = 1.0 - 2.0 * i / n, np.sqrt(1.0 - (1.0 - 2.0 * i / n) ** 2)
    return np.stack([r * np.cos(GOLDEN_ANGLE * i), y, r * np.sin(GOLDEN_ANGLE * i)], axis=1)


def ellipsoid(center: np.ndarray, axes: np.ndarray, spacing: float) -> tuple[np.ndarray, ...]:
    """Axis-aligned ellipsoid samples: points, unit normals, unit-sphere directions (all ``[M, 3]``)."""
    p, (a, b, c) = 1.6075, axes  # Knud Thomsen's surface-area approximation, within ~1 %
    area = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    d = fibonacci_sphere(max(int(area / spacing**2), 16))
    normals = d / axes
    return center + d * axes, normals / np.linalg.norm(normals, axis=1, keepdims=True), d


def inside(points: np.ndarray, center: np.ndarray, axes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Boolean ``[M]``: points strictly inside the ellipsoid grown by ``margin`` metres."""
    return (((points - center) / (axes + margin)) ** 2).sum(axis=1) < 1.0


def jaw_taper(y: np.ndarray | float) -> np.ndarray:
    """Width factor of the skull at height ``y``: narrows below the cheeks towards the chin."""
    t = np.clip(np.asarray(y) / SKULL[1], 0.0, 1.0)
    return 1.0 - 0.28 * t * t


def inside_skull(points: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Boolean ``[M]``: points inside the tapered skull (undo the taper, test the ellipsoid)."""
    untaper = np.stack([jaw_taper(points[:, 1]), np.ones(len(points)), np.ones(len(points))], axis=1)
    return inside(points / untaper, np.zeros(3), SKULL, margin)


def skull_front(x: float, y: float, out: float) -> np.ndarray:
    """The point ``out`` metres in front of (-z) the face surface of the skull at ``(x, y)``."""
    r2 = (x / (SKULL[0] * jaw_taper(y))) ** 2 + (y / SKULL[1]) ** 2
    return np.array([x, y, -SKULL[2] * np.sqrt(max(1.0 - r2, 0.0)) - out])


def normals_to_quats(n: np.ndarray) -> np.ndarray:
    """wxyz quaternions ``[M, 4]`` turning local +z onto unit normals ``n [M, 3]`` (discs lie flat)."""
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros(len(n))], axis=1)
    q[q[:, 0] < 1e-9] = (0.0, 1.0, 0.0, 0.0)  # n = -z: half turn about x
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def smooth_noise(d: np.ndarray, rng: np.random.Generator, waves: int, freq: float) -> np.ndarray:
    """Smooth random field ``[M]`` on unit directions ``d [M, 3]``, roughly -1..1 (plane waves)."""
    k, phase = rng.normal(size=(waves, 3)) * freq, rng.uniform(0, 2 * np.pi, size=waves)
    return np.sin(d @ k.T + phase).sum(axis=1) / np.sqrt(waves / 2)


def build_skull_and_hair(rng: np.random.Generator) -> tuple[Part, Part]:
    """Tapered skin ellipsoid with brows and cheeks, and the hair shell over top and back."""
    pts, nrm, d = ellipsoid(np.zeros(3), SKULL, SPACING)
    x, y, f = pts[:, 0], pts[:, 1], jaw_taper(pts[:, 1])
    # The taper x -> f(y) x maps normals by the inverse transpose of its Jacobian.
    df = -0.56 * np.clip(y / SKULL[1], 0.0, 1.0) / SKULL[1]
    nrm = np.stack([nrm[:, 0] / f, nrm[:, 1] - x * df * nrm[:, 0] / f, nrm[:, 2]], axis=1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    pts = np.stack([x * f, y, pts[:, 2]], axis=1)
    col = SKIN * (1 + 0.02 * rng.standard_normal((len(pts), 1)))
    front = pts[:, 2] < 0
    for side in (-1, 1):  # rosy cheeks and dark, slightly arched brows
        dx = pts[:, 0] - side * 0.042
        cheek = (np.exp(-(dx**2 + (y - 0.035) ** 2) / 0.018**2) * front)[:, None] * 0.12
        col = col * (1 - cheek) + np.array([0.85, 0.45, 0.42]) * cheek
        dx = pts[:, 0] - side * 0.03
        brow = (dx / 0.017) ** 2 + ((y + 0.024 + 6 * dx**2) / 0.0035) ** 2 < 1
        col[brow & front] = HAIR * 0.8
    # Hairline: high over the forehead, just above the ears at the sides, low at the nape.
    back = (1.0 + d[:, 2]) / 2
    hair = d[:, 1] < -0.42 + 0.95 * back**2 + 0.06 * smooth_noise(d, rng, 6, 4.0)
    hd = d[hair]
    streaks = np.sin(60 * np.arctan2(hd[:, 0], hd[:, 2]) + 3 * smooth_noise(hd, rng, 6, 3.0))
    shade = 1 + 0.18 * streaks[:, None] + 0.06 * rng.standard_normal((len(hd), 1))
    lift = np.clip(0.006 + 0.003 * smooth_noise(hd, rng, 8, 3.0), 0.002, 0.012)  # hair volume
    hair_part = (pts[hair] + nrm[hair] * lift[:, None], nrm[hair], HAIR * shade, SPACING)
    return (pts[~hair], nrm[~hair], col[~hair], SPACING), hair_part


def eye_colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Sclera, iris and pupil ``[M, 3]`` by how far each normal ``[M, 3]`` turns from -z (gaze)."""
    gaze = -normals[:, 2:3]
    return np.where(gaze > 0.95, PUPIL, np.where(gaze > 0.78, IRIS, SCLERA))


def build_features() -> list[tuple[np.ndarray, np.ndarray, float, Colour]]:
    """Eyes, nose, lips, ears: ``(centre, semi-axes, spacing, colour)`` of ellipsoids half sunk
    into the skull; ``colour(points, normals)`` gives each sample's RGB ``[M, 3]``."""
    lips, ear_x = skull_front(0.0, 0.062, -0.004), SKULL[0] * jaw_taper(0.012) - 0.001
    return [
        *((skull_front(s * 0.031, -0.004, -0.0085), np.full(3, 0.0118), FINE, eye_colour) for s in (-1, 1)),
        (skull_front(0.0, 0.026, -0.004), np.array([0.0115, 0.021, 0.0165]), SPACING * 0.8,
         lambda p, n: SKIN * [1.0, 0.96, 0.95]),
        (lips, np.array([0.021, 0.0085, 0.008]), FINE,
         lambda p, n: np.where(np.abs(p[:, 1:2] - lips[1]) < 0.0011, LIPS * 0.45, LIPS)),
        # The inner half of each ear (the bowl facing the skull) is shadowed.
        *((np.array([s * ear_x, 0.012, 0.008]), np.array([0.0085, 0.029, 0.017]), SPACING * 0.8,
           lambda p, n: SKIN * (1 - 0.25 * (np.abs(p[:, :1]) < ear_x))) for s in (-1, 1)),
    ]  # fmt: skip


def build_neck(neck_r: np.ndarray, neck_z: float, top: float = 0.04, bottom: float = 0.2) -> list[Part]:
    """Elliptic tube (radii ``neck_r`` in x, z) from the jaw to a shirt collar, capped by a disc."""
    rings, per_ring = int((bottom - top) / SPACING), int(2 * np.pi * neck_r.mean() / SPACING)
    t = (np.arange(per_ring)[None, :] + 0.5 * (np.arange(rings)[:, None] % 2)) * 2 * np.pi / per_ring
    y = np.broadcast_to(top + (np.arange(rings)[:, None] + 0.5) * SPACING, t.shape)
    pts = np.stack([neck_r[0] * np.cos(t), y, neck_z + neck_r[1] * np.sin(t)], -1).reshape(-1, 3)
    nrm = np.stack([np.cos(t) / neck_r[0], np.zeros_like(t), np.sin(t) / neck_r[1]], -1).reshape(-1, 3)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    col = np.where(pts[:, 1:2] > 0.165, SHIRT, SKIN * 0.93)
    keep = ~inside_skull(pts)
    i = np.arange(int(np.pi * neck_r.prod() / SPACING**2)) + 0.5
    r = np.sqrt(i / len(i))
    disc = np.stack([neck_r[0] * r * np.cos(GOLDEN_ANGLE * i), np.full(len(i), bottom),
                     neck_z + neck_r[1] * r * np.sin(GOLDEN_ANGLE * i)], axis=1)  # fmt: skip
    down, cap_col = np.broadcast_to([0.0, 1.0, 0.0], disc.shape), np.broadcast_to(SHIRT * 0.8, disc.shape)
    return [(pts[keep], nrm[keep], col[keep], SPACING), (disc, down, cap_col, SPACING)]


def build_example_avatar(seed: int = DEFAULT_SEED) -> Gaussians:
    """The example head as degree-0 ``Gaussians`` (N ~ 18k, head frame), identical for identical ``seed``."""
    rng = np.random.default_rng(seed)
    (skin, skin_n, skin_c, _), hair = build_skull_and_hair(rng)
    neck_r, neck_z = np.array([0.05, 0.056]), 0.018
    # Drop skin inside the neck or under a feature, and feature samples inside the skull.
    in_tube = (skin[:, 0] / neck_r[0]) ** 2 + ((skin[:, 2] - neck_z) / neck_r[1]) ** 2 < 1
    buried = in_tube & (skin[:, 1] > 0.07)
    features: list[Part] = []
    for center, axes, spacing, colour in build_features():
        p, n, _ = ellipsoid(center, axes, spacing)
        buried |= inside(skin, center, axes)
        keep = ~inside_skull(p, margin=-0.0005)
        features.append((p[keep], n[keep], np.broadcast_to(colour(p, n), p.shape)[keep], spacing))
    skin_part = (skin[~buried], skin_n[~buried], skin_c[~buried], SPACING)
    parts = [skin_part, hair, *features, *build_neck(neck_r, neck_z)]
    means, normals, colours = (np.concatenate([part[k] for part in parts]) for k in range(3))
    tangent = np.concatenate([np.full(len(p), s) for p, _, _, s in parts])
    # Baked light from above (yaw-invariant, so it suits a turntable): undersides of the nose,
    # chin and ears get darker and the flat colours read as a shape without a lit renderer.
    colours = colours * (0.86 - 0.14 * normals[:, 1:2])
    means = means + rng.normal(scale=0.0002, size=means.shape)  # break up the perfect spirals
    scales = np.stack([tangent, tangent, np.full_like(tangent, 0.001)], axis=1)
    quats, opacities = normals_to_quats(normals), np.full(len(means), 0.9)
    arrays = (means, quats, scales, opacities, np.clip(colours, 0.0, 1.0))
    return Gaussians.from_colors(*(torch.from_numpy(a.astype(np.float32)) for a in arrays))


def main(argv: list[str] | None = None) -> None:
    """Write the example head to ``--output`` (default ``examples/head.ply``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the .ply")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (noise, jitter)")
    args = parser.parse_args(argv)
    gaussians = build_example_avatar(args.seed)
    write_ply(args.output, head_to_viewer(gaussians))
    size = (gaussians.means.amax(0) - gaussians.means.amin(0)).tolist()
    print(f"{args.output}: {gaussians.count} Gaussians, extent {[round(v, 3) for v in size]} m")


if __name__ == "__main__":
    main()
