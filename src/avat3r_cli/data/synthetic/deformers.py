"""Expression deformers on MediaPipe's canonical face mesh, keyed to ARKit blendshape names.

Each deformer is a small function of the rest vertices ``[468, 3]`` (head frame, metres: x to the
subject's left, y down, z from the face towards the back) and a weight in 0..1. Local deformers
add displacements computed on the rest shape; then the eyelids close onto the current lower lid
and the jaw rotates last, so a smiling lower lip still follows the opening jaw. Amplitudes, as
measured on real faces: jaw 24 degrees about a hinge 3 cm behind the face origin, smile corner
0.9 cm up, 0.6 cm out, 0.35 cm back with a 1.6 cm falloff.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

# Landmark loops of the canonical topology. "Left"/"Right" are the subject's own sides (ARKit);
# the subject's left is +x.
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
UPPER_INNER_LIP = LIPS_INNER[:11]  # corner 78 .. corner 308
LOWER_INNER_LIP = (78,) + LIPS_INNER[11:][::-1] + (308,)  # the same corners, matched index-wise

JAW_HINGE = np.array([0.0, 0.0, 0.03])
JAW_MAX_DEG = 24.0

DEFORMERS = (
    "jawOpen", "jawLeft", "jawRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthPucker", "mouthFunnel", "mouthLeft", "mouthRight", "cheekPuff",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight",
    "browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight",
)
"""The ARKit names ``deform`` understands, in the column order of ``deformers.npy``."""


def eye_lids(side: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(upper, lower) lid polylines of the subject's ``side`` eye, 9 vertices each, corner to corner, matched."""
    eye = LEFT_EYE if side == "Left" else RIGHT_EYE
    return eye[:9], (eye[0],) + eye[9:][::-1] + (eye[8],)


@lru_cache(maxsize=1)
def _adjacency() -> tuple[frozenset[int], ...]:
    from avat3r_cli.io.mediapipe_assets import load_canonical_face

    tris = load_canonical_face().triangles
    nbrs: list[set[int]] = [set() for _ in range(468)]
    for a, b, c in tris:
        nbrs[a] |= {b, c}
        nbrs[b] |= {a, c}
        nbrs[c] |= {a, b}
    return tuple(frozenset(n) for n in nbrs)


def _rings(ids, count: int, exclude=()) -> list[list[int]]:
    """Successive vertex rings around ``ids`` (topological neighbours), ``count`` of them."""
    adj = _adjacency()
    seen = set(ids) | set(exclude)
    rings, frontier = [], list(ids)
    for _ in range(count):
        ring = sorted({n for v in frontier for n in adj[v]} - seen)
        seen |= set(ring)
        rings.append(ring)
        frontier = ring
    return rings


def vertex_rings(ids, count: int) -> list[list[int]]:
    """``count`` successive rings of canonical-mesh vertices around ``ids`` (ring 1 = their neighbours)."""
    return _rings(list(ids), count)


def neutral_vertices(vertices: np.ndarray) -> np.ndarray:
    """``[468, 3]`` canonical vertices with the lips closed (the canonical mesh parts them by 0.58 cm).

    The inner-lip vertices meet on their common midline and the next ring follows halfway, so a
    neutral face reads as a closed mouth (jawOpen near 0) while opening reveals the mouth interior.
    """
    out = vertices.astype(np.float64).copy()
    up, lo = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    mid = 0.5 * (out[up] + out[lo])
    moves = np.zeros_like(out)
    moves[up], moves[lo] = mid - out[up], mid - out[lo]
    for ring in _rings(up + lo, 1):
        for v in ring:
            near = [n for n in _adjacency()[v] if n in set(up + lo)]
            moves[v] = 0.4 * moves[near].mean(axis=0)
    return out + moves


