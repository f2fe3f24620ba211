"""A whole synthetic head as 3D Gaussians in the head frame (metres; x to the subject's left, y down, z back).

The face is MediaPipe's canonical mesh, sampled at FIXED barycentric positions on its triangles so
every sample follows the deformers; the eye openings hold an eyeball behind the lids with a lid
curtain that slides down on a blink, and the mouth opening holds a dark cavity with teeth. A skull
ellipsoid with hair (style-dependent shell and, for long hair, a curtain at the back and sides),
a strip joining the mask edge to the skull, ears and a neck make it a head; shoulders in a shirt
and, for some identities, glasses complete the subject.

Letters: N Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.data.synthetic.deformers import (
    FACE_OVAL, LEFT_EYE, LIPS_INNER, RIGHT_EYE, deform, eye_lids, neutral_vertices, vertex_rings,
)
from avat3r_cli.data.synthetic.appearance import Lighting
from avat3r_cli.data.synthetic.body import ears, neck, skin_jitter, torso
from avat3r_cli.data.synthetic.face_shape import reshape_face
from avat3r_cli.data.synthetic.glasses import glasses_parts
from avat3r_cli.data.synthetic.hair import scalp_and_hair
from avat3r_cli.data.synthetic.identity import Identity
from avat3r_cli.data.synthetic.shading import plain_lighting, shade
from avat3r_cli.data.synthetic.texture import face_texture, sample_texture
from avat3r_cli.io.mediapipe_assets import CanonicalFace, load_canonical_face

# Skull ellipsoid (centre, semi-axes) in the head frame, metres: behind the face mask, its top
# about 14 cm above the eyes. Its lower half stands in for the jaw behind the mask's edge: a
# shorter skull (top 12 cm above the eyes, as on a real head) left the far jaw line weaker and
# MediaPipe under-read yaw at 40 degrees by ~3 degrees instead of ~1.
SKULL_CENTER = np.array([0.0, -0.04, 0.045])
SKULL_AXES = np.array([0.079, 0.13, 0.098])
N_FACE, N_EYE, N_LID, N_TUBE, N_BACK, N_STRIP = 26_000, 700, 400, 1500, 500, 3500
LID_OPACITY_FROM = 2e-4  # metres of lid travel before the curtain is drawn at all
# Near its edge the mask's normals turn towards the skull's, ring by ring from the outline in, so
# the light does not change abruptly where the face meets the forehead, temples and jaw.
EDGE_BLEND = (1.0, 0.6, 0.3)


@dataclass
class HeadSamples:
    """Surface samples of a head (head frame, metres).

    Attributes:
        means: ``[N, 3]`` centres.
        normals: ``[N, 3]`` unit outward normals (the discs' thin axis).
        tangents: ``[N, 3]`` unit tangents (the discs' first axis, e.g. along hair strands).
        albedo: ``[N, 3]`` colours in 0..1 before shading.
        scales: ``[N, 3]`` standard deviations along tangent, bitangent and normal.
        opacities: ``[N]`` in 0..1.
        lit: ``[N]`` how much the light shades a sample (0 for the self-lit mouth cavity).
        two_sided: ``[N]`` True for thin parts seen from both sides (ears, long hair), never culled.
        sheen: ``[N]`` specular weight (skin about 1, hair less, lenses more, cloth 0).
    """

    means: np.ndarray
    normals: np.ndarray
    tangents: np.ndarray
    albedo: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    lit: np.ndarray
    two_sided: np.ndarray
    sheen: np.ndarray

    def _gaussians(self, keep: np.ndarray, colours: np.ndarray) -> Gaussians:
        quats = quats_from_frames(self.tangents[keep], self.normals[keep])

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(np.ascontiguousarray(a), dtype=torch.float32)

        return Gaussians.from_colors(t(self.means[keep]), t(quats), t(self.scales[keep]), t(self.opacities[keep]), t(colours))

    def _shade(self, lighting: Lighting, keep: np.ndarray, eye: np.ndarray | None = None, soft: bool = True) -> np.ndarray:
        return shade(self.albedo[keep], self.normals[keep], self.lit[keep], self.sheen[keep], lighting,
                     eye, self.means[keep], soft=soft)

    @staticmethod
    def _centre(camera: Camera) -> np.ndarray:
        w2c = camera.world_to_cam.double().numpy()
        return -w2c[:3, :3].T @ w2c[:3, 3]

    def _facing(self, camera: Camera) -> np.ndarray:
        return ((self._centre(camera) - self.means) * self.normals).sum(axis=1) > -0.002

    def gaussians(self, lighting: Lighting | tuple[float, float, float] | np.ndarray,
                  camera: Camera | None = None) -> Gaussians:
        """All samples as Gaussians with ``lighting`` baked in (a bare unit direction: ``plain_lighting``).

        A light fixed to the head keeps the colours of every view consistent, as a multi-view
        capture of one instant is; only the sheen, a highlight, follows ``camera``. With
        ``camera``, samples of closed surfaces facing away from it are dropped: they are hidden
        behind the front ones, and rendering costs about half.
        """
        if not isinstance(lighting, Lighting):
            lighting = plain_lighting(lighting)
        keep = self.opacities > 0
        eye = None
        if camera is not None:
            keep &= self._facing(camera) | self.two_sided
            eye = self._centre(camera)
        return self._gaussians(keep, self._shade(lighting, keep, eye))

    def gaussians_for(self, camera: Camera) -> Gaussians:
        """Gaussians lit for ``camera`` (light above and left of it), back faces dropped."""
        w2c = camera.world_to_cam.double().numpy()
        light = w2c[:3, :3].T @ np.array([-0.3, -0.5, -1.0])
        keep = self._facing(camera) & (self.opacities > 0)
        return self._gaussians(keep, self._shade(plain_lighting(light), keep, soft=False))


def quats_from_frames(tangents: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """``[N, 4]`` wxyz rotations taking x onto ``tangents`` and z onto ``normals`` (both ``[N, 3]``)."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    t = tangents - (tangents * n).sum(axis=1, keepdims=True) * n
    bad = np.linalg.norm(t, axis=1) < 1e-6  # tangent along the normal: any perpendicular will do
    if bad.any():
        alt = np.where(np.abs(n[bad, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
        t[bad] = alt - (alt * n[bad]).sum(axis=1, keepdims=True) * n[bad]
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = np.cross(n, t)
    m = np.stack([t, b, n], axis=2)  # columns
    w = 0.5 * np.sqrt(np.maximum(0.0, 1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]))
    x = 0.5 * np.sqrt(np.maximum(0.0, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2]))
    y = 0.5 * np.sqrt(np.maximum(0.0, 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2]))
    z = 0.5 * np.sqrt(np.maximum(0.0, 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]))
    x = np.copysign(x, m[:, 2, 1] - m[:, 1, 2])
    y = np.copysign(y, m[:, 0, 2] - m[:, 2, 0])
    z = np.copysign(z, m[:, 1, 0] - m[:, 0, 1])
    q = np.stack([w, x, y, z], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def sample_triangles(verts: np.ndarray, tris: np.ndarray, n: int, rng: np.random.Generator):
    """Area-weighted samples: triangle ids ``[n]`` and barycentrics ``[n, 3]``."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    tri = rng.choice(len(tris), size=n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
    return tri, np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)


def vertex_normals(verts: np.ndarray, tris: np.ndarray, inside: np.ndarray = SKULL_CENTER) -> np.ndarray:
    """``[V, 3]`` unit vertex normals oriented away from the point ``inside``."""
    normals = np.zeros_like(verts)
    face_n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    for k in range(3):
        np.add.at(normals, tris[:, k], face_n)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    normals *= np.sign((normals * (verts - inside)).sum(axis=1, keepdims=True) + 1e-12)
    return normals


def _tangents_for(normals: np.ndarray) -> np.ndarray:
    up = np.where(np.abs(normals[:, 1:2]) < 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
    t = np.cross(up, normals)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def _polyline(points: np.ndarray, s: np.ndarray, closed: bool = False) -> np.ndarray:
    """Points at parameters ``s`` in 0..1 along a polyline ``[K, 3]`` (by vertex index)."""
    pts = np.concatenate([points, points[:1]]) if closed else points
    x = s * (len(pts) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(pts) - 2)
    f = (x - i)[:, None]
    return pts[i] * (1 - f) + pts[i + 1] * f


def _eye_colours(local: np.ndarray, identity: Identity, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` eyeball albedo at eye-local offsets ``[n, 2]`` (metres from the eye centre)."""
    r = np.linalg.norm(local - np.array([0.0, -0.0004]), axis=1)
    sclera = np.array([0.93, 0.90, 0.86]) - 0.12 * np.clip((np.abs(local[:, 0]) - 0.009) / 0.006, 0, 1)[:, None] * np.array([0.1, 0.4, 0.4])
    iris = np.array(identity.iris)[None] * (0.8 + 0.35 * rng.random((len(r), 1)))
    iris *= np.where(r > 0.0048, 0.6, 1.0)[:, None]  # darker limbal ring
    colour = np.where((r < 0.0056)[:, None], iris, sclera)
    colour = np.where((r < 0.0022)[:, None], np.array([[0.02, 0.02, 0.02]]), colour)
    spot = np.linalg.norm(local - np.array([-0.0016, -0.0019]), axis=1) < 0.0008  # catchlight
    return np.where(spot[:, None], np.array([[0.97, 0.97, 0.97]]), colour)


class HeadModel:
    """Everything about one identity's head that expressions do not change, computed once."""

    def __init__(self, identity: Identity, canonical: CanonicalFace | None = None) -> None:
        self.identity = identity
        canonical = canonical or load_canonical_face()
        rng = np.random.default_rng(identity.seed + 1)
        self.tris = canonical.triangles.astype(np.int64)
        neutral = neutral_vertices(canonical.vertices)
        self.edge_blend = np.zeros(len(neutral))
        for ids, w in zip([list(FACE_OVAL)] + vertex_rings(FACE_OVAL, len(EDGE_BLEND) - 1), EDGE_BLEND):
            self.edge_blend[ids] = w
        self.rest = reshape_face(neutral, identity.face_shape, self.edge_blend)
        self.skull_axes = SKULL_AXES * np.array(identity.skull)
        sets = {"Left": set(LEFT_EYE), "Right": set(RIGHT_EYE), "mouth": set(LIPS_INNER)}
        in_set = {k: np.array([set(t) <= s for t in self.tris.tolist()]) for k, s in sets.items()}
        surface = ~(in_set["Left"] | in_set["Right"] | in_set["mouth"])
        orig = canonical.vertices.astype(np.float64)  # areas with the lips parted: the mouth has area
        tex = face_texture(identity, canonical)

        face_tris = np.flatnonzero(surface)
        tri, self.face_bary = sample_triangles(orig, self.tris[face_tris], N_FACE, rng)
        self.face_corners = self.tris[face_tris[tri]]
        uv = np.einsum("nk,nkd->nd", self.face_bary, canonical.uvs[self.face_corners].astype(np.float64))
        self.face_albedo = sample_texture(tex, uv)

        mouth_tris = np.flatnonzero(in_set["mouth"])
        tri, self.back_bary = sample_triangles(orig, self.tris[mouth_tris], N_BACK, rng)
        self.back_corners = self.tris[mouth_tris[tri]]
        self.tube_s, self.tube_t = rng.random(N_TUBE), rng.random(N_TUBE) ** 0.8

        # Eyeballs: the eye openings' rest triangles enlarged about the eye centre and pushed
        # back, so lids in front hide their edges and a lowered lid covers them.
        parts = []
        for side in ("Left", "Right"):
            eye_tris = self.tris[np.flatnonzero(in_set[side])]
            tri, bary = sample_triangles(orig, eye_tris, N_EYE, rng)
            pts = np.einsum("nk,nkd->nd", bary, self.rest[eye_tris[tri]])
            centre = self.rest[list(LEFT_EYE if side == "Left" else RIGHT_EYE)].mean(axis=0)
            pts = centre + 1.3 * (pts - centre) + np.array([0.0, 0.0, 0.0015])
            normal = np.tile([0.0, 0.0, -1.0], (N_EYE, 1))
            parts.append((pts, normal, _eye_colours(pts[:, :2] - centre[:2], identity, rng), 0.0008, 0.5,
                          0.95, None, False, 1.5))
        parts.extend(scalp_and_hair(identity, self.rest, SKULL_CENTER, self.skull_axes, rng))
        parts += [ears(identity, SKULL_CENTER, self.skull_axes, rng), neck(identity, rng), torso(identity, rng)]
        if identity.glasses is not None:
            parts.extend(glasses_parts(identity.glasses, self.rest, SKULL_CENTER, self.skull_axes, rng))
        self.static = _pack(parts)
        self.strip_albedo = skin_jitter(identity, N_STRIP, rng) * 0.97
        self.lid_s, self.lid_u = rng.random(N_LID), rng.random(N_LID)
        self.strip = (rng.integers(0, len(FACE_OVAL), N_STRIP), rng.random(N_STRIP), rng.random(N_STRIP))

    def samples(self, weights: dict[str, float] | None = None) -> HeadSamples:
        """The head at expression ``weights`` (ARKit names, 0..1), scaled to the identity."""
        v = deform(self.rest, weights)
        skin = np.array(self.identity.skin)
        vn = vertex_normals(v, self.tris)
        skull_n = (v - SKULL_CENTER) / self.skull_axes**2
        skull_n /= np.linalg.norm(skull_n, axis=1, keepdims=True)
        vn = vn * (1.0 - self.edge_blend[:, None]) + skull_n * self.edge_blend[:, None]
        vn /= np.linalg.norm(vn, axis=1, keepdims=True) + 1e-12
        face = np.einsum("nk,nkd->nd", self.face_bary, v[self.face_corners])
        face_n = np.einsum("nk,nkd->nd", self.face_bary, vn[self.face_corners])
        parts = [(face, face_n, self.face_albedo, 0.0012, 1.0, 0.95, None, False, 1.0)]
        parts.append(self._strip(v))
        parts.extend(self._lids(v, skin))
        parts.extend(self._mouth(v))
        head = _pack(parts + [self.static])
        scale = np.array(self.identity.scale)
        head.means = head.means * scale
        head.scales = head.scales * scale.mean()  # keep the samples' coverage on a bigger head
        # Normals transform by the inverse transpose; tangents by the map itself.
        head.normals = head.normals / scale
        head.normals /= np.linalg.norm(head.normals, axis=1, keepdims=True)
        head.tangents = head.tangents * scale
        head.tangents /= np.linalg.norm(head.tangents, axis=1, keepdims=True)
        return head

    def _strip(self, v: np.ndarray):
        """From each mask-edge vertex straight back (+z) onto the skull's front surface."""
        ring = v[list(FACE_OVAL)]
        rel = (ring[:, :2] - SKULL_CENTER[:2]) / self.skull_axes[:2]
        inside = np.clip(1.0 - (rel**2).sum(axis=1), 0.0, 1.0)
        back = ring.copy()
        back[:, 2] = np.maximum(ring[:, 2], SKULL_CENTER[2] - self.skull_axes[2] * np.sqrt(inside)) + 0.004
        seg, s, t = self.strip
        nxt = (seg + 1) % len(ring)
        front = ring[seg] * (1 - s)[:, None] + ring[nxt] * s[:, None]
        rear = back[seg] * (1 - s)[:, None] + back[nxt] * s[:, None]
        pts = front * (1 - t)[:, None] + rear * t[:, None]
        normals = (pts - SKULL_CENTER) / self.skull_axes**2  # the skull's normal field: no shading seam
        return pts, normals, self.strip_albedo, 0.0032, 1.0, 0.95, None, False, 1.0

    def _lids(self, v: np.ndarray, skin: np.ndarray):
        """Lid skin between the rest and current upper lid, lash-dark at its moving edge."""
        out = []
        for side in ("Left", "Right"):
            upper, _ = eye_lids(side)
            rest, now = self.rest[list(upper)], v[list(upper)]
            a, b = _polyline(rest, self.lid_s), _polyline(now, self.lid_s)
            pts = a + (b - a) * self.lid_u[:, None] + np.array([0.0, 0.0, -0.0004])
            colour = np.where((self.lid_u > 0.9)[:, None], np.minimum(np.array(self.identity.brow) * 0.5, 0.06), skin * 0.9)
            travel = np.linalg.norm(now - rest, axis=1).max()
            opacity = 0.95 if travel > LID_OPACITY_FROM else 0.0
            normals = np.tile([0.0, -0.3, -1.0], (len(pts), 1))
            out.append((pts, normals, colour, 0.0008, 1.0, opacity))
        return out

    def _mouth(self, v: np.ndarray):
        """A tube from the inner-lip loop back into the head, teeth near its front, and a back wall."""
        loop = v[list(LIPS_INNER)]
        centre = loop.mean(axis=0)
        depth = np.array([0.0, 0.0, 0.012])
        lip = _polyline(loop, self.tube_s, closed=True)
        t = self.tube_t[:, None]
        tube = lip + t * (0.5 * (centre - lip) + depth)
        upper = self.tube_s < 0.5  # LIPS_INNER runs corner 78 -> upper lip -> corner 308 -> lower lip
        mid = np.abs(lip[:, 0] - centre[0]) < 0.75 * np.abs(loop[:, 0] - centre[0]).max()
        teeth = mid & (((self.tube_t > 0.05) & (self.tube_t < 0.3) & upper) | ((self.tube_t > 0.05) & (self.tube_t < 0.2) & ~upper))
        dark = np.array([0.30, 0.08, 0.08]) * (1.0 - 0.6 * t)
        colour = np.where(teeth[:, None], np.array([[0.88, 0.86, 0.80]]), dark)
        back = np.einsum("nk,nkd->nd", self.back_bary, v[self.back_corners])
        back = centre + 0.5 * (back - centre) + depth
        tongue = np.where((back[:, 1] > centre[1])[:, None], np.array([[0.45, 0.2, 0.2]]), np.array([[0.12, 0.03, 0.03]]))
        normals = np.tile([0.0, 0.0, -1.0], (N_TUBE, 1))
        return [(tube, normals, colour, 0.0012, 0.0), (back, normals[:N_BACK], tongue, 0.0012, 0.0)]


FIELDS = ("means", "normals", "tangents", "albedo", "scales", "opacities", "lit", "two_sided", "sheen")


def _pack(parts) -> HeadSamples:
    """Concatenate parts ``(means, normals, albedo, size or [n] or [n, 3] scales, lit[, opacity[, tangents[, two_sided[, sheen]]]])``.

    A tangent of None is any perpendicular of the normal; sheen defaults to 0 (matte).
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    for part in parts:
        if isinstance(part, HeadSamples):
            for k in cols:
                cols[k].append(getattr(part, k))
            continue
        means, normals, albedo, size, lit = part[:5]
        opacity = part[5] if len(part) > 5 else 0.95
        n = len(means)
        normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
        tangents = part[6] if len(part) > 6 and part[6] is not None else _tangents_for(normals)
        scales = np.asarray(size, dtype=np.float64)
        if scales.ndim < 2:
            scales = np.stack([np.broadcast_to(scales, (n,))] * 2 + [np.broadcast_to(scales, (n,)) * 0.05], axis=1)
        cols["means"].append(means)
        cols["normals"].append(normals)
        cols["tangents"].append(tangents)
        cols["albedo"].append(np.broadcast_to(albedo, (n, 3)))
        cols["scales"].append(scales)
        cols["opacities"].append(np.broadcast_to(np.asarray(opacity, dtype=np.float64), (n,)))
        cols["lit"].append(np.broadcast_to(np.asarray(lit, dtype=np.float64), (n,)))
        cols["two_sided"].append(np.full(n, bool(part[7]) if len(part) > 7 else False))
        cols["sheen"].append(np.broadcast_to(np.asarray(part[8] if len(part) > 8 else 0.0, dtype=np.float64), (n,)))
    return HeadSamples(**{k: np.concatenate(v).astype(bool if k == "two_sided" else np.float64) for k, v in cols.items()})


@lru_cache(maxsize=4)
def head_model(identity: Identity) -> HeadModel:
    """The cached ``HeadModel`` of ``identity`` (the texture alone takes a few tenths of a second)."""
    return HeadModel(identity)


def build_head(identity: Identity, weights: dict[str, float] | None = None) -> Gaussians:
    """The head of ``identity`` at expression ``weights`` as Gaussians in the head frame, lit by ``identity.lighting``."""
    return head_model(identity).samples(weights).gaussians(identity.lighting)
