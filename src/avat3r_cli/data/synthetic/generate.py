"""Render synthetic multi-view subjects into the dataset layout (data/layout.py).

Per subject: a random identity, T timesteps (0 neutral, then random expressions, see
``random_expression``, each with small amplitudes of other deformers, see ``expression_noise``)
seen by C cameras (camera 0 frontal, about half the rest where a user shoots photos, the others
all round the head: see ``cameras.synth_cameras``), each image over its own random background
with a little sensor noise. A timestep's expression code is what MediaPipe reads from the most
frontal view (docs/dataset.md); the deformer weights that made it are saved beside it.

Letters: T timesteps, C cameras, R image side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from avat3r_cli.core.expressions import EXPRESSION_DIM
from avat3r_cli.data.layout import cameras_to_json, write_dataset_index
from avat3r_cli.core.camera import Camera
from avat3r_cli.data.synthetic.cameras import SynthCamera, synth_cameras
from avat3r_cli.data.synthetic.deformers import DEFORMERS, weights_vector
from avat3r_cli.data.synthetic.head import HeadSamples, head_model
from avat3r_cli.data.synthetic.identity import Identity, sample_identity
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.render.api import render

if TYPE_CHECKING:
    from avat3r_cli.preprocess.face import FaceAnalyzer

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` in rendered images."""

GENERATOR_VERSION = 10
SUBJECT_SEED_STRIDE = 100003
# Deformers that exclude each other (a jaw cannot go both ways).
_EXCLUSIVE = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft",
              "mouthPucker": "mouthFunnel", "mouthFunnel": "mouthPucker"}
_PAIRS = {"mouthSmileLeft": "mouthSmileRight", "eyeBlinkLeft": "eyeBlinkRight", "eyeWideLeft": "eyeWideRight",
          "browDownLeft": "browDownRight", "browOuterUpLeft": "browOuterUpRight"}
_PAIRS.update({v: k for k, v in _PAIRS.items()})
# The expressions users notice first and evaluation scores, with the chance each is on in a timestep.
_FOCUS = (("jawOpen", 0.45), ("mouthSmileLeft", 0.35), ("eyeBlinkLeft", 0.35))
NOISE_CHANCE, NOISE_MAX = 0.25, 0.12  # expression_noise: how often another deformer twitches, how far
SENSOR_NOISE = (0.002, 0.01)  # per-subject standard deviation of the images' noise, 0..1 units


def random_expression(rng: np.random.Generator) -> dict[str, float]:
    """A random expression: the focus deformers each on by their own chance, plus 0-2 others.

    Weights are 0.2..1; a symmetric pair usually moves together. Version 1 of the generator drew
    1-3 of the 19 deformers uniformly, which left jawOpen in 6 % of timesteps and smiles and blinks
    in 12 %: too rare for a model to learn them from a few thousand training steps.
    """
    chosen: dict[str, float] = {}

    def add(name: str) -> None:
        if _EXCLUSIVE.get(name) in chosen or name in chosen:
            return
        chosen[name] = float(rng.uniform(0.2, 1.0))
        if name in _PAIRS and rng.random() < 0.75:
            chosen[_PAIRS[name]] = float(np.clip(chosen[name] + rng.normal(0, 0.1), 0.0, 1.0))

    for name, chance in _FOCUS:
        if rng.random() < chance:
            add(name if name not in _PAIRS or rng.random() < 0.5 else _PAIRS[name])
    for _ in range(int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))):
        add(DEFORMERS[int(rng.integers(len(DEFORMERS)))])
    return chosen


def expression_noise(rng: np.random.Generator, weights: dict[str, float]) -> dict[str, float]:
    """``weights`` plus small amplitudes (up to 0.12) of some of the other deformers.

    A face is never still in the deformers a timestep does not choose: real captures show small
    movements everywhere. Drawn once per timestep, so every camera of the timestep (one instant)
    sees the same face; deformers excluded by a chosen one stay off.
    """
    out = dict(weights)
    for name in DEFORMERS:
        if rng.random() < NOISE_CHANCE and name not in out and _EXCLUSIVE.get(name) not in out:
            out[name] = float(rng.uniform(0.02, NOISE_MAX))
    return out


def _background(rng: np.random.Generator, resolution: int) -> torch.Tensor:
    """``[3, R, R]``: a uniform colour or a vertical gradient between two colours."""
    a = torch.tensor(rng.uniform(0.05, 0.95, 3), dtype=torch.float32)
    if rng.random() < 0.5:
        return a[:, None, None].expand(3, resolution, resolution).clone()
    b = torch.tensor(rng.uniform(0.05, 0.95, 3), dtype=torch.float32)
    t = torch.linspace(0.0, 1.0, resolution)[None, :, None]
    return (a[:, None, None] * (1 - t) + b[:, None, None] * t).expand(3, resolution, resolution).clone()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


