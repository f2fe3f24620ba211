"""The cameras of a synthetic subject: the views a user shoots and the views a turntable shows.

Camera 0 looks straight at the face. Of the others, about half are *input* views, where a user
holds a phone (yaw within +-90 degrees, pitch within +-30), and the rest go all round the head:
behind it, above it (the crown) and below it (under the chin or the nape, not from the side, where a
shoulder is in the way). Each camera records
whether it is a plausible input view; the sampler draws model inputs among those only and
targets among all (docs/dataset.md).

Angles follow the head-pose convention: positive yaw (nose towards image right) puts the camera
on the subject's right (-x), positive pitch (head tilted down) puts it above the head (-y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from avat3r_cli.core.camera import Camera, look_at
from avat3r_cli.preprocess.crop import HEAD_CENTER, HEAD_RADIUS

INPUT_MAX_YAW = 90.0
INPUT_MAX_PITCH = 30.0
PITCH_RANGE = (-45.0, 60.0)
DISTANCE_RANGE = (0.5, 0.9)
FILL_RANGE = (0.9, 1.0)  # share of the image side the head sphere spans (focal-length variation)
ROLL_SD = 3.0  # degrees; a phone is rarely held perfectly level
ROLL_MAX = 8.0
# The all-round cameras cycle through these zones, which with the input box cover the sphere of
# directions between PITCH_RANGE: behind (|yaw| > 90, |pitch| <= 30), above, below.
_ZONES = ("behind", "above", "below")
# Views from below at the side look at the shoulder, not the head: below-views keep |yaw| out of this range.
BELOW_SIDE = (50.0, 130.0)


def is_input_view(yaw_deg: float, pitch_deg: float) -> bool:
    """Whether a view at (yaw, pitch) is one a user would shoot: |yaw| <= 90 and |pitch| <= 30."""
    return abs(yaw_deg) <= INPUT_MAX_YAW + 1e-9 and abs(pitch_deg) <= INPUT_MAX_PITCH + 1e-9


@dataclass(frozen=True)
class SynthCamera:
    """One camera of a synthetic subject and how it was drawn.

    Attributes:
        camera: the camera (square image).
        yaw_deg, pitch_deg, roll_deg: its direction and roll about the optical axis.
        distance: metres from the head sphere's centre.
        fill: share of the image side the head sphere spans.
        input_view: whether a user could have shot it (``is_input_view``).
    """

    camera: Camera
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    distance: float
    fill: float
    input_view: bool

    def to_dict(self) -> dict:
        """JSON-ready angles and framing (the camera itself goes to cameras.json)."""
        return {"yaw_deg": round(self.yaw_deg, 3), "pitch_deg": round(self.pitch_deg, 3),
                "roll_deg": round(self.roll_deg, 3), "distance": round(self.distance, 4),
                "fill": round(self.fill, 4), "input": self.input_view}


def head_camera(yaw_deg: float, pitch_deg: float, distance: float, resolution: int, roll_deg: float = 0.0,
                fill: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> Camera:
    """A square camera at ``distance`` from the head sphere's centre, looking at it.

    The sphere's image spans ``fill`` of the image side, its centre moved by ``shift`` (x, y) in
    image sides from the image centre; with the defaults it just fills the image.
    """
    if distance <= HEAD_RADIUS:
        raise ValueError(f"camera distance {distance} m is inside the head sphere ({HEAD_RADIUS} m)")
    if not 0.0 < fill <= 4.0:
        raise ValueError(f"fill must be in (0, 4], got {fill}")
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    target = torch.tensor(HEAD_CENTER, dtype=torch.float32)
    direction = [-math.sin(yaw) * math.cos(pitch), -math.sin(pitch), -math.cos(yaw) * math.cos(pitch)]
    eye = target + distance * torch.tensor(direction)
    w2c = look_at(eye, target, torch.tensor([0.0, -1.0, 0.0]))
    r = math.radians(roll_deg)
    rz = torch.eye(4)
    rz[:2, :2] = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    # The sphere's image has half-size f r / sqrt(d^2 - r^2) (tangent cone): make it fill * R / 2.
    focal = fill * 0.5 * resolution * math.sqrt(distance**2 - HEAD_RADIUS**2) / HEAD_RADIUS
    c = 0.5 * resolution
    K = torch.tensor([[focal, 0.0, c + shift[0] * resolution], [0.0, focal, c + shift[1] * resolution],
                      [0.0, 0.0, 1.0]], dtype=torch.float32)
    return Camera(K, rz @ w2c, resolution, resolution)


def _strata(rng: np.random.Generator, n: int, lo: float, hi: float, shuffle: bool = False) -> np.ndarray:
    """``[n]`` values, one uniformly inside each of n equal strata of lo..hi (in shuffled order)."""
    order = rng.permutation(n) if shuffle else np.arange(n)
    return lo + (hi - lo) * (order + rng.random(n)) / max(n, 1)


def _off_the_shoulders(a: float) -> float:
    """``a`` in 0..180 moved out of ``BELOW_SIDE``: its lower half onto 0..lo, its upper half onto hi..180."""
    lo, hi = BELOW_SIDE
    if not lo < a < hi:
        return a
    mid = 0.5 * (lo + hi)
    return lo * (a - lo) / (mid - lo) if a < mid else hi + (180.0 - hi) * (a - mid) / (hi - mid)


def _all_round(rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    """``count`` (yaw, pitch) outside the input box: behind, above and below in turn, shuffled."""
    zones = [_ZONES[i % len(_ZONES)] for i in range(count)]
    zones = [zones[i] for i in rng.permutation(count)]
    yaws = _strata(rng, count, -180.0, 180.0)  # stratified round the head, whatever the zone
    out = []
    for zone, yaw in zip(zones, yaws):
        if zone == "behind":
            if abs(yaw) <= INPUT_MAX_YAW:  # mirror a frontal yaw into the back half, keeping its side
                yaw = math.copysign(180.0 - abs(yaw), yaw)
            pitch = float(rng.uniform(-INPUT_MAX_PITCH, INPUT_MAX_PITCH))
        elif zone == "above":
            pitch = float(rng.uniform(INPUT_MAX_PITCH + 1.0, PITCH_RANGE[1]))
        else:
            pitch = float(rng.uniform(PITCH_RANGE[0], -INPUT_MAX_PITCH - 1.0))
            yaw = math.copysign(_off_the_shoulders(abs(yaw)), yaw)  # under the chin or the nape
        out.append((float(yaw), pitch))
    return out


def synth_cameras(rng: np.random.Generator, count: int, resolution: int) -> list[SynthCamera]:
    """``count`` cameras: 0 frontal; of the rest, ceil(half) input views stratified over yaw -90..90 and
    pitch -30..30, the others all round the head (``_all_round``); 0.5-0.9 m away.

    Every camera but 0 gets a small roll and a framing (``fill`` 0.9-1, off-centre within the
    slack): the focal length varies independently of the distance, as between phones.
    """
    cams = [SynthCamera(head_camera(0.0, 0.0, d := float(rng.uniform(*DISTANCE_RANGE)), resolution),
                        0.0, 0.0, 0.0, d, 1.0, True)]
    k = count - 1
    if k <= 0:
        return cams
    n_in = (k + 1) // 2
    # Pitch strata shuffled against yaw, so up and down views occur at every side.
    views = list(zip(_strata(rng, n_in, -INPUT_MAX_YAW, INPUT_MAX_YAW).tolist(),
                     _strata(rng, n_in, -INPUT_MAX_PITCH, INPUT_MAX_PITCH, shuffle=True).tolist()))
    views += _all_round(rng, k - n_in)
    for yaw, pitch in views:
        distance = float(rng.uniform(*DISTANCE_RANGE))
        roll = float(np.clip(rng.normal(0.0, ROLL_SD), -ROLL_MAX, ROLL_MAX))
        fill = float(rng.uniform(*FILL_RANGE))
        slack = 0.5 * (1.0 - fill)
        shift = (float(rng.uniform(-slack, slack)), float(rng.uniform(-slack, slack)))
        camera = head_camera(yaw, pitch, distance, resolution, roll, fill, shift)
        cams.append(SynthCamera(camera, yaw, pitch, roll, distance, fill, is_input_view(yaw, pitch)))
    return cams
