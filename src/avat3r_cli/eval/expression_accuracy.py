"""Expression accuracy: does the avatar make the face it is asked for, as MediaPipe reads it?

Render each held-out avatar frontally at known codes (drawn from the dataset's own codes, so they
are realistic combinations), run the MediaPipe blendshape model on the renders, and correlate the
read scores with the requested ones per blendshape. Codes and readings live in one space by
construction (a dataset's codes are MediaPipe readings of its frontal views).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.data.prepared import PreparedSubject, prepared_name
from avat3r_cli.eval.evaluate import render_expression_probe
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.preprocess.face import FaceAnalyzer

# The groups the issue asks about, each the mean of its left/right scores.
GROUPS: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "browInnerUp": ("browInnerUp",),
    "mouthPucker": ("mouthPucker",),
}
_ANALYSIS_SIZE = 256  # MediaPipe's landmark model is more reliable on faces larger than a 128^2 crop


@dataclass
class ExpressionAccuracy:
    """Pearson correlation between requested and read scores, per group (None if undefined)."""

    correlation: dict[str, float | None]
    renders: int
    detected: int
    requested: dict[str, list[float]] = field(default_factory=dict)
    read: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"correlation": self.correlation, "renders": self.renders, "detected": self.detected}


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _group_scores(codes: np.ndarray) -> dict[str, np.ndarray]:
    return {g: codes[:, [EXPRESSION_INDEX[n] for n in names]].mean(axis=1) for g, names in GROUPS.items()}


def expression_accuracy(
    model: Avat3r,
    data_dir: Path,
    subjects: list[str],
    codes_per_subject: int = 24,
    seed: int = 0,
    analyzer: FaceAnalyzer | None = None,
) -> ExpressionAccuracy:
    """Correlations over ``len(subjects) * codes_per_subject`` frontal renders."""
    res, geometry = model.config.image_size, model.config.geometry_backend
    opened = [PreparedSubject(Path(data_dir) / s / prepared_name(res, geometry)) for s in subjects]
    pool = torch.cat([p.expressions for p in opened]).numpy()
    rng = np.random.default_rng(seed)
    requested, read = [], []
    own = analyzer is None
    analyzer = analyzer or FaceAnalyzer()
    try:
        if own:
            analyzer.open()
        renders = 0
        for subject in opened:
            codes = pool[rng.choice(len(pool), size=codes_per_subject, replace=len(pool) < codes_per_subject)]
            images = render_expression_probe(model, subject, torch.from_numpy(codes))
            big = torch.nn.functional.interpolate(images, size=_ANALYSIS_SIZE, mode="bicubic", align_corners=False)
            for code, image in zip(codes, big):
                renders += 1
                array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                face = analyzer.analyze(array)
                if face is not None:
                    requested.append(code)
                    read.append(face.blendshapes)
    finally:
        if own:
            analyzer.close()
    req = _group_scores(np.array(requested)) if requested else {g: np.zeros(0) for g in GROUPS}
    got = _group_scores(np.array(read)) if read else {g: np.zeros(0) for g in GROUPS}
    return ExpressionAccuracy(
        correlation={g: _pearson(req[g], got[g]) for g in GROUPS},
        renders=renders,
        detected=len(read),
        requested={g: req[g].round(4).tolist() for g in GROUPS},
        read={g: got[g].round(4).tolist() for g in GROUPS},
    )
