"""Generate a synthetic multi-view dataset (what ``avat3r synth`` runs).

Letters: T timesteps, C cameras.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` in rendered images (skipped subjects count as done)."""

MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class SynthResult:
    """What ``synthesize`` wrote.

    Attributes:
        output: the dataset folder.
        subjects: subjects in the dataset.
        generated: subjects rendered by this call.
        skipped: subjects of this call's shard that were already complete (not rendered again).
        images: images rendered by this call.
        missed_frontal: timesteps whose frontal view MediaPipe missed (a nearer view labelled them).
        unlabelled: timesteps no view of which MediaPipe detected (their code is zeros).
        gaussians: Gaussians per head (last subject rendered; 0 when none was).
        seconds: wall-clock time.
    """

    output: Path
    subjects: int
    generated: int
    skipped: int
    images: int
    missed_frontal: int
    unlabelled: int
    gaussians: int
    seconds: float

    def to_dict(self) -> dict:
        return {"output": str(self.output), "subjects": self.subjects, "generated": self.generated,
                "skipped": self.skipped, "images": self.images, "missed_frontal": self.missed_frontal,
                "unlabelled": self.unlabelled, "gaussians": self.gaussians, "seconds": round(self.seconds, 3)}


def synthesize(output: str | Path, subjects: int, seed: int = 0, timesteps: int = 6, cameras: int = 12,
               resolution: int = 256, progress: ProgressCallback | None = None,
               shard: tuple[int, int] = (0, 1)) -> SynthResult:
    """Render ``subjects`` synthetic heads into ``output`` (resumable; see ``generate_dataset``)."""
    if subjects < 1 or timesteps < 1 or cameras < 1:
        raise Avat3rError(f"--subjects, --timesteps and --cameras must be >= 1 (got {subjects}, {timesteps}, {cameras})")
    if not 16 <= resolution <= MAX_RESOLUTION:
        raise Avat3rError(f"--resolution must be in 16..{MAX_RESOLUTION}, got {resolution}")
    if not 0 <= shard[0] < shard[1]:
        raise Avat3rError(f"--shard I/N needs 0 <= I < N, got {shard[0]}/{shard[1]}")
    if seed < 0:
        raise Avat3rError(f"--seed must be >= 0, got {seed}")
    from avat3r_cli.data.synthetic.generate import generate_dataset

    start = time.perf_counter()
    results = generate_dataset(output, subjects, seed=seed, timesteps=timesteps, cameras=cameras,
                               resolution=resolution, progress=progress, shard=shard)
    made = [r for r in results if r is not None]
    return SynthResult(
        output=Path(output), subjects=subjects, generated=len(made), skipped=len(results) - len(made),
        images=len(made) * timesteps * cameras,
        missed_frontal=sum(r.missed_frontal for r in made), unlabelled=sum(r.missed_all for r in made),
        gaussians=made[-1].gaussians if made else 0, seconds=time.perf_counter() - start,
    )