def near_weight(vertices: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """``[n]`` Gaussian weight of each vertex ``[n, 3]`` by its distance to ``centre`` ``[3]`` (metres)."""
    return np.exp(-np.sum((vertices - centre) ** 2, axis=1) / (2 * sigma**2))


def _side_sign(side: str) -> float:
    return 1.0 if side == "Left" else -1.0


def _above_eyes(v: np.ndarray, side: str) -> np.ndarray:
    """Weights 1 above the ``side`` eye's upper lid, 0 on and below it (brows must not move the eye)."""
    upper, _ = eye_lids(side)
    top = v[list(upper), 1].min()
    return np.clip((top - 0.002 - v[:, 1]) / 0.006, 0.0, 1.0)


def _smile(v: np.ndarray, w: float, side: str) -> np.ndarray:
    s = _side_sign(side)
    corner = v[291 if side == "Left" else 61]
    return (w * near_weight(v, corner, 0.016))[:, None] * np.array([0.006 * s, -0.009, 0.0035])


def _mouth_weight(v: np.ndarray, sx: float = 0.028, sy: float = 0.017) -> np.ndarray:
    centre = 0.5 * (v[13] + v[14])
    return np.exp(-0.5 * (((v[:, 0] - centre[0]) / sx) ** 2 + ((v[:, 1] - centre[1]) / sy) ** 2))


def _pucker(v: np.ndarray, w: float) -> np.ndarray:
    m = w * _mouth_weight(v)
    return np.stack([-0.4 * v[:, 0] * m, np.zeros(len(v)), -0.008 * m], axis=1)


def _funnel(v: np.ndarray, w: float) -> np.ndarray:
    m = w * _mouth_weight(v)
    lip_y = 0.5 * (v[13, 1] + v[14, 1])
    # The lips part in an O: upper half up, lower half down, strongest at the centre.
    # Weaker opening (5 mm) read as a pure pucker to MediaPipe; 8 mm gives mouthFunnel 0.3-0.5.
    opening = 0.008 * np.tanh((v[:, 1] - lip_y) / 0.002) * np.exp(-0.5 * (v[:, 0] / 0.016) ** 2)
    return np.stack([-0.2 * v[:, 0] * m, w * opening, -0.007 * m], axis=1)


def _mouth_shift(v: np.ndarray, w: float, side: str) -> np.ndarray:
    m = w * _mouth_weight(v, 0.03, 0.02)
    return m[:, None] * np.array([0.008 * _side_sign(side), 0.0, 0.0])


def _cheek_puff(v: np.ndarray, w: float) -> np.ndarray:
    out = np.zeros_like(v)
    for s in (-1.0, 1.0):
        g = w * near_weight(v, np.array([0.045 * s, 0.028, -0.035]), 0.02)
        out += g[:, None] * np.array([0.008 * s, 0.0, -0.004])
    return out


def _brow_inner_up(v: np.ndarray, w: float) -> np.ndarray:
    g = near_weight(v, v[107], 0.016) + near_weight(v, v[336], 0.016)
    g = np.minimum(g, 1.0) * np.minimum(_above_eyes(v, "Left"), _above_eyes(v, "Right"))
    return (w * g)[:, None] * np.array([0.0, -0.006, 0.0])


def _brow_down(v: np.ndarray, w: float, side: str) -> np.ndarray:
    centre = v[334 if side == "Left" else 105]
    g = w * near_weight(v, centre, 0.018) * _above_eyes(v, side)
    return g[:, None] * np.array([-0.002 * _side_sign(side), 0.005, -0.001])


def _brow_outer_up(v: np.ndarray, w: float, side: str) -> np.ndarray:
    centre = v[300 if side == "Left" else 70]
    g = w * near_weight(v, centre, 0.015) * _above_eyes(v, side)
    return g[:, None] * np.array([0.0, -0.005, 0.0])


def _eye_wide(v: np.ndarray, w: float, side: str) -> np.ndarray:
    upper, _ = eye_lids(side)
    out = np.zeros_like(v)
    profile = np.sin(np.linspace(0.0, np.pi, len(upper)))  # corners stay put
    out[list(upper), 1] = -0.0025 * w * profile
    _follow(out, upper, side, (0.6, 0.25))
    return out


def _follow(moves: np.ndarray, lid: tuple[int, ...], side: str, factors: tuple[float, ...]) -> None:
    """Rings of lid skin above ``lid`` follow the nearest lid vertex's move by ``factors``."""
    eye = LEFT_EYE if side == "Left" else RIGHT_EYE
    lid_ids = list(lid)
    for factor, ring in zip(factors, _rings(lid_ids, len(factors), exclude=eye)):
        for r in ring:
            if r in _lower_side(side):
                continue
            nearest = lid_ids[int(np.argmin(np.linalg.norm(_REST()[lid_ids] - _REST()[r], axis=1)))]
            moves[r] += factor * moves[nearest]


@lru_cache(maxsize=2)
def _lower_side(side: str) -> frozenset[int]:
    """Vertices around the lower lid, which must not follow the upper lid."""
    _, lower = eye_lids(side)
    eye = LEFT_EYE if side == "Left" else RIGHT_EYE
    rings = _rings(list(lower), 2, exclude=eye)
    rest = _REST()
    top = rest[list(lower), 1].mean()
    return frozenset(r for ring in rings for r in ring if rest[r, 1] > top - 0.001)


@lru_cache(maxsize=1)
def _REST() -> np.ndarray:  # noqa: N802 - a cached constant
    from avat3r_cli.io.mediapipe_assets import load_canonical_face

    return neutral_vertices(load_canonical_face().vertices)


def _blink(v: np.ndarray, w: float, side: str) -> np.ndarray:
    """Upper lid onto the lower-lid polyline; two rings of lid skin follow at 45 % and 15 %."""
    upper, lower = eye_lids(side)
    moves = np.zeros_like(v)
    # A hair past the lower lid (and in front of it) so no sliver of eye shows when shut.
    target = v[list(lower)] + np.array([0.0, 0.0003, -0.0003])
    moves[list(upper)] = w * (target - v[list(upper)])
    moves[[upper[0], upper[-1]]] = 0.0
    _follow(moves, upper, side, (0.45, 0.15))
    return moves


def _jaw_weight(v: np.ndarray) -> np.ndarray:
    """Per-vertex share of the jaw's motion: lower lip and below 1, upper lip 0, fading towards the ears."""
    lip_y = 0.5 * (v[13, 1] + v[14, 1])
    w = np.clip((v[:, 1] - lip_y) / 0.003, 0.0, 1.0)
    w[list(UPPER_INNER_LIP)] = 0.0
    w[list(LOWER_INNER_LIP[1:-1])] = 1.0
    w[[78, 308, 61, 291]] = 0.5
    return w * np.clip((0.078 - np.abs(v[:, 0])) / 0.02, 0.0, 1.0)


def _rotate_jaw(v: np.ndarray, w: float, sideways: float) -> np.ndarray:
    share = _jaw_weight(_REST())  # weights from the rest shape: deformations must not change them
    a = np.radians(JAW_MAX_DEG * w) * share
    rel = v - JAW_HINGE
    out = v.copy()
    # Positive angle swings the chin down (+y) and back (+z) about the x axis.
    out[:, 1] = JAW_HINGE[1] + np.cos(a) * rel[:, 1] - np.sin(a) * rel[:, 2]
    out[:, 2] = JAW_HINGE[2] + np.sin(a) * rel[:, 1] + np.cos(a) * rel[:, 2]
    out[:, 0] += 0.01 * sideways * share
    return out


Local = Callable[[np.ndarray, float], np.ndarray]
_LOCAL: dict[str, Local] = {
    "mouthSmileLeft": lambda v, w: _smile(v, w, "Left"),
    "mouthSmileRight": lambda v, w: _smile(v, w, "Right"),
    "mouthPucker": _pucker,
    "mouthFunnel": _funnel,
    "mouthLeft": lambda v, w: _mouth_shift(v, w, "Left"),
    "mouthRight": lambda v, w: _mouth_shift(v, w, "Right"),
    "cheekPuff": _cheek_puff,
    "eyeWideLeft": lambda v, w: _eye_wide(v, w, "Left"),
    "eyeWideRight": lambda v, w: _eye_wide(v, w, "Right"),
    "browInnerUp": _brow_inner_up,
    "browDownLeft": lambda v, w: _brow_down(v, w, "Left"),
    "browDownRight": lambda v, w: _brow_down(v, w, "Right"),
    "browOuterUpLeft": lambda v, w: _brow_outer_up(v, w, "Left"),
    "browOuterUpRight": lambda v, w: _brow_outer_up(v, w, "Right"),
}


def deform(vertices: np.ndarray, weights: dict[str, float] | None) -> np.ndarray:
    """``[468, 3]`` vertices with the ARKit-named ``weights`` (0..1, names from ``DEFORMERS``) applied.

    ``vertices`` should be ``neutral_vertices`` of the canonical mesh (closed lips); unknown names
    raise ``KeyError`` so that a typo is not a silent neutral face.
    """
    weights = {k: float(w) for k, w in (weights or {}).items() if w}
    unknown = set(weights) - set(DEFORMERS)
    if unknown:
        raise KeyError(f"unknown deformers {sorted(unknown)}; known: {', '.join(DEFORMERS)}")
    rest = vertices.astype(np.float64)
    out = rest.copy()
    for name, w in weights.items():
        if name in _LOCAL:
            out += _LOCAL[name](rest, w)
    for side in ("Left", "Right"):
        if weights.get(f"eyeBlink{side}"):
            out += _blink(out, weights[f"eyeBlink{side}"], side)
    sideways = weights.get("jawLeft", 0.0) - weights.get("jawRight", 0.0)
    if weights.get("jawOpen") or sideways:
        out = _rotate_jaw(out, weights.get("jawOpen", 0.0), sideways)
    return out


def weights_vector(weights: dict[str, float] | None) -> np.ndarray:
    """``[len(DEFORMERS)]`` float32 weights in ``DEFORMERS`` order."""
    weights = weights or {}
    return np.array([float(weights.get(name, 0.0)) for name in DEFORMERS], dtype=np.float32)
