"""Random synthetic identities: head shape, skin, hair, eyes, brows, lips, body, clothes, glasses, lighting.

An ``Identity`` is a frozen, hashable bundle of plain numbers, so a head model built from it can
be cached and the same seed always gives the same person.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from avat3r_cli.data.synthetic.appearance import (
    Clothing, Colour, Glasses, Lighting, sample_clothing, sample_glasses, sample_lighting, turned_lighting,
)
from avat3r_cli.data.synthetic.face_shape import FACE_MODES

HAIR_STYLES = ("short", "long", "buzz")
HAIR_COLOURS = {
    "black": (0.045, 0.035, 0.03),
    "brown": (0.24, 0.14, 0.08),
    "blond": (0.72, 0.57, 0.34),
    "red": (0.55, 0.22, 0.09),
    "grey": (0.62, 0.61, 0.59),
}
IRIS_COLOURS = {
    "brown": (0.30, 0.17, 0.08),
    "dark": (0.13, 0.08, 0.05),
    "blue": (0.30, 0.45, 0.62),
    "green": (0.32, 0.42, 0.25),
    "hazel": (0.45, 0.33, 0.16),
    "grey": (0.48, 0.52, 0.55),
}
# Skin albedo from very light to very dark, a piecewise-linear path through measured-looking
# tones; one parameter along it keeps hue and lightness correlated as in real skin.
SKIN_TONES = np.array([
    (0.95, 0.80, 0.70),
    (0.88, 0.68, 0.56),
    (0.78, 0.56, 0.42),
    (0.62, 0.42, 0.29),
    (0.45, 0.29, 0.19),
    (0.30, 0.19, 0.13),
])

GLASSES_SHARE = 0.2
FACE_SHAPE_STREAM = 5  # face shapes draw from ``default_rng((identity seed, FACE_SHAPE_STREAM))``
TURNING_STREAM = 6  # whether a person turns their head: ``default_rng((identity seed, TURNING_STREAM))``
# The share of people photographed turning their head in front of a still camera and lamp (the
# light turns with the view, ``appearance.turned_lighting``); the others sit still while the
# photographer walks round them (the light stays with the head).
TURNING_SHARE = 0.5


@dataclass(frozen=True)
class Identity:
    """One synthetic person. Colours are linear-ish RGB albedo in 0..1; lengths in metres.

    Attributes:
        seed: seeds the per-identity noise (texture blotches, sample positions, hair strands).
        skin: skin albedo.
        skin_tone: 0 (lightest) .. 1 (darkest), where ``skin`` came from.
        scale: ``(sx, sy, sz)`` head-frame scale factors of the whole head (about 1 +- 8 %).
        skull: multipliers of the skull ellipsoid's semi-axes (width, height, depth).
        hair_style: one of ``HAIR_STYLES``.
        hair_name: key of ``HAIR_COLOURS``.
        hair: hair albedo.
        hairline: head-frame y of the hairline above the forehead (more negative: higher).
        hair_volume: hair thickness on top of the skull.
        hair_length: head-frame y where long hair ends (unused by the other styles).
        nape: head-frame y where the hair ends at the back of the neck.
        hair_streaks: how strongly strands vary in brightness (0 even .. 1 streaky).
        iris_name: key of ``IRIS_COLOURS``.
        iris: iris albedo.
        brow: eyebrow albedo.
        brow_width: eyebrow thickness factor (1 = the canonical brow polygon).
        lip: lip albedo.
        blush: cheek redness, 0..1.
        freckles: freckle density, 0 (none, most people) .. 1.
        stubble: beard-shadow strength on jaw and upper lip, 0..1.
        skin_grain: amplitude of the pore-scale albedo noise.
        neck_width: the neck's half-width (x), metres.
        shoulder_width: the shoulders' half-width (x), metres.
        clothing: the shirt.
        glasses: the glasses, or None.
        lighting: key and ambient light, fixed to the head.
        face_shape: one standard-normal coefficient per ``face_shape.FACE_MODES`` entry (how the
            face departs from the canonical mesh); empty for the canonical face.
        turns_head: whether the photos were taken as the person turned their head in front of a
            still camera and lamp, so the light turns with the view (``appearance.turned_lighting``).
    """

    seed: int
    skin: Colour
    skin_tone: float
    scale: Colour
    skull: Colour
    hair_style: str
    hair_name: str
    hair: Colour
    hairline: float
    hair_volume: float
    hair_length: float
    iris_name: str
    iris: Colour
    brow: Colour
    brow_width: float
    lip: Colour
    blush: float
    nape: float
    hair_streaks: float
    freckles: float
    stubble: float
    skin_grain: float
    neck_width: float
    shoulder_width: float
    clothing: Clothing
    glasses: Glasses | None
    lighting: Lighting
    face_shape: tuple[float, ...] = ()
    turns_head: bool = False

    def lighting_at(self, yaw_deg: float) -> Lighting:
        """The light as a camera at ``yaw_deg`` (``cameras.SynthCamera``) sees this person."""
        return turned_lighting(self.lighting, yaw_deg) if self.turns_head else self.lighting

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)


def _t(values) -> Colour:
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def skin_from_tone(tone: float) -> np.ndarray:
    """``[3]`` skin albedo at ``tone`` in 0..1 along ``SKIN_TONES``."""
    pos = float(np.clip(tone, 0.0, 1.0)) * (len(SKIN_TONES) - 1)
    i = min(int(pos), len(SKIN_TONES) - 2)
    return SKIN_TONES[i] * (1 - (pos - i)) + SKIN_TONES[i + 1] * (pos - i)


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random identity; everything is drawn from ``rng`` in a fixed order (deterministic)."""
    seed = int(rng.integers(0, 2**31 - 1))
    tone = float(rng.random())
    skin = skin_from_tone(tone) * rng.uniform(0.96, 1.04, 3)  # small hue jitter
    base = rng.uniform(0.92, 1.08)
    scale = base * rng.uniform(0.96, 1.04, 3)
    # The skull must stay at least as wide as the face mask (its edge would stick out).
    skull = rng.uniform((0.97, 0.94, 0.94), (1.06, 1.05, 1.08))

    style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=[0.45, 0.35, 0.20]))]
    # Darker skin makes black and brown hair more likely, as in the world's population.
    names = list(HAIR_COLOURS)
    p = np.array([0.30 + 0.5 * tone, 0.35, 0.15 * (1 - tone), 0.08 * (1 - tone), 0.12])
    hair_name = names[int(rng.choice(len(names), p=p / p.sum()))]
    hair = np.array(HAIR_COLOURS[hair_name]) * rng.uniform(0.85, 1.15)
    iris_names = list(IRIS_COLOURS)
    q = np.array([0.30, 0.15 + 0.5 * tone, 0.2 * (1 - tone), 0.12 * (1 - tone), 0.15, 0.08 * (1 - tone)])
    iris_name = iris_names[int(rng.choice(len(iris_names), p=q / q.sum()))]
    iris = np.array(IRIS_COLOURS[iris_name]) * rng.uniform(0.85, 1.15)
    # Brows follow the hair, but grey-haired people often keep darker brows.
    brow_src = np.array(HAIR_COLOURS["brown"]) if hair_name == "grey" and rng.random() < 0.5 else hair
    brow = np.minimum(brow_src * 0.8, skin * 0.55)
    lip = skin * np.array([0.88, 0.62, 0.62]) * rng.uniform(0.85, 1.05) + np.array([0.05, 0.0, 0.01])

    # Freckles mostly on light skin and red or blond hair; beard shadow on about a third of people,
    # rarely with long hair.
    freckle_chance = 0.12 + 0.35 * (hair_name in ("red", "blond"))
    freckles = float(rng.uniform(0.2, 1.0)) * (rng.random() < freckle_chance * (1.0 - tone))
    stubble = float(rng.uniform(0.2, 1.0)) * (rng.random() < (0.1 if style == "long" else 0.4))
    return Identity(
        seed=seed,
        skin=_t(np.clip(skin, 0, 1)),
        skin_tone=tone,
        scale=_t(scale),
        skull=_t(skull),
        hair_style=style,
        hair_name=hair_name,
        hair=_t(np.clip(hair, 0, 1)),
        hairline=float(rng.uniform(-0.108, -0.094)),
        hair_volume=float(rng.uniform(0.006, 0.016) if style != "buzz" else 0.0015),
        hair_length=float(rng.uniform(0.08, 0.15)),
        iris_name=iris_name,
        iris=_t(np.clip(iris, 0, 1)),
        brow=_t(np.clip(brow, 0, 1)),
        brow_width=float(rng.uniform(0.8, 1.3)),
        lip=_t(np.clip(lip, 0, 1)),
        blush=float(rng.uniform(0.2, 0.7)),
        nape=float(rng.uniform(0.03, 0.06)),
        hair_streaks=float(rng.uniform(0.2, 1.0)),
        freckles=freckles,
        stubble=stubble,
        skin_grain=float(rng.uniform(0.015, 0.045)),
        neck_width=float(rng.uniform(0.05, 0.062)),
        shoulder_width=float(rng.uniform(0.17, 0.225)),
        clothing=sample_clothing(rng),
        glasses=sample_glasses(rng) if rng.random() < GLASSES_SHARE else None,
        lighting=sample_lighting(rng),
        # From its own stream: ``rng`` then goes on to a subject's cameras and expressions, which
        # stay the same as before face shapes existed.
        face_shape=tuple(float(c) for c in np.random.default_rng((seed, FACE_SHAPE_STREAM)).standard_normal(len(FACE_MODES))),
        turns_head=bool(np.random.default_rng((seed, TURNING_STREAM)).random() < TURNING_SHARE),
    )


DEFAULT_IDENTITY = Identity(
    seed=0, skin=(0.86, 0.66, 0.54), skin_tone=0.2, scale=(1.0, 1.0, 1.0), skull=(1.0, 1.0, 1.0),
    hair_style="short", hair_name="brown", hair=(0.22, 0.15, 0.10), hairline=-0.10, hair_volume=0.008,
    hair_length=0.12, iris_name="brown", iris=(0.36, 0.22, 0.12), brow=(0.24, 0.16, 0.11), brow_width=1.0,
    lip=(0.74, 0.36, 0.36), blush=0.6, nape=0.045, hair_streaks=0.5, freckles=0.0, stubble=0.0, skin_grain=0.02,
    neck_width=0.056, shoulder_width=0.2,
    clothing=Clothing("heather", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "solid", 0.02, "crew"),
    glasses=None,
    lighting=Lighting(key=(-0.26, -0.44, -0.86), key_colour=(0.58, 0.58, 0.58), ambient=(0.42, 0.42, 0.42),
                      kelvin=6500.0, sheen=0.0),
)
"""The helper head of the camera tests: a light-skinned, brown-haired person, unscaled."""
