"""Scalp and hair of a synthetic head, which expressions never move.

The skull is covered with hair above a hairline that runs round the head: high on the forehead,
down the temples to short sideburns, over the ears and down behind them to the nape. Short and
long styles add a shell of strand-shaped Gaussians over it (long hair also a curtain at the back
and sides) and a few loose wisps at the silhouette. Strands are textured along their length:
each strand has its own brightness and clumps of strands share theirs, so hair reads as strands
rather than paint, from every side.

Each part is a tuple ``(means [n, 3], normals [n, 3], albedo [n, 3], scales, lit, opacity, tangents [n, 3][, two_sided[, sheen]])``
in the head frame (metres; x to the subject's left, y down, z from the face towards the back),
as ``head._pack`` concatenates them.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.path import Path as PolygonPath

from avat3r_cli.data.synthetic.body import skin_jitter
from avat3r_cli.data.synthetic.deformers import FACE_OVAL
from avat3r_cli.data.synthetic.identity import Identity

N_SKULL, N_LONG, N_WISP = 14_000, 7_000, 900
HAIR_SHEEN = 0.6
# Hairline height (head-frame y; more negative is higher) by azimuth round the skull's vertical
# axis (0 = forehead, 90 = over the ear, 180 = the nape), offsets from the identity's values.
_AZIMUTH = np.array([0.0, 35.0, 60.0, 76.0, 84.0, 90.0, 118.0, 132.0, 180.0])


def ellipsoid_points(rng: np.random.Generator, n: int, centre: np.ndarray, axes: np.ndarray):
    """``[n, 3]`` points on an ellipsoid (roughly uniform by area) and their unit normals."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    normals = d / axes
    return centre + d * axes, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def hairline(identity: Identity, azimuth_deg: np.ndarray) -> np.ndarray:
    """``[n]`` head-frame y of the hairline at ``azimuth_deg`` ``[n]`` (hair is above, at smaller y)."""
    front, nape = identity.hairline, identity.nape
    heights = np.array([front, front + 0.004, -0.06, -0.03, 0.0, -0.042, -0.042, 0.015, nape])
    return np.interp(np.abs(azimuth_deg), _AZIMUTH, heights)


def _strand_scales(n: int, along: float, across: float) -> np.ndarray:
    return np.stack([np.full(n, along), np.full(n, across), np.full(n, across * 0.15)], axis=1)


