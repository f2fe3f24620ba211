"""Which views make a training sample: inputs spread out, at different timesteps, as the paper trains.

Each sample is V input views taken at *different* random timesteps (so the model learns to cope
with inconsistent expressions across its inputs) plus M target views at one target timestep,
supervised with that timestep's expression code. Input cameras are drawn only among the
subject's input candidates (the views a user would shoot; every camera for datasets without the
flag) and spread out by farthest-viewpoint sampling from a random first one; targets come from
every camera, so the model is also taught the back of the head, the crown and the neck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleSpec:
    """The views of one training sample (indices into a subject's timesteps and cameras).

    Attributes:
        input_timesteps: ``[V]`` timestep of each input view.
        input_cameras: ``[V]`` camera of each input view.
        target_timestep: the timestep of every target view.
        target_cameras: ``[M]`` cameras of the target views.
    """

    input_timesteps: tuple[int, ...]
    input_cameras: tuple[int, ...]
    target_timestep: int
    target_cameras: tuple[int, ...]


def farthest_viewpoints(centers: np.ndarray, count: int, first: int, candidates: np.ndarray | None = None) -> list[int]:
    """``count`` camera indices from ``centers [C, 3]``, each farthest from those already chosen.

    Distances are between viewing directions from the centroid of all cameras (angles), so a
    camera twice as far away along the same ray counts as the same viewpoint. With
    ``candidates`` (``[C]`` bool), only those cameras are chosen (``first`` must be one of them).
    """
    allowed = np.ones(len(centers), dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    if allowed.shape != (len(centers),):
        raise ValueError(f"candidates has shape {list(allowed.shape)}, expected [{len(centers)}]")
    if not allowed[first]:
        raise ValueError(f"the first camera {first} is not a candidate")
    dirs = centers - centers.mean(axis=0, keepdims=True)
    dirs = dirs / (np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12)
    chosen = [first]
    dist = np.where(allowed, np.linalg.norm(dirs - dirs[first], axis=1), -np.inf)
    while len(chosen) < min(count, int(allowed.sum())):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(dirs - dirs[nxt], axis=1))
    return chosen


def sample_views(
    rng: np.random.Generator,
    num_timesteps: int,
    camera_centers: np.ndarray,
    num_inputs: int,
    num_targets: int,
    consistent_inputs: bool = False,
    input_candidates: np.ndarray | None = None,
) -> SampleSpec:
    """Draw one sample's views.

    ``input_candidates`` (``[C]`` bool, default all) are the cameras inputs may come from;
    targets may be any camera. ``consistent_inputs`` puts every input at one timestep (an
    ablation; the default follows the paper's random timesteps). Timesteps repeat only when
    there are fewer than ``num_inputs``; cameras only when there are fewer candidates.
    """
    num_cameras = len(camera_centers)
    pool = np.arange(num_cameras) if input_candidates is None else np.flatnonzero(input_candidates)
    if len(pool) == 0:
        raise ValueError("no camera is an input candidate")
    cams = farthest_viewpoints(camera_centers, num_inputs, int(pool[rng.integers(len(pool))]), input_candidates)
    while len(cams) < num_inputs:  # fewer candidates than inputs: repeat some
        cams.append(int(pool[rng.integers(len(pool))]))
    if consistent_inputs:
        times = [int(rng.integers(num_timesteps))] * num_inputs
    else:
        times = [int(t) for t in rng.choice(num_timesteps, size=num_inputs, replace=num_timesteps < num_inputs)]
    target_time = int(rng.integers(num_timesteps))
    targets = rng.choice(num_cameras, size=num_targets, replace=num_cameras < num_targets)
    return SampleSpec(tuple(times), tuple(cams), target_time, tuple(int(c) for c in targets))
