"""Baking light into the colours of a synthetic head's samples.

Diffuse light is a key light with a soft terminator (light wraps a little past 90 degrees, as
it does through skin) plus an ambient term a little stronger from above than below. The
optional sheen is a Blinn-Phong highlight towards the camera, the one view-dependent term: it
is what makes skin and lenses look lit rather than painted.

Letters: N samples.
"""

from __future__ import annotations

import numpy as np

from avat3r_cli.data.synthetic.appearance import Lighting

WRAP = 0.25  # how far past the terminator the key still reaches (cos units)
SKY = 0.2  # ambient from above vs below: 1 + SKY facing up, 1 - SKY facing down
SHININESS = 24.0


def plain_lighting(direction) -> Lighting:
    """White key from ``direction`` [3] (normalised here) with a 0.42 ambient, no sheen (the helper views' light)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    return Lighting(tuple(float(x) for x in d), (0.58, 0.58, 0.58), (0.42, 0.42, 0.42), 6500.0, 0.0)


def shade(albedo: np.ndarray, normals: np.ndarray, lit: np.ndarray, sheen: np.ndarray, lighting: Lighting,
          eye: np.ndarray | None = None, means: np.ndarray | None = None, soft: bool = True) -> np.ndarray:
    """``[N, 3]`` lit colours in 0..1.

    Args:
        albedo: ``[N, 3]`` colours before light.
        normals: ``[N, 3]`` unit normals.
        lit: ``[N]`` 1 fully lit .. 0 self-lit (the mouth cavity keeps its albedo).
        sheen: ``[N]`` per-sample specular weight (times ``lighting.sheen``).
        lighting: the light.
        eye: ``[3]`` camera centre for the sheen; without it (or ``means [N, 3]``) no sheen.
        soft: the wrapped terminator and sky ambient; False gives plain Lambert (ambient + key * max(0, cos)).
    """
    key = np.asarray(lighting.key, dtype=np.float64)
    key = key / np.linalg.norm(key)
    cos = normals @ key
    if soft:
        diffuse = np.clip((cos + WRAP) / (1.0 + WRAP), 0.0, 1.0) ** 1.5
        up = np.clip(-normals[:, 1], -1.0, 1.0)  # y is down
        ambient = (1.0 + SKY * up)[:, None] * np.asarray(lighting.ambient)[None]
    else:
        diffuse = np.clip(cos, 0.0, 1.0)
        ambient = np.broadcast_to(np.asarray(lighting.ambient)[None], (len(cos), 3))
    light = ambient + diffuse[:, None] * np.asarray(lighting.key_colour)[None]
    light = 1.0 - lit[:, None] * (1.0 - light)
    colour = albedo * light
    if eye is not None and means is not None and lighting.sheen > 0:
        view = eye[None] - means
        view /= np.linalg.norm(view, axis=1, keepdims=True) + 1e-12
        half = view + key[None]
        half /= np.linalg.norm(half, axis=1, keepdims=True) + 1e-12
        spec = np.clip((normals * half).sum(axis=1), 0.0, 1.0) ** SHININESS * (cos > 0)
        colour = colour + (lighting.sheen * sheen * lit * spec)[:, None] * np.asarray(lighting.key_colour)[None]
    return np.clip(colour, 0.0, 1.0)
