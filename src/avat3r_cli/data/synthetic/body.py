"""The parts of a synthetic subject below and beside the head that expressions never move: ears,
neck, and shoulders in a shirt, so that crops look like phone photos (which show the shoulders).

Each part is a tuple ``(means [n, 3], normals [n, 3], albedo [n, 3], scales, lit, opacity, tangents [n, 3][, two_sided[, sheen]])``
in the head frame (metres; x to the subject's left, y down, z from the face towards the back),
as ``head._pack`` concatenates them.
"""

from __future__ import annotations

import math

import numpy as np

from avat3r_cli.data.synthetic.appearance import Clothing
from avat3r_cli.data.synthetic.identity import Identity

N_EAR, N_NECK, N_TORSO = 1_000, 4_000, 9_000
NECK_TOP, SHOULDER_TOP, SHOULDER_DROP, TORSO_BOTTOM = 0.0, 0.14, 0.06, 0.46
NOTCH_DROP = 0.035  # the neck meets the chest this much lower in front (the collarbones' notch)
NECK_Z, TORSO_Z, CHEST_DEPTH = 0.045, 0.065, 0.105
NECK_LEAN = 0.12  # the neck's centre moves back this many metres per metre down


def skin_jitter(identity: Identity, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` skin albedo with per-sample grain (pores at the samples' scale)."""
    grain = 1.0 + identity.skin_grain * rng.standard_normal((n, 1))
    return np.clip(np.array(identity.skin)[None] * grain, 0.0, 1.0)


def ears(identity: Identity, centre: np.ndarray, axes: np.ndarray, rng: np.random.Generator) -> tuple:
    """Ears on the skull's sides between brow and nose-base height, flaring back: a lighter rim
    (helix), a darker groove inside it, the bowl (concha) darkest, and a lobe at the bottom."""
    y_c, z_c = -0.005, 0.062
    rel = ((y_c - centre[1]) / axes[1]) ** 2 + ((z_c - centre[2]) / axes[2]) ** 2
    x_s = axes[0] * math.sqrt(max(0.0, 1.0 - rel))
    r, phi = np.sqrt(rng.random(2 * N_EAR)), rng.random(2 * N_EAR) * 2 * math.pi
    side = np.repeat([-1.0, 1.0], N_EAR)
    # Wider at the top than at the lobe: an ear is roughly egg-shaped, the narrow end down.
    width = 0.017 * (1.0 - 0.25 * np.clip(np.sin(phi), 0.0, 1.0))
    ear_z = z_c + width * r * np.cos(phi)
    ear_y = y_c + 0.03 * r * np.sin(phi)
    x = side * (x_s + 0.002 + 0.3 * (ear_z - (z_c - 0.017)) + 0.004 * (r > 0.8))
    pts = np.stack([x, ear_y, ear_z], axis=1)
    normals = np.stack([side, np.zeros_like(side), -0.3 * np.ones_like(side)], axis=1)
    bowl = np.hypot(r * np.cos(phi) + 0.25, r * np.sin(phi) - 0.05) < 0.45
    tone = np.where(r > 0.8, 1.0, np.where(r > 0.62, 0.8, 0.92))
    tone = np.where(bowl, 0.7, tone)
    # Ears let light through and look redder than the face.
    albedo = skin_jitter(identity, 2 * N_EAR, rng) * tone[:, None] * np.array([1.0, 0.93, 0.92])
    return (pts, normals, albedo, 0.0015, 1.0, 0.95, np.tile([0.0, 1.0, 0.0], (2 * N_EAR, 1)), True, 0.6)


def neck(identity: Identity, rng: np.random.Generator) -> tuple:
    """An elliptic cylinder from inside the head down into the shoulders, leaning back as it goes
    down, shadowed under the jaw in front."""
    angle = rng.random(N_NECK) * 2 * math.pi
    y = rng.uniform(NECK_TOP, SHOULDER_TOP + NOTCH_DROP + 0.02, N_NECK)
    rx, rz = identity.neck_width, identity.neck_width * 1.02
    zc = NECK_Z + NECK_LEAN * (y - NECK_TOP)
    pts = np.stack([rx * np.sin(angle), y, zc - rz * np.cos(angle)], axis=1)
    normals = np.stack([np.sin(angle) / rx, np.zeros(N_NECK), -np.cos(angle) / rz], axis=1)
    front = np.clip(-normals[:, 2] / np.linalg.norm(normals, axis=1), 0.0, 1.0)
    # Under the jaw the neck is in the head's shadow: darkest just below the chin, in front.
    jaw = np.clip((0.13 - y) / 0.05, 0.0, 1.0) * front
    albedo = skin_jitter(identity, N_NECK, rng) * (1.0 - 0.3 * jaw)[:, None]
    return (pts, normals, albedo, 0.0045, 1.0, 0.95, np.tile([0.0, 1.0, 0.0], (N_NECK, 1)), False, 0.5)


def _torso_points(identity: Identity, u: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``[n, 3]`` torso surface at profile parameter ``u`` (0 neck .. 1 bottom) and angle ``theta`` (0 front, +x left).

    The first part of ``u`` is a quarter ellipse from the neck out and down to the shoulder (the
    trapezius and the collarbones), the rest hangs straight down.
    """
    w, rx = identity.shoulder_width, identity.neck_width
    neck_z = NECK_Z + NECK_LEAN * (SHOULDER_TOP - NECK_TOP)
    side_len = TORSO_BOTTOM - SHOULDER_TOP - SHOULDER_DROP
    curve_len = 0.5 * math.pi * math.sqrt(0.5 * ((w - rx) ** 2 + SHOULDER_DROP**2))
    split = curve_len / (curve_len + side_len)
    t = np.clip(u / split, 0.0, 1.0) * 0.5 * math.pi
    inner = np.stack([rx * np.sin(theta), neck_z - rx * np.cos(theta)], axis=1)
    outer = np.stack([w * np.sin(theta), TORSO_Z - CHEST_DEPTH * np.cos(theta)], axis=1)
    xz = inner + (outer - inner) * np.sin(t)[:, None]
    top = SHOULDER_TOP + NOTCH_DROP * np.clip(np.cos(theta), 0.0, 1.0) ** 2
    drop = SHOULDER_TOP + SHOULDER_DROP - top
    y = top + drop * (1.0 - np.cos(t)) + side_len * np.clip((u - split) / (1.0 - split), 0.0, 1.0)
    # A little narrower towards the waist.
    xz[:, 0] *= 1.0 - 0.12 * np.clip((y - SHOULDER_TOP - SHOULDER_DROP) / side_len, 0.0, 1.0)
    return np.stack([xz[:, 0], y, xz[:, 1]], axis=1)


def _neckline(clothing: Clothing, theta: np.ndarray) -> np.ndarray:
    """``[n]`` how far from the neck (metres) the shirt starts at ``theta``."""
    front = np.clip(np.cos(theta), 0.0, 1.0)
    if clothing.neckline == "v":
        return 0.012 + 0.09 * np.clip(1.0 - np.abs(np.angle(np.exp(1j * theta))) / 0.45, 0.0, 1.0)
    if clothing.neckline == "scoop":
        return 0.02 + 0.06 * front**3
    return 0.012 + 0.02 * front**2


def _fabric(clothing: Clothing, pts: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` shirt albedo: pattern, folds (low-frequency shade) and weave noise."""
    n = len(pts)
    main, accent = np.array(clothing.colour), np.array(clothing.accent)
    around = theta * 0.16  # metres round the torso, roughly
    if clothing.pattern == "stripes":
        on = (np.floor(pts[:, 1] / clothing.period) % 2 == 1)[:, None]
        albedo = np.where(on, accent, main)
    elif clothing.pattern == "check":
        a = np.floor(pts[:, 1] / clothing.period) % 2
        b = np.floor(around / clothing.period) % 2
        albedo = main * (1 - 0.5 * (a + b))[:, None] + accent * (0.5 * (a + b))[:, None]
    else:
        albedo = np.broadcast_to(main, (n, 3)).copy()
    weave = 0.08 if clothing.pattern == "heather" else 0.025
    albedo = albedo * (1.0 + weave * rng.standard_normal((n, 1)))
    folds = np.zeros(n)
    for _ in range(4):
        k = rng.normal(0.0, 40.0, 2)
        folds += np.sin(k[0] * around + k[1] * pts[:, 1] + rng.uniform(0, 2 * math.pi))
    return np.clip(albedo * (1.0 + 0.05 * folds)[:, None], 0.0, 1.0)


def torso(identity: Identity, rng: np.random.Generator) -> tuple:
    """Shoulders and chest in a shirt, skin above its neckline; denser near the top, which every
    view that shows the torso sees, and sparser (larger Gaussians) further down."""
    cand = 4 * N_TORSO
    u, theta = rng.random(cand), rng.random(cand) * 2 * math.pi
    eps = 1e-4
    p = _torso_points(identity, u, theta)
    du = _torso_points(identity, np.minimum(u + eps, 1.0), theta) - _torso_points(identity, np.maximum(u - eps, 0.0), theta)
    dt = _torso_points(identity, u, theta + eps) - _torso_points(identity, u, theta - eps)
    cross = np.cross(dt, du)
    area = np.linalg.norm(cross, axis=1) / (4 * eps * eps)  # metres^2 per unit of (u, theta)
    weight = np.clip(1.2 - 3.0 * (p[:, 1] - SHOULDER_TOP), 0.3, 1.0)
    integral = float(np.mean(area * weight)) * 2 * math.pi  # of the weight over the surface
    pick = rng.choice(cand, size=N_TORSO, replace=False, p=area * weight / (area * weight).sum())
    p, theta, cross, weight = p[pick], theta[pick], cross[pick], weight[pick]
    normals = cross / (np.linalg.norm(cross, axis=1, keepdims=True) + 1e-12)
    outward = np.stack([p[:, 0], -0.5 * (p[:, 1] < SHOULDER_TOP + SHOULDER_DROP), p[:, 2] - TORSO_Z], axis=1)
    normals *= np.sign((normals * outward).sum(axis=1, keepdims=True) + 1e-12)
    spacing = np.sqrt(integral / (N_TORSO * weight))
    # Skin above the neckline, a ribbed band at its edge, the shirt below.
    inner = _torso_points(identity, np.zeros(len(p)), theta)
    from_neck = np.linalg.norm(p - inner, axis=1)
    edge = _neckline(identity.clothing, theta)
    shirt = from_neck >= edge
    albedo = _fabric(identity.clothing, p, theta, rng)
    albedo[from_neck < edge + 0.007] *= 0.85  # the ribbed band at the neckline
    # Blend over a few millimetres: the samples here are larger than the band is wide.
    cover = np.clip((from_neck - edge) / 0.006 + 0.5, 0.0, 1.0)[:, None]
    albedo = albedo * cover + skin_jitter(identity, len(p), rng) * (1.0 - cover)
    tangents = np.stack([np.cos(theta), np.zeros(len(p)), np.sin(theta)], axis=1)  # round the torso
    # Discs a little wider than their spacing: random samples leave gaps at 0.8.
    return (p, normals, albedo, 1.15 * spacing, 1.0, 0.95, tangents, False, 0.5 * ~shirt)
