"""A person's own face shape: smooth departures from the canonical face mesh.

Real faces differ from MediaPipe's canonical mesh by millimetres to a centimetre: a longer or
more prominent nose, a receding or jutting chin, a wider jaw, deeper-set eyes, fuller cheeks, a
flatter or rounder face. Preprocessing lifts a photo's landmarks at the canonical face's depth,
so on a real person the position maps are wrong by that much, and differently in each view.
Synthetic heads built on the canonical mesh alone never show the model that error. Each mode
below is a named displacement with a typical size (one standard deviation); an identity's
``face_shape`` holds one standard-normal coefficient per mode.

Head frame: metres, x to the subject's left, y down, z from the face towards the back (so
moving a point forward is a negative z).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from avat3r_cli.data.synthetic.deformers import near_weight

NOSE_TIP, NOSE_BRIDGE, CHIN, MOUTH = 4, 6, 152, 13
EYES = (386, 159)  # upper-lid midpoints, left and right
CHEEKS = (280, 50)
BROWS = (334, 105)


def _both(v: np.ndarray, ids: tuple[int, int], sigma: float) -> np.ndarray:
    return near_weight(v, v[ids[0]], sigma) + near_weight(v, v[ids[1]], sigma)


def _below(v: np.ndarray, top: int, bottom: int) -> np.ndarray:
    """``[n]`` 0 above vertex ``top``'s height, rising linearly to 1 at vertex ``bottom``'s."""
    return np.clip((v[:, 1] - v[top, 1]) / (v[bottom, 1] - v[top, 1]), 0.0, 1.0)


def _axis(column: int, values: np.ndarray) -> np.ndarray:
    out = np.zeros((len(values), 3))
    out[:, column] = values
    return out


Mode = Callable[[np.ndarray], np.ndarray]
# Each mode maps the ``[n, 3]`` rest vertices to their ``[n, 3]`` displacement at one standard
# deviation. Sizes are rough spreads of adult faces, chosen so a few modes together change the
# face by about a centimetre, as real faces differ from the canonical one; ``reshape_face``
# scales them all by ``FACE_SHAPE_SPREAD`` below.
FACE_MODES: dict[str, Mode] = {
    "nose_projection": lambda v: _axis(2, -0.0035 * (near_weight(v, v[NOSE_TIP], 0.011) + 0.4 * near_weight(v, v[NOSE_BRIDGE], 0.01))),
    "nose_width": lambda v: _axis(0, 0.2 * (v[:, 0] - v[NOSE_TIP, 0]) * near_weight(v, v[NOSE_TIP], 0.013)),
    "nose_length": lambda v: _axis(1, 0.003 * near_weight(v, v[NOSE_TIP], 0.01)),
    "chin_length": lambda v: _axis(1, 0.005 * _below(v, MOUTH, CHIN)),
    "chin_projection": lambda v: _axis(2, -0.004 * near_weight(v, v[CHIN], 0.02)),
    "jaw_width": lambda v: _axis(0, 0.07 * v[:, 0] * _below(v, NOSE_TIP, CHIN)),
    "cheek_fullness": lambda v: _axis(2, -0.0035 * _both(v, CHEEKS, 0.018)),
    "eye_depth": lambda v: _axis(2, 0.0025 * _both(v, EYES, 0.011)),
    "brow_ridge": lambda v: _axis(2, -0.0025 * _both(v, BROWS, 0.014)),
    "face_roundness": lambda v: _axis(2, 0.005 * (v[:, 0] / 0.07) ** 2),
    "lip_projection": lambda v: _axis(2, -0.002 * near_weight(v, v[MOUTH], 0.014)),
    "eye_spacing": lambda v: _axis(0, 0.002 * np.sign(v[:, 0]) * _both(v, EYES, 0.015)),
}
# How much wider than the sizes above the coefficients are drawn. The model is to learn that a
# photo's position map can be wrong by as much as a real person's face departs from the template,
# so the training faces should cover that departure with room to spare: at 4.0 a few faces are
# caricatures (a long nose, a heavy jaw). Each widening from 1.0 through 1.6 and 2.5 to 4.0 helped
# the real capture; 5.0 did not (docs/model.md, the model card's stages 15-21).
FACE_SHAPE_SPREAD = 4.0


def reshape_face(rest: np.ndarray, coefficients: tuple[float, ...], fade: np.ndarray) -> np.ndarray:
    """``[468, 3]`` face vertices of one person.

    Args:
        rest: ``[468, 3]`` neutral canonical vertices.
        coefficients: one standard-normal weight per ``FACE_MODES`` entry, in its order (each mode
            scaled by ``FACE_SHAPE_SPREAD``); an empty tuple is the canonical face.
        fade: ``[468]`` in 0..1, 1 where the face meets the skull: those vertices stay put so the
            face's edge still joins the head.
    """
    if not coefficients:
        return rest.copy()
    if len(coefficients) != len(FACE_MODES):
        raise ValueError(f"face_shape needs {len(FACE_MODES)} coefficients, got {len(coefficients)}")
    move = FACE_SHAPE_SPREAD * sum(c * mode(rest) for c, mode in zip(coefficients, FACE_MODES.values()))
    return rest + move * (1.0 - fade)[:, None]
