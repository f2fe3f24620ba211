"""Re-read a synthetic subject's expression codes without writing its dataset.

A subject's images are a pure function of its seed and the generator's settings
(``subject_plan``), so the code of any timestep can be recomputed from the frontal view alone:
every image's background and noise are still drawn in the generator's order, but only the views
MediaPipe is asked about are rendered. This is how a model trained on synthetic data that is no
longer on disk gets codes recorded afterwards (e.g. its neutral code, ``train/neutral.py``).

Letters: T timesteps, E = 52.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from avat3r_cli.core.expressions import EXPRESSION_DIM
from avat3r_cli.data.synthetic.generate import render_view, subject_plan
from avat3r_cli.data.synthetic.head import head_model

if TYPE_CHECKING:
    from avat3r_cli.preprocess.face import FaceAnalyzer


def frontal_codes(
    seed: int,
    timesteps: int,
    cameras: int,
    resolution: int,
    analyzer: FaceAnalyzer,
    upto: int | None = None,
) -> np.ndarray:
    """The codes ``[upto, E]`` that ``generate_subject`` writes for timesteps ``0 .. upto - 1``.

    ``seed``, ``timesteps``, ``cameras`` and ``resolution`` must be the generation's (they decide
    the random draws). As there, a timestep's code is MediaPipe's reading of camera 0, else of the
    nearest camera it finds a face in, else zeros.

    Args:
        upto: how many leading timesteps to read (default all T; 1 = the neutral timestep only).
    """
    upto = timesteps if upto is None else upto
    if not 1 <= upto <= timesteps:
        raise ValueError(f"upto must be in 1..{timesteps}, got {upto}")
    plan = subject_plan(seed, timesteps, cameras, resolution)
    model = head_model(plan.identity)
    order = plan.detection_order()
    codes = np.zeros((upto, EXPRESSION_DIM), np.float32)
    for t in range(upto):
        head = model.samples(plan.expressions[t])
        draws = [plan.image_draws(resolution) for _ in range(cameras)]
        for i in order:
            rgb, _ = render_view(head, plan.identity, plan.drawn[i], draws[i])
            face = analyzer.analyze(rgb)
            if face is not None:
                codes[t] = face.blendshapes
                break
    return codes
