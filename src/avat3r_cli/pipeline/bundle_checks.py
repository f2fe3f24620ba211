"""What makes a bundle's contents usable, checked when one is read (``bundle.load_bundle``).

A bundle is read from a file a user may have edited, truncated or forged, so every value the
animation path relies on is checked here once, and each problem comes back as one sentence for
the caller to pin on the file. Letters: V views, H/W crop pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import Field
from typing import Any

import torch

# float32 cameras written by ``create`` are rigid to ~1e-6; this allows rounding, not a shear.
RIGID_TOL = 1e-3
# Confidences are 0..1 on every geometry backend's scale; float32 rounding may overshoot a little.
CONFIDENCE_TOL = 1e-4


def _type_problem(name: str, kind: str, value: Any) -> str | None:
    """Why ``value`` is not of the annotated ``kind`` (``str``, ``int``, ``float``, ``list[str]``,
    ``list[list[float]]``)."""
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif kind == "list[list[float]]":  # a 4x4 matrix as rows
        ok = isinstance(value, list) and len(value) == 4 and all(
            isinstance(row, list) and len(row) == 4 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in row)
            for row in value)
    else:  # a field added to BundleMetadata with a new type must be taught here
        raise TypeError(f"BundleMetadata.{name} has an annotation the checks do not know: {kind}")
    if ok:
        return None
    expected = {"str": "text", "int": "a whole number", "float": "a finite number", "list[str]": "a list of names",
                "list[list[float]]": "4 rows of 4 finite numbers"}[kind]
    return f"bundle metadata {name} is {str(value)[:40]!r} ({type(value).__name__}), expected {expected}"


def metadata_problem(data: Mapping[str, Any], fields: Mapping[str, Field[Any]]) -> str | None:
    """The first problem of the metadata JSON object ``data`` for the dataclass ``fields``, or None.

    Checks that every field without a default is present, that each value has its annotated
    type, and the ranges the tool relies on (resolution >= 1, threshold in 0..1).
    """
    for name, spec in fields.items():
        if name not in data:
            if spec.default is spec.default_factory:  # both MISSING: a required field
                return f"bundle metadata is incomplete (no {name})"
            continue
        problem = _type_problem(name, str(spec.type), data[name])
        if problem:
            return problem
    if "resolution" in data and data["resolution"] < 1:
        return f"bundle metadata resolution is {data['resolution']}, expected at least 1"
    threshold = data.get("confidence_threshold", 0.0)
    if not 0.0 <= threshold <= 1.0:
        return f"bundle metadata confidence_threshold is {threshold}, expected 0..1"
    return None


def camera_problem(K: torch.Tensor, world_to_cam: torch.Tensor) -> str | None:
    """Why the cameras ``K [V, 3, 3]`` and ``world_to_cam [V, 4, 4]`` are unusable, or None.

    K must be a pinhole intrinsic matrix (positive focal lengths, last row 0 0 1); world_to_cam
    a rigid transform (orthonormal rotation with determinant +1, last row 0 0 0 1).
    """
    k = K.double()
    for v in range(k.shape[0]):
        if not (k[v, 0, 0] > 0 and k[v, 1, 1] > 0) or (k[v, 2] - k.new_tensor([0, 0, 1])).abs().max() > RIGID_TOL:
            return f"bundle camera {v} has an unusable K (focal lengths must be > 0, last row 0 0 1)"
    m = world_to_cam.double()
    rot = m[:, :3, :3]
    eye = torch.eye(3, dtype=m.dtype)
    for v in range(m.shape[0]):
        bottom = (m[v, 3] - m.new_tensor([0, 0, 0, 1])).abs().max()
        ortho = (rot[v].T @ rot[v] - eye).abs().max()
        if bottom > RIGID_TOL or ortho > RIGID_TOL or torch.linalg.det(rot[v]) <= 0:
            return f"bundle camera {v} has an unusable world_to_cam (not a rotation + translation, last row 0 0 0 1)"
    return None


def confidence_problem(confidence: torch.Tensor, threshold: float) -> str | None:
    """Why the confidences ``[V, 1, H, W]`` are unusable at ``threshold``, or None.

    Values must lie in 0..1, and at least one pixel must reach the threshold: each such pixel is
    one Gaussian, so none would be an empty avatar.
    """
    if confidence.numel() == 0:
        return "bundle confidences are empty, so the avatar would have no Gaussians"
    lo, hi = float(confidence.min()), float(confidence.max())
    if lo < -CONFIDENCE_TOL or hi > 1.0 + CONFIDENCE_TOL:
        return f"bundle confidences span {lo:.3g}..{hi:.3g}, expected 0..1"
    if gaussian_count(confidence, threshold) == 0:
        return (
            f"no pixel reaches the confidence threshold {threshold:g} (highest {hi:.3g}), "
            "so the avatar would have no Gaussians"
        )
    return None


def gaussian_count(confidence: torch.Tensor, threshold: float) -> int:
    """N: the number of pixels of ``confidence [V, 1, H, W]`` at or above ``threshold``."""
    return int((confidence >= threshold).sum())