@dataclass
class SubjectPlan:
    """What a subject's seed decides before any image is rendered.

    Attributes:
        rng: the subject's generator, positioned where the per-image draws start (each image, in
            timestep-major, camera-minor order, draws its background, then its sensor noise).
        identity: the procedural person.
        drawn: C cameras (0 frontal) with their input flags.
        expressions: T deformer weight dicts (0 neutral).
        noise: the standard deviation of this subject's sensor noise.
    """

    rng: np.random.Generator
    identity: Identity
    drawn: list[SynthCamera]
    expressions: list[dict[str, float]]
    noise: float

    @property
    def cameras(self) -> list[Camera]:
        return [d.camera for d in self.drawn]

    def detection_order(self) -> list[int]:
        """Camera indices by angle from the frontal camera's axis: where to look when MediaPipe
        misses camera 0."""
        axes = [c.world_to_cam[2, :3] for c in self.cameras]
        return sorted(range(len(axes)), key=lambda i: -float(axes[i] @ axes[0]))

    def image_draws(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next image's background and sensor noise, both ``[3, R, R]`` (advances ``rng``)."""
        background = _background(self.rng, resolution)
        grain = torch.from_numpy(self.rng.standard_normal((3, resolution, resolution), dtype=np.float32))
        return background, grain * self.noise


def subject_plan(seed: int, timesteps: int, cameras: int, resolution: int) -> SubjectPlan:
    """The identity, cameras and expressions of the subject with ``seed`` (as ``generate_subject``
    draws them), so a subset of its images can be re-rendered exactly (``frontal.py``)."""
    if timesteps < 1 or cameras < 1 or resolution < 16:
        raise ValueError("need timesteps >= 1, cameras >= 1 and resolution >= 16")
    rng = np.random.default_rng(seed)
    identity = sample_identity(rng)
    drawn = synth_cameras(rng, cameras, resolution)
    expressions = [{}] + [expression_noise(rng, random_expression(rng)) for _ in range(timesteps - 1)]
    noise = float(rng.uniform(*SENSOR_NOISE))
    return SubjectPlan(rng, identity, drawn, expressions, noise)


def render_view(
    head: HeadSamples, identity: Identity, drawn: SynthCamera, draws: tuple[torch.Tensor, torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb uint8 [R, R, 3], mask uint8 [R, R])`` of ``head`` seen by ``drawn``'s camera, lit as
    that view sees ``identity`` (``Identity.lighting_at``), over the image's ``(background,
    noise)`` draws (``SubjectPlan.image_draws``)."""
    background, grain = draws
    camera = drawn.camera
    with torch.no_grad():
        out = render(head.gaussians(identity.lighting_at(drawn.yaw_deg), camera), camera, (0.0, 0.0, 0.0))
    # Rendered over black, the image is premultiplied: add the background behind it.
    rgb = _to_uint8(out.image + (1.0 - out.alpha) * background + grain)
    mask = (out.alpha[0].clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
    return rgb, mask


@dataclass(frozen=True)
class SubjectSummary:
    """What ``generate_subject`` wrote: identity, sizes and how MediaPipe did."""

    name: str
    identity: Identity
    gaussians: int
    missed_frontal: int
    missed_all: int

    def to_dict(self) -> dict:
        return {"name": self.name, "identity": self.identity.to_dict(), "gaussians": self.gaussians,
                "missed_frontal": self.missed_frontal, "missed_all": self.missed_all}


def generate_subject(root: str | Path, seed: int, timesteps: int = 6, cameras: int = 12, resolution: int = 256,
                     analyzer: FaceAnalyzer | None = None, progress: Progress | None = None) -> SubjectSummary:
    """Render one subject into the folder ``root`` (created; written in place, see ``generate_dataset``).

    Writes images/TTT/cam_XX.png, masks/TTT/cam_XX.png (alpha * 255), cameras.json,
    expressions.npy ``[T, 52]`` (MediaPipe on camera 0, else the nearest detected camera, else
    zeros), deformers.npy ``[T, len(DEFORMERS)]``, deformers.json and synth.json.
    """
    root = Path(root)
    plan = subject_plan(seed, timesteps, cameras, resolution)
    identity, drawn, cams, expressions = plan.identity, plan.drawn, plan.cameras, plan.expressions
    names = [f"cam_{i:02d}" for i in range(cameras)]
    model = head_model(identity)
    order = plan.detection_order()
    codes = np.zeros((timesteps, EXPRESSION_DIM), np.float32)
    missed_frontal = missed_all = n_gauss = 0
    total, done = timesteps * cameras, 0
    for t, weights in enumerate(expressions):
        head = model.samples(weights)
        n_gauss = len(head.means)
        images = []
        for name, view in zip(names, drawn):
            rgb, mask = render_view(head, identity, view, plan.image_draws(resolution))
            for kind, array in (("images", rgb), ("masks", mask)):
                folder = root / kind / f"{t:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(folder / f"{name}.png", optimize=False)
            images.append(rgb)
            done += 1
            if progress is not None:
                progress(done, total)
        if analyzer is not None:
            for rank, i in enumerate(order):
                face = analyzer.analyze(images[i])
                if face is not None:
                    codes[t] = face.blendshapes
                    break
                missed_frontal += rank == 0
            else:
                missed_all += 1
    inputs = {name: d.input_view for name, d in zip(names, drawn)}
    (root / "cameras.json").write_text(json.dumps(cameras_to_json(dict(zip(names, cams)), inputs), indent=1) + "\n")
    np.save(root / "expressions.npy", codes)
    np.save(root / "deformers.npy", np.stack([weights_vector(w) for w in expressions]))
    (root / "deformers.json").write_text(json.dumps({"names": list(DEFORMERS)}) + "\n")
    summary = SubjectSummary(root.name, identity, n_gauss, missed_frontal, missed_all)
    meta = {"generator_version": GENERATOR_VERSION, "seed": seed, "timesteps": timesteps, "cameras": cameras,
            "resolution": resolution, "labelled": analyzer is not None, "sensor_noise": plan.noise, **summary.to_dict(),
            "camera_draws": {name: d.to_dict() for name, d in zip(names, drawn)}}
    (root / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    return summary


def _complete(folder: Path, seed: int, timesteps: int, cameras: int, resolution: int, labelled: bool) -> bool:
    try:
        meta = json.loads((folder / "synth.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    want = {"generator_version": GENERATOR_VERSION, "seed": seed, "timesteps": timesteps, "cameras": cameras,
            "resolution": resolution, "labelled": labelled}
    return all(meta.get(k) == v for k, v in want.items())


def generate_dataset(out: str | Path, subjects: int, seed: int = 0, timesteps: int = 6, cameras: int = 12,
                     resolution: int = 256, progress: Progress | None = None,
                     analyzer: FaceAnalyzer | None = None, label: bool = True,
                     shard: tuple[int, int] = (0, 1)) -> list[SubjectSummary | None]:
    """Write ``subjects`` subjects (subject_0000, ...) and dataset.json under ``out``.

    Subject i uses seed ``seed * 100003 + i``. Each subject is rendered into a temporary folder and
    renamed when complete, so an interrupted run leaves no half subject; subjects already complete
    with the same settings are skipped (their entry in the returned list is None). ``shard`` (I, N)
    renders only subjects with index % N == I, so N processes can share the work. With ``label``
    (default) expression codes come from MediaPipe, opened here unless ``analyzer`` is given.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"subject_{i:04d}" for i in range(subjects)]
    per_subject = timesteps * cameras
    total = subjects * per_subject
    results: list[SubjectSummary | None] = []
    own = None
    if label and analyzer is None:
        from avat3r_cli.preprocess.face import FaceAnalyzer

        own = analyzer = FaceAnalyzer()
        own.open()
    try:
        for i, name in enumerate(names):
            if i % shard[1] != shard[0]:
                continue
            sub_seed = seed * SUBJECT_SEED_STRIDE + i
            if _complete(out / name, sub_seed, timesteps, cameras, resolution, analyzer is not None):
                results.append(None)
                if progress is not None:
                    progress((i + 1) * per_subject, total)
                continue

            def sub_progress(done: int, _total: int, base: int = i * per_subject) -> None:
                if progress is not None:
                    progress(base + done, total)

            with atomic_output(out / name) as tmp:
                tmp.mkdir()
                results.append(generate_subject(tmp, sub_seed, timesteps, cameras, resolution, analyzer, sub_progress))
            # The summary was made under the temporary name.
            if results[-1] is not None:
                results[-1] = SubjectSummary(name, *[getattr(results[-1], k) for k in ("identity", "gaussians", "missed_frontal", "missed_all")])
                (out / name / "synth.json").write_text(json.dumps(
                    {**json.loads((out / name / "synth.json").read_text()), "name": name}, indent=1) + "\n")
    finally:
        if own is not None:
            own.close()
    write_dataset_index(out, names, generator="avat3r synth", generator_version=GENERATOR_VERSION, seed=seed,
                        timesteps=timesteps, cameras=cameras, resolution=resolution, deformers=list(DEFORMERS))
    return results

