"""The built-in expression tour of ``create``'s ``expressions.mp4``, and frame labels.

A tour is a sequence of named expressions; each eases in from the model's neutral code, holds,
and eases out again, so any two consecutive frames differ smoothly and every expression is seen
at its peak. An expression sets its named channels to their peaks and keeps the neutral code's
other channels (MediaPipe reads a neutral face with eyeSquint ~0.5, not 0).
Letters: T frames, E = 52.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from avat3r_cli.core.expressions import EXPRESSION_DIM, EXPRESSION_INDEX

# (label, {expression name: peak score}). Only what the bundled model renders: every peak code
# lies within 4 standard deviations of its training codes in every channel (tested against the
# weights' statistics). The shapes it does not handle, and why, are listed on its card
# (src/avat3r_cli/assets/avat3r-small/README.md): cheekPuff breaks the face apart (streaks, red
# blotches), and browDown, mouthFunnel, mouthPucker and browInnerUp lie far outside its training codes or show
# no visible change. Peaks below 1: the training codes rarely reach 1, and an over-driven code
# looks worse than a strong one.
TOUR: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen", {"jawOpen": 0.9}),
    ("smile", {"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9}),
    ("blink", {"eyeBlinkLeft": 0.9, "eyeBlinkRight": 0.9}),
)
SECONDS_PER_EXPRESSION = 1.0
# The tour plays at its own frame rate: every frame needs a decode + render, and 12 frames per
# second of eased expressions read smoothly while keeping `create` with videos within ~20 s on a CPU.
TOUR_FPS = 12


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def ease_weights(frames: int) -> np.ndarray:
    """``[frames]`` weights: smooth rise over the first third, hold at 1, fall over the last third.

    Sampled at frame centres, so even 1 or 2 frames per expression show it (near) its peak.
    """
    k = (np.arange(frames) + 0.5) / frames
    return np.array([_smoothstep(3.0 * x) * _smoothstep(3.0 * (1.0 - x)) for x in k], dtype=np.float32)


def expression_code(scores: dict[str, float], neutral: np.ndarray) -> np.ndarray:
    """A ``[52]`` code: ``neutral [52]`` with the named scores set."""
    code = np.asarray(neutral, dtype=np.float32).reshape(EXPRESSION_DIM).copy()
    for name, value in scores.items():
        code[EXPRESSION_INDEX[name]] = value
    return code


def tour_frames(frames_per_expression: int, neutral: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The tour as codes ``[T, 52]`` and one label per frame, T = len(TOUR) * frames_per_expression.

    ``neutral [52]`` is the model's neutral code (``Avatar.neutral_code``, the avatar.ply
    expression): every expression starts and ends there, and the neutral segment stays there.
    """
    if frames_per_expression < 1:
        raise ValueError(f"frames_per_expression must be >= 1, got {frames_per_expression}")
    weights = ease_weights(frames_per_expression)
    base = expression_code({}, neutral)
    codes, labels = [], []
    for label, scores in TOUR:
        peak = expression_code(scores, base)
        codes.append(base[None, :] + weights[:, None] * (peak - base)[None, :])
        labels += [label] * frames_per_expression
    return np.concatenate(codes).astype(np.float32), labels


def frames_per_expression(fps: int) -> int:
    """Frames each tour expression gets at ``fps`` (about ``SECONDS_PER_EXPRESSION`` s, at least 1)."""
    return max(1, round(fps * SECONDS_PER_EXPRESSION))


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow >= 10.1 scales its bundled font; older ones only have the fixed bitmap font.
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def label_frame(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` uint8 ``[H, W, 3]`` with ``text`` on a dark band at the bottom (a new array)."""
    h, w = image.shape[:2]
    size = max(8, round(h / 16))
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 3)
    band_top = h - (bottom - top) - 2 * pad
    # A band rather than outlined text: readable on any background colour and any avatar.
    draw.rectangle([0, band_top, w, h], fill=(0, 0, 0))
    x = max(pad, (w - (right - left)) // 2)
    draw.text((x - left, band_top + pad - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def tour_seconds(fps: int) -> float:
    """Length of the tour video in seconds at ``fps``."""
    return len(TOUR) * frames_per_expression(fps) / fps if fps > 0 else math.nan
