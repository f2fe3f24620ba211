"""What a synthetic subject wears and how it is lit: lighting, glasses, clothing.

Each is a frozen bundle of plain numbers drawn from a ``numpy`` generator in a fixed order, so
the same seed always gives the same look (see ``identity.sample_identity``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]

# Blackbody colours in display RGB, normalised to their mean; a phone's white balance removes
# most of a light's cast, so only WHITE_BALANCE_LEFT of it stays in the image.
_KELVIN = np.array([3000.0, 4000.0, 5000.0, 5500.0, 6500.0, 7500.0])
_KELVIN_RGB = np.array([(1.00, 0.71, 0.42), (1.00, 0.82, 0.64), (1.00, 0.89, 0.81), (1.00, 0.93, 0.87),
                        (0.98, 1.00, 1.00), (0.89, 0.92, 1.00)])
WHITE_BALANCE_LEFT = 0.35
MAX_HEAD_TURN = 75.0  # degrees a head turns either way in front of a still camera (turned_lighting)
FRAME_COLOURS = {
    "black": (0.03, 0.03, 0.035), "tortoise": (0.24, 0.13, 0.06), "navy": (0.07, 0.09, 0.2),
    "red": (0.42, 0.06, 0.06), "clear": (0.72, 0.70, 0.66), "silver": (0.62, 0.62, 0.64), "gold": (0.72, 0.57, 0.3),
}
METAL_FRAMES = ("silver", "gold")
GARMENT_COLOURS = {
    "black": (0.05, 0.05, 0.055), "white": (0.86, 0.86, 0.84), "heather": (0.5, 0.5, 0.5),
    "charcoal": (0.18, 0.18, 0.2), "navy": (0.08, 0.11, 0.25), "denim": (0.26, 0.36, 0.52),
    "olive": (0.3, 0.32, 0.16), "maroon": (0.36, 0.07, 0.1), "beige": (0.72, 0.64, 0.5),
    "red": (0.65, 0.1, 0.1), "green": (0.1, 0.3, 0.18), "mustard": (0.72, 0.55, 0.15), "pink": (0.86, 0.6, 0.66),
}
PATTERNS = ("solid", "stripes", "heather", "check")
NECKLINES = ("crew", "v", "scoop")


def kelvin_tint(kelvin: float, strength: float = WHITE_BALANCE_LEFT) -> np.ndarray:
    """``[3]`` RGB multiplier (mean 1) of a light at ``kelvin``, ``strength`` of its cast kept."""
    raw = np.stack([np.interp(kelvin, _KELVIN, _KELVIN_RGB[:, c]) for c in range(3)])
    raw = raw / raw.mean()
    return (1.0 - strength) + strength * raw


@dataclass(frozen=True)
class Lighting:
    """A directional key light plus ambient in the head frame (for people who turn their head
    between photos, turned per view by ``turned_lighting``).

    Attributes:
        key: unit direction towards the key light (head frame).
        key_colour: key light RGB (colour temperature times strength).
        ambient: ambient light RGB (from all around, a little stronger from above).
        kelvin: the key's colour temperature.
        sheen: strength of the skin's specular highlight (view-dependent), 0..1.
    """

    key: Colour
    key_colour: Colour
    ambient: Colour
    kelvin: float
    sheen: float


@dataclass(frozen=True)
class Glasses:
    """A pair of glasses resting on the nose bridge.

    Attributes:
        frame_name: key of ``FRAME_COLOURS``.
        frame: frame albedo.
        half_width, half_height: one lens's half-extent, metres.
        roundness: superellipse exponent of the lens outline (2 = ellipse, 4 = rounded rectangle).
        rim: frame band width, metres (metal frames are thin).
        lens_tint: lens colour.
        lens_opacity: how much a lens covers what is behind it.
    """

    frame_name: str
    frame: Colour
    half_width: float
    half_height: float
    roundness: float
    rim: float
    lens_tint: Colour
    lens_opacity: float


@dataclass(frozen=True)
class Clothing:
    """A shirt on the torso.

    Attributes:
        colour_name: key of ``GARMENT_COLOURS``.
        colour: main albedo.
        accent: second albedo (stripes, checks).
        pattern: one of ``PATTERNS``.
        period: pattern repeat, metres.
        neckline: one of ``NECKLINES``.
    """

    colour_name: str
    colour: Colour
    accent: Colour
    pattern: str
    period: float
    neckline: str


def _t(values) -> Colour:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A key light in front of the face up to 80 degrees to either side and -5..60 degrees up, 3000-7500 K."""
    az, el = math.radians(rng.uniform(-80.0, 80.0)), math.radians(rng.uniform(-5.0, 60.0))
    key = np.array([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)])
    kelvin = float(rng.uniform(3000.0, 7500.0))
    ambient_level = float(rng.uniform(0.3, 0.55))
    key_level = (1.0 - ambient_level) * float(rng.uniform(0.85, 1.15))
    # Room light bounces in bluer or warmer than the key, but weaker in cast.
    ambient = ambient_level * kelvin_tint(float(rng.uniform(4500.0, 9000.0)), 0.5 * WHITE_BALANCE_LEFT)
    return Lighting(key=_t(key), key_colour=_t(key_level * kelvin_tint(kelvin)), ambient=_t(ambient),
                    kelvin=kelvin, sheen=float(rng.uniform(0.0, 0.25)))


