"""The subjects of a training run: which prepared subjects exist, the split, lazy opening, drawing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.data.prepared import PreparedSubject, TrainingSample, is_current, prepared_name
from avat3r_cli.data.sampler import SampleSpec, sample_views

if TYPE_CHECKING:
    from avat3r_cli.train.trainer import TrainConfig


def find_subjects(data_dir: Path, resolution: int, geometry: str) -> list[str]:
    """Sorted names of the subject folders holding ``prepared_r{R}_{geometry}.safetensors``.

    Raises ``Avat3rError`` when none does, or when any of them is stale (``data/prepared.py``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise Avat3rError(f"{data_dir}: dataset folder does not exist")
    name = prepared_name(resolution, geometry)
    subjects = sorted(p.name for p in data_dir.iterdir() if (p / name).is_file())
    if not subjects:
        raise Avat3rError(f"{data_dir}: no subject folder holds {name} (prepare the dataset at R={resolution} first)")
    stale = [s for s in subjects if not is_current(data_dir / s / name)]
    if stale:
        backend = "" if geometry == "template" else f" --geometry {geometry}"
        raise Avat3rError(f"{data_dir}: {len(stale)} subject(s), first {stale[0]}, were prepared by an older avat3r "
                          f"(position maps not carried over the silhouette); run: avat3r prepare-data {data_dir} "
                          f"--resolution {resolution}{backend}")
    return subjects


def split_subjects(subjects: list[str], num_val: int) -> tuple[list[str], list[str]]:
    """(train, held-out): the last ``num_val`` of the sorted list are held out."""
    subjects = sorted(subjects)
    if num_val < 0 or num_val >= len(subjects):
        raise Avat3rError(f"cannot hold out {num_val} of {len(subjects)} subject(s): at least one must remain for training")
    return (subjects[: len(subjects) - num_val], subjects[len(subjects) - num_val :]) if num_val else (subjects, [])


def input_count(rng: np.random.Generator, cfg: TrainConfig) -> int:
    """This sample's number of input views: ``cfg.num_inputs``, or uniform in
    ``cfg.min_inputs..cfg.num_inputs`` when a smaller minimum is set (the draw is skipped otherwise,
    so runs without one see the same samples as before the option existed)."""
    low = cfg.num_inputs if cfg.min_inputs is None else cfg.min_inputs
    if low >= cfg.num_inputs:
        return cfg.num_inputs
    return int(rng.integers(max(1, low), cfg.num_inputs + 1))


class SubjectPool:
    """Opens prepared subjects lazily (thousands may be listed, few are touched early)."""

    def __init__(self, data_dir: Path, resolution: int, geometry: str) -> None:
        self.data_dir, self.name = Path(data_dir), prepared_name(resolution, geometry)
        self.resolution = resolution
        self._open: dict[str, PreparedSubject] = {}

    def get(self, subject: str) -> PreparedSubject:
        if subject not in self._open:
            prepared = PreparedSubject(self.data_dir / subject / self.name)
            if prepared.resolution != self.resolution:
                raise Avat3rError(f"{prepared.path}: resolution {prepared.resolution}, the model needs {self.resolution}")
            self._open[subject] = prepared
        return self._open[subject]

    def draw(self, rng: np.random.Generator, subjects: list[str],
             cfg: TrainConfig) -> tuple[TrainingSample, str, SampleSpec]:
        """A random subject's random sample, the subject's name, and the sample's ``SampleSpec``."""
        name = subjects[int(rng.integers(len(subjects)))]
        subject = self.get(name)
        spec = sample_views(rng, subject.num_timesteps, subject.camera_centers(), input_count(rng, cfg), cfg.num_targets,
                            consistent_inputs=cfg.consistent_inputs, input_candidates=subject.input_views)
        return subject.sample(spec), name, spec
