"""Expression accuracy: does the avatar make the face it is asked for, as MediaPipe reads it?

Render each held-out avatar frontally at known codes (drawn from the dataset's own codes, so they
are realistic combinations), run the MediaPipe blendshape model on the renders, and correlate the
read scores with the requested ones per blendshape. Codes and readings live in one space by
construction (a dataset's codes are MediaPipe readings of its frontal views).

Each correlation comes with a seeded percentile-bootstrap interval over the renders
(``eval/bootstrap.py``). ``expression_ceiling`` reads the held-out subjects' ground-truth
frontal views the same way (same crop size, same upsampling, same background): what a perfect
avatar would score, given how well MediaPipe reads faces at this crop size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.data.prepared import PreparedSubject, prepared_name
from avat3r_cli.eval.bootstrap import DEFAULT_RESAMPLES, bootstrap_correlation, pearson
from avat3r_cli.eval.evaluate import frontal_camera, render_expression_probe
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
    """Pearson correlation between requested and read scores, per group (None if undefined).

    Attributes:
        correlation: per group.
        interval: per group, the 95 % bootstrap interval ``[low, high]`` (None if undefined or
            not asked for).
        renders: images analysed; detected: those where MediaPipe found a face (the pairs).
        requested, read: per group, the paired scores (for audits).
    """

    correlation: dict[str, float | None]
    renders: int
    detected: int
    interval: dict[str, list[float] | None] = field(default_factory=dict)
    requested: dict[str, list[float]] = field(default_factory=dict)
    read: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"correlation": self.correlation, "interval": self.interval, "renders": self.renders,
                "detected": self.detected}


def group_scores(codes: np.ndarray) -> dict[str, np.ndarray]:
    """``[n, 52]`` codes -> ``{group: [n]}`` scores (each group the mean of its blendshapes)."""
    codes = np.asarray(codes, np.float32).reshape(-1, len(EXPRESSION_INDEX))
    return {g: codes[:, [EXPRESSION_INDEX[n] for n in names]].mean(axis=1) for g, names in GROUPS.items()}


def _read(analyzer: FaceAnalyzer, images: torch.Tensor) -> list[np.ndarray | None]:
    """MediaPipe's ``[52]`` scores per image ``[T, 3, R, R]`` (upsampled to the analysis size), None if no face."""
    big = torch.nn.functional.interpolate(images, size=_ANALYSIS_SIZE, mode="bicubic", align_corners=False)
    out = []
    for image in big:
        array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        face = analyzer.analyze(array)
        out.append(None if face is None else face.blendshapes)
    return out


def _accuracy(requested: list[np.ndarray], read: list[np.ndarray], renders: int, resamples: int, seed: int) -> ExpressionAccuracy:
    req = group_scores(np.array(requested)) if requested else {g: np.zeros(0) for g in GROUPS}
    got = group_scores(np.array(read)) if read else {g: np.zeros(0) for g in GROUPS}
    intervals = {}
    for g in GROUPS:
        ci = bootstrap_correlation(req[g], got[g], resamples=resamples, seed=seed)
        intervals[g] = None if ci is None else [round(ci[0], 4), round(ci[1], 4)]
    return ExpressionAccuracy(
        correlation={g: pearson(req[g], got[g]) for g in GROUPS},
        renders=renders,
        detected=len(read),
        interval=intervals,
        requested={g: req[g].round(4).tolist() for g in GROUPS},
        read={g: got[g].round(4).tolist() for g in GROUPS},
    )


def expression_accuracy(
    model: Avat3r,
    data_dir: Path,
    subjects: list[str],
    codes_per_subject: int = 24,
    seed: int = 0,
    analyzer: FaceAnalyzer | None = None,
    resamples: int = DEFAULT_RESAMPLES,
) -> ExpressionAccuracy:
    """Correlations (and bootstrap intervals, ``resamples`` > 0) over ``len(subjects) * codes_per_subject`` renders.

    Codes are drawn (seeded by ``seed``) from every listed subject's codes; each subject's
    avatar is rendered frontally at its draws (``render_expression_probe``).
    """
    opened = _open(model, data_dir, subjects)
    pool = torch.cat([p.expressions for p in opened]).numpy()
    rng = np.random.default_rng(seed)
    requested, read = [], []
    renders = 0
    with _analyzer(analyzer) as reader:
        for subject in opened:
            codes = pool[rng.choice(len(pool), size=codes_per_subject, replace=len(pool) < codes_per_subject)]
            images = render_expression_probe(model, subject, torch.from_numpy(codes))
            for code, scores in zip(codes, _read(reader, images)):
                renders += 1
                if scores is not None:
                    requested.append(code)
                    read.append(scores)
    return _accuracy(requested, read, renders, resamples, seed)


def expression_ceiling(
    data_dir: Path,
    subjects: list[str],
    resolution: int,
    geometry: str,
    seed: int = 0,
    analyzer: FaceAnalyzer | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> ExpressionAccuracy:
    """The same correlations on the ground truth: every timestep's frontal view of each subject.

    Each view (its prepared crop at ``resolution``, composited over ``background`` with its mask,
    as the renders are) is read like a render and paired with its timestep's code.
    """
    opened = [PreparedSubject(Path(data_dir) / s / prepared_name(resolution, geometry)) for s in subjects]
    bg = torch.tensor(background, dtype=torch.float32)[None, :, None, None]
    requested, read = [], []
    renders = 0
    with _analyzer(analyzer) as reader:
        for subject in opened:
            cam = frontal_camera(subject)
            times = list(range(subject.num_timesteps))
            views = subject.views(times, [cam] * len(times))
            images = views["images"] * views["masks"] + bg * (1.0 - views["masks"])
            for t, scores in zip(times, _read(reader, images)):
                renders += 1
                if scores is not None:
                    requested.append(subject.expressions[t].numpy())
                    read.append(scores)
    return _accuracy(requested, read, renders, resamples, seed)


def _open(model: Avat3r, data_dir: Path, subjects: list[str]) -> list[PreparedSubject]:
    res, geometry = model.config.input_size, model.config.geometry_backend
    return [PreparedSubject(Path(data_dir) / s / prepared_name(res, geometry)) for s in subjects]


@contextlib.contextmanager
def _analyzer(given: FaceAnalyzer | None) -> Iterator[FaceAnalyzer]:
    """``given`` as it is, or a fresh analyzer opened for the block and closed after it."""
    if given is not None:
        yield given
        return
    with FaceAnalyzer() as own:
        yield own