def turned_lighting(lighting: Lighting, yaw_deg: float) -> Lighting:
    """``lighting`` as a camera at ``yaw_deg`` sees it when the head, not the camera, turned.

    A person who turns their head between photos in front of a still phone and lamp turns the
    room's light with the camera, relative to the head: the key swings about the head's vertical
    axis by the camera's yaw (same convention as ``cameras.SynthCamera``: positive puts the camera
    on the subject's right, -x), at most ``MAX_HEAD_TURN`` degrees either way (a neck turns no
    further; views beyond it keep the light of the furthest turn). Ambient and colours stay.
    """
    turn = math.radians(float(np.clip(yaw_deg, -MAX_HEAD_TURN, MAX_HEAD_TURN)))
    # The rotation about y that carries the frontal view direction (0, 0, -1) to the camera's.
    c, s = math.cos(turn), math.sin(turn)
    x, y, z = lighting.key
    key = (c * x + s * z, y, -s * x + c * z)
    return Lighting(key=_t(key), key_colour=lighting.key_colour, ambient=lighting.ambient,
                    kelvin=lighting.kelvin, sheen=lighting.sheen)


def sample_glasses(rng: np.random.Generator) -> Glasses:
    """Random glasses: frame colour and shape, thin rims for metal frames, faint lenses."""
    names = list(FRAME_COLOURS)
    name = names[int(rng.choice(len(names), p=[0.34, 0.2, 0.06, 0.05, 0.1, 0.15, 0.1]))]
    metal = name in METAL_FRAMES
    return Glasses(
        frame_name=name,
        frame=_t(np.clip(np.array(FRAME_COLOURS[name]) * rng.uniform(0.85, 1.15), 0, 1)),
        half_width=float(rng.uniform(0.021, 0.027)),
        half_height=float(rng.uniform(0.014, 0.02)),
        roundness=float(rng.uniform(2.0, 4.5)),
        rim=float(rng.uniform(0.0008, 0.0013) if metal else rng.uniform(0.0022, 0.0042)),
        lens_tint=_t(rng.uniform(0.8, 1.0, 3)),
        lens_opacity=float(rng.uniform(0.03, 0.08)),
    )


def sample_clothing(rng: np.random.Generator) -> Clothing:
    """A random shirt: garment colour, pattern, neckline."""
    names = list(GARMENT_COLOURS)
    name = names[int(rng.integers(len(names)))]
    colour = np.clip(np.array(GARMENT_COLOURS[name]) * rng.uniform(0.85, 1.15, 3), 0, 1)
    accent = np.array(GARMENT_COLOURS[names[int(rng.integers(len(names)))]])
    pattern = PATTERNS[int(rng.choice(len(PATTERNS), p=[0.5, 0.18, 0.22, 0.1]))]
    neckline = NECKLINES[int(rng.choice(len(NECKLINES), p=[0.6, 0.25, 0.15]))]
    return Clothing(colour_name=name, colour=_t(colour), accent=_t(np.clip(accent, 0, 1)), pattern=pattern,
                    period=float(rng.uniform(0.012, 0.04)), neckline=neckline)
