"""Anchor points for the model's anchor Gaussians: Q points spread evenly over the template head.

The ``template`` backend's head is the canonical face mesh plus a proxy of ellipsoids (skull and
hair, ears, neck; ``template_geometry.py``), all in the head frame (metres, y down, the face
towards -z). The model's anchor queries (``model/anchor_gaussians.py``) sit on this closed
surface, so they reach the back of the head, the crown and the neck, which no photo may see.

The surface is sampled densely (the face mesh, each proxy ellipsoid with the parts of it that lie
inside another ellipsoid or in front of the face removed), then thinned by farthest-point
sampling: every new point is the sample farthest from those already chosen, so the Q points are
about equally far apart whatever the sampling density of each part. Everything is deterministic.

Letters: Q anchors, N surface samples.
"""

from __future__ import annotations

import functools

import numpy as np

from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.preprocess.template_geometry import (
    EARS,
    NECK,
    NECK_TOP_Y,
    SKULL,
    ProxyPart,
    behind_face,
    face_surface,
    proxy_part_points,
)

# Dense enough that the samples sit ~2-3 mm apart on every part, well under the spacing of
# MAX_ANCHORS points (~6 mm).
_SAMPLES = {"skull": 24000, "ear": 600, "neck": 8000}
MAX_ANCHORS = 4096
_CHUNK = 2048  # behind_face compares every point with every face vertex: bound its memory


def _inside(points: np.ndarray, part: ProxyPart, margin: float = 1e-3) -> np.ndarray:
    """``[N]`` True where a point lies inside ``part`` (by more than ``margin`` metres, roughly)."""
    radii = np.asarray(part.radii)
    scaled = (points - np.asarray(part.center)) / (radii - margin)
    return (scaled**2).sum(axis=1) < 1.0


def _behind_face(points: np.ndarray, face: np.ndarray) -> np.ndarray:
    return np.concatenate([behind_face(points[i : i + _CHUNK], face) for i in range(0, len(points), _CHUNK)])


@functools.lru_cache(maxsize=1)
def head_surface_samples() -> np.ndarray:
    """``[N, 3]`` points on the closed template head: canonical face, skull, ears, neck (head frame).

    Cached and read-only.
    """
    canonical = load_canonical_face()
    face = canonical.vertices.astype(np.float64)
    skull = proxy_part_points(SKULL, _SAMPLES["skull"])[0]
    skull = skull[_behind_face(skull, face) & ~_inside(skull, NECK) & ~np.any([_inside(skull, e) for e in EARS], 0)]
    ears = [proxy_part_points(e, _SAMPLES["ear"])[0] for e in EARS]
    ears = [p[~_inside(p, SKULL)] for p in ears]
    neck = proxy_part_points(NECK, _SAMPLES["neck"])[0]
    neck = neck[(neck[:, 1] > NECK_TOP_Y) & _behind_face(neck, face) & ~_inside(neck, SKULL)]
    mesh = face_surface(face, canonical.triangles)[0]
    samples = np.concatenate([mesh, skull, *ears, neck])
    samples.flags.writeable = False
    return samples


def farthest_point_sampling(points: np.ndarray, count: int) -> np.ndarray:
    """Indices ``[count]`` of ``points [N, 3]``: each the point farthest from those before it.

    Starts from the point farthest from the centroid, so the result depends on the points only.
    """
    columns = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)  # [3, N]
    start = ((columns - columns.mean(axis=1, keepdims=True)) ** 2).sum(axis=0).argmax()
    nearest = np.full(columns.shape[1], np.inf)  # squared distance to the chosen set
    step, part = np.empty_like(nearest), np.empty_like(nearest)
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = start
    for i in range(count):
        if i:
            chosen[i] = nearest.argmax()
        # One coordinate at a time, in place: about 30x faster than ((points - p) ** 2).sum(1).
        step.fill(0.0)
        for axis in columns:
            np.subtract(axis, axis[chosen[i]], out=part)
            np.multiply(part, part, out=part)
            step += part
        np.minimum(nearest, step, out=nearest)
    return chosen


@functools.lru_cache(maxsize=8)
def anchor_points(count: int) -> np.ndarray:
    """``[Q, 3]`` float32 points spread evenly over the closed template head (head frame, metres).

    Raises:
        ValueError: ``count`` is not in 1..MAX_ANCHORS.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ANCHORS:
        raise ValueError(f"the template head holds 1..{MAX_ANCHORS} anchor points, got {count!r}")
    samples = head_surface_samples()
    points = samples[farthest_point_sampling(samples, count)].astype(np.float32)
    points.flags.writeable = False  # cached: callers get the same array
    return points