class StrandTexture:
    """Brightness of hair by position across and along strands, fixed per identity.

    ``across`` is an angle round the head (strands that share it are neighbours), ``along`` a
    length in metres down the strand. Fine cells are single strands, coarse ones clumps.
    """

    FINE, CLUMPS, ALONG_CELL = 720, 60, 0.02

    def __init__(self, identity: Identity, rng: np.random.Generator) -> None:
        self.hair = np.array(identity.hair)
        self.streaks = identity.hair_streaks
        self.fine = rng.standard_normal(self.FINE)
        self.clumps = rng.standard_normal(self.CLUMPS)
        self.along = rng.standard_normal(64)

    @staticmethod
    def _cells(table: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Value noise: ``table`` interpolated periodically at ``x`` in cells."""
        i = np.floor(x).astype(int)
        f = x - i
        return table[i % len(table)] * (1 - f) + table[(i + 1) % len(table)] * f

    def strand_noise(self, across: np.ndarray) -> np.ndarray:
        """``[n]`` zero-mean, unit-scale noise that differs from strand to strand at ``across`` (radians)."""
        return self._cells(self.fine, (across % (2 * math.pi)) / (2 * math.pi) * self.FINE)

    def albedo(self, across: np.ndarray, along: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[n, 3]`` hair albedo at ``across`` (radians) and ``along`` (metres), ``[n]`` each."""
        turn = (across % (2 * math.pi)) / (2 * math.pi)
        light = (0.22 * self._cells(self.fine, turn * self.FINE) + 0.1 * self._cells(self.clumps, turn * self.CLUMPS))
        light = light * self.streaks + 0.07 * self._cells(self.along, along / self.ALONG_CELL)
        light = light + 0.06 * rng.standard_normal(len(turn))  # strand-to-strand noise beyond the cells
        return np.clip(self.hair[None] * np.exp(light)[:, None], 0.0, 1.0)


def scalp_and_hair(identity: Identity, rest: np.ndarray, centre: np.ndarray, axes: np.ndarray,
                   rng: np.random.Generator) -> list[tuple]:
    """Skull (skin and hair-covered), hair shell, long-hair curtain and wisps by style.

    ``rest`` is the ``[468, 3]`` neutral face, whose outline decides which skull points are hidden
    behind the face; ``centre`` and ``axes`` ``[3]`` are the skull ellipsoid.
    """
    pts, normals = ellipsoid_points(rng, N_SKULL, centre, axes)
    oval = PolygonPath(rest[list(FACE_OVAL), :2])
    hidden = oval.contains_points(pts[:, :2]) & (pts[:, 2] < centre[2])
    pts, normals = pts[~hidden], normals[~hidden]
    azimuth = np.degrees(np.arctan2(pts[:, 0], centre[2] - pts[:, 2]))
    depth_in_hair = hairline(identity, azimuth) - pts[:, 1]
    hairy = depth_in_hair > 0
    crown = centre + np.array([0.0, -axes[1], 0.3 * axes[2]])
    strand_dir = pts - crown  # strands fall away from the crown
    across = np.arctan2(strand_dir[:, 0], strand_dir[:, 2])
    along = np.linalg.norm(strand_dir, axis=1)
    strands = StrandTexture(identity, rng)
    hair = strands.albedo(across, along, rng)
    skin = skin_jitter(identity, len(pts), rng) * 0.95

    parts: list[tuple] = []
    if identity.hair_style == "buzz":
        colour = np.where(hairy[:, None], 0.55 * hair + 0.45 * skin * 0.8, skin)
    else:
        colour = np.where(hairy[:, None], 0.7 * hair, skin)  # under the shell: in its shadow
    parts.append((pts, normals, colour, 0.0034, 1.0, 0.95, strand_dir, False, np.where(hairy, 0.2, 0.5)))

    if identity.hair_style != "buzz":
        h_pts, h_n, h_dir = pts[hairy], normals[hairy], strand_dir[hairy]
        # Full thickness a couple of centimetres into the hair, thinner at the hairline and nape.
        thick = identity.hair_volume * np.clip(depth_in_hair[hairy] / 0.02, 0.15, 1.0)
        thick *= np.clip((0.07 - h_pts[:, 1]) / 0.07, 0.3, 1.0)
        shell = h_pts + h_n * thick[:, None]
        parts.append((shell, h_n, hair[hairy], _strand_scales(len(shell), 0.0075, 0.0017), 1.0, 0.95, h_dir,
                      False, HAIR_SHEEN))
        parts.append(_wisps(shell, h_n, h_dir, hair[hairy], rng))
    if identity.hair_style == "long":
        parts.append(_long_hair(identity, centre, axes, strands, rng))
    return parts


def _wisps(shell: np.ndarray, normals: np.ndarray, dirs: np.ndarray, colours: np.ndarray,
           rng: np.random.Generator) -> tuple:
    """Loose, faint strands standing a few millimetres off the hair: a soft silhouette, as on photos."""
    pick = rng.choice(len(shell), size=min(N_WISP, len(shell)), replace=False)
    n = len(pick)
    lift = rng.uniform(0.001, 0.005, n)
    pts = shell[pick] + normals[pick] * lift[:, None]
    tangents = dirs[pick] + rng.normal(0.0, 0.6, (n, 3)) * np.linalg.norm(dirs[pick], axis=1, keepdims=True)
    scales = np.stack([np.full(n, 0.007), np.full(n, 0.0006), np.full(n, 0.0001)], axis=1)
    return (pts, normals[pick], colours[pick] * 1.1, scales, 1.0, 0.35, tangents, True, HAIR_SHEEN)


def _long_hair(identity: Identity, centre: np.ndarray, axes: np.ndarray, strands: StrandTexture,
               rng: np.random.Generator) -> tuple:
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
    # Ragged ends: each strand stops a little above or below the nominal length.
    end = identity.hair_length - 0.015 * (1 + strands.strand_noise(theta))
    keep = y < end
    albedo = strands.albedo(theta, y - top, rng)  # across matches the shell's at the back
    return (pts[keep], normals[keep], albedo[keep], _strand_scales(int(keep.sum()), 0.01, 0.0022), 1.0, 0.95,
            tangents[keep], True, HAIR_SHEEN)
