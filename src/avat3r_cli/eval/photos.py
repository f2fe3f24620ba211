"""Leave-one-out evaluation on a user's own photos (``avat3r evaluate --photos ... --leave-one-out``).

Protocol, for N usable photos of one person:

* Every photo is preprocessed once (face analysis, camera, crop, position map, as ``create``
  does; the results are cached on disk). Cameras are solved per photo against the same canonical
  face, so all of them live in one head frame and photo k's camera is known without photo k
  being an input.
* For each k: the avatar is made from the other N-1 photos exactly as ``create`` makes it
  (``bundle_from_prepared``, ``Avatar``, optional ``refine_avatar``; geometry and features as
  the model expects), rendered at photo k's camera with photo k's own expression code, and
  compared with photo k's head crop.
* The crop resolution R of the comparison is an option (default the model's image size): the
  held-out photo is cropped at R from the original image and the render is made at R, so a
  model with larger crops can be measured on the same footing.
* Both sides are composited over white outside their silhouettes: the photo by its person mask
  (MediaPipe's selfie segmenter: hair, beard and shoulders included, as refinement mats its
  targets), the render by its alpha. Metrics: ``eval/photo_metrics.py`` (PSNR and SSIM inside the face hull and over the
  crop, AKD at 512², whether a face is found, jawOpen / smile / blink read on both).
* Baseline ``nearest-view``: the other photo whose camera sees the head from the nearest
  direction (the unit vector from the head centre to the camera centre), its crop composited
  the same way and otherwise unchanged.

Letters: N photos, R crop side.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avat3r_cli.core.camera import Camera
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.runtime import resolve_device
from avat3r_cli.eval.evaluate import camera_centers
from avat3r_cli.eval.metrics import mean_finite
from avat3r_cli.eval.photo_metrics import READ_GROUPS, FaceReading, ImageScore, face_mask, read_face, score_image
from avat3r_cli.io.weights import ModelInfo
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.pipeline.avatar import Avatar, resolve_weights_spec
from avat3r_cli.pipeline.create import MAX_REFINE, bundle_from_prepared
from avat3r_cli.pipeline.models import load_avat3r
from avat3r_cli.pipeline.preprocess import default_cache_dir
from avat3r_cli.pipeline.refine import refine_avatar
from avat3r_cli.preprocess.face import FaceAnalyzer
from avat3r_cli.preprocess.person_mask import person_masks
from avat3r_cli.preprocess.photos import PhotoView, PreparedPhotos, prepare_photos
from avat3r_cli.preprocess.sapiens import check_feature_backend
from avat3r_cli.render.api import render
from avat3r_cli.train.step import composite_targets

METHODS = ("avat3r", "nearest-view")
MIN_RESOLUTION, MAX_RESOLUTION = 32, 1024
BACKGROUND = (1.0, 1.0, 1.0)

Progress = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)``, first with ``done = 0`` when a stage starts."""


@dataclass
class PhotoResult:
    """One method on one held-out photo.

    Attributes:
        photo: the held-out photo's file name.
        method: ``avat3r`` or ``nearest-view``.
        score: the metrics.
        inputs: the photos the prediction came from (the others; nearest-view: the one it shows).
    """

    photo: str
    method: str
    score: ImageScore
    inputs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.photo, "method": self.method, **asdict(self.score), "inputs": list(self.inputs)}


@dataclass
class MethodSummary:
    """One method over all held-out photos.

    Attributes:
        method: the method.
        num_photos: held-out photos scored.
        psnr_face, ssim_face, psnr_crop, ssim_crop: means over the photos.
        akd_px512: mean over the photos where a face was read on both sides.
        face_found: how many of the images had a face MediaPipe could find.
        expression_error: per group, mean |read - photo| over the photos read on both sides.
    """

    method: str
    num_photos: int
    psnr_face: float | None
    ssim_face: float | None
    psnr_crop: float | None
    ssim_crop: float | None
    akd_px512: float | None
    face_found: int
    expression_error: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {"photo": "all", **asdict(self)}


@dataclass
class HeldOutImages:
    """What was compared for one held-out photo, each ``[3, R, R]`` in 0..1 (for contact sheets)."""

    photo: str
    target: torch.Tensor
    render: torch.Tensor
    nearest: torch.Tensor
    nearest_photo: str


@dataclass
class PhotoEvaluation:
    """Everything ``evaluate_photos`` measured.

    Attributes:
        results: one per (photo, method), photo-major.
        summaries: one per method.
        images: one per held-out photo.
        used: the photos that were evaluated; skipped: ``(photo, reason)`` for the others.
        warnings: preprocessing warnings.
        resolution: R; model: the model's name; refine: fitting steps per avatar.
        device, seconds: where and how long.
    """

    results: list[PhotoResult]
    summaries: list[MethodSummary]
    images: list[HeldOutImages]
    used: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    resolution: int = 0
    model: str = ""
    refine: int = 0
    device: str = "cpu"
    seconds: float = 0.0


def view_directions(world_to_cam: torch.Tensor) -> torch.Tensor:
    """``[N, 4, 4]`` -> ``[N, 3]`` unit vectors from the head centre (the origin) to each camera centre."""
    centres = camera_centers(world_to_cam)
    return centres / centres.norm(dim=1, keepdim=True).clamp(min=1e-12)


def nearest_view(k: int, directions: torch.Tensor) -> int:
    """The index (not ``k``) of the direction ``[N, 3]`` closest in angle to direction ``k``."""
    cos = directions @ directions[k]
    cos[k] = -float("inf")
    return int(cos.argmax())


def matted_crop(view: PhotoView, mask: torch.Tensor, background: tuple[float, float, float] = BACKGROUND) -> torch.Tensor:
    """``[3, R, R]``: the crop in 0..1 over ``background`` by ``mask [1, R, R]`` (the person mask)."""
    image = torch.tensor(view.image).permute(2, 0, 1).float() / 255.0
    return composite_targets(image[None], mask[None].to(image), torch.tensor(background))[0]


def matted_crops(views: list[PhotoView]) -> list[torch.Tensor]:
    """``[3, R, R]`` per view: each crop matted by its own person mask (``matted_crop``)."""
    masks = torch.from_numpy(person_masks(np.stack([v.image for v in views])))
    return [matted_crop(v, m) for v, m in zip(views, masks)]


def make_avatar(model: Avat3r, info: ModelInfo, prepared: PreparedPhotos, device: torch.device, refine: int = 0) -> Avatar:
    """The avatar ``create`` makes from ``prepared`` (encoded; refined for ``refine`` steps when > 0)."""
    avatar = Avatar(model, info, bundle_from_prepared(prepared, info, model.config.confidence_threshold), device)
    avatar.encode()
    if refine:
        avatar.set_residuals(refine_avatar(avatar, refine).residuals)
    return avatar


def _check_arguments(paths: list[Path], refine: int, resolution: int | None) -> None:
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE:
        raise Avat3rError(f"--refine must be a whole number in 0..{MAX_REFINE}, got {refine!r}")
    if resolution is not None and not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise Avat3rError(f"--resolution must be in {MIN_RESOLUTION}..{MAX_RESOLUTION}, got {resolution}")
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise Avat3rError(f"{path}: given twice (as {seen[key]}); leave-one-out needs each photo once")
        seen[key] = path


def evaluate_photos(
    photos: list[str | Path],
    weights: str | None = None,
    refine: int = 0,
    resolution: int | None = None,
    device: str = "auto",
    use_cache: bool = True,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
) -> PhotoEvaluation:
    """Leave-one-out scores of the model and the nearest-view baseline on ``photos`` (module docstring).

    Args:
        photos: photos of one person; at least two must be usable.
        weights: a weights spec; default the bundled model (as ``create``).
        refine: test-time fitting steps per leave-one-out avatar (as ``create --refine``).
        resolution: R of the comparison crops (default the model's image size).
        device: ``auto|cpu|cuda[:i]|mps``.
        use_cache: keep preprocessing results in the user's cache (else in a temporary folder).
        progress: ``progress(stage, done, total)``; notice: one-line messages (licences).

    Raises:
        Avat3rError: bad arguments, missing weights, fewer than two usable photos.
    """
    start = time.perf_counter()
    paths = [Path(p) for p in photos]
    _check_arguments(paths, refine, resolution)
    stage = progress or (lambda name, done, total: None)
    said: set[str] = set()

    def say_once(line: str) -> None:  # a licence notice once, not once per leave-one-out subset
        if notice is not None and line not in said:
            said.add(line)
            notice(line)

    dev = resolve_device(device)
    model, info = load_avat3r(resolve_weights_spec(weights), dev)
    cfg = model.config
    features = check_feature_backend(cfg.feature_backend, cfg.feature_backend)
    r = resolution or cfg.input_size
    with tempfile.TemporaryDirectory(prefix="avat3r-evaluate-") as scratch:
        # Subsets are re-prepared through the cache: only the DUSt3R or Sapiens stages run again.
        cache = default_cache_dir() if use_cache else Path(scratch)
        stage("Preprocessing", 0, len(paths))
        base = prepare_photos(paths, cfg.input_size, cache_dir=cache,
                              progress=lambda done, total: stage("Preprocessing", done, total))
        skipped = {p for p, _ in base.skipped}
        used = [p for p in paths if str(p) not in skipped]
        if len(used) < 2:
            why = "; ".join(f"{p}: {reason}" for p, reason in base.skipped)
            raise Avat3rError(f"leave-one-out needs at least two usable photos, got {len(used)}"
                              + (f" (skipped: {why})" if why else ""))
        targets = base.views if r == cfg.input_size else prepare_photos(used, r, cache_dir=cache).views
        if [v.name for v in targets] != [v.name for v in base.views]:
            raise Avat3rError(f"the photos prepared at {r}² differ from those at {cfg.input_size}²")
        names = [v.name for v in targets]
        directions = view_directions(torch.stack([v.world_to_cam for v in targets]))
        crops = matted_crops(targets)
        results, images = [], []
        stage("Leave-one-out", 0, len(used))
        with FaceAnalyzer() as analyzer:
            readings: dict[int, FaceReading | None] = {}

            def reading(i: int) -> FaceReading | None:
                if i not in readings:
                    readings[i] = read_face(analyzer, crops[i])
                return readings[i]

            for k, held_out in enumerate(targets):
                others = [i for i in range(len(used)) if i != k]
                # As `create` on the other photos: the cache holds their per-photo preprocessing.
                subset = prepare_photos([used[i] for i in others], cfg.input_size, geometry=cfg.geometry_backend,
                                        features=features, cache_dir=cache, notice=say_once)
                avatar = make_avatar(model, info, subset, dev, refine)
                cam = Camera(held_out.K, held_out.world_to_cam, r, r)
                image = render(avatar.gaussians_at(base.views[k].blendshapes), cam, BACKGROUND).image.clamp(0, 1).cpu()
                j = nearest_view(k, directions)
                mask = face_mask(held_out.landmarks, r)
                own = score_image(image, crops[k], mask, read_face(analyzer, image), reading(k))
                results.append(PhotoResult(names[k], "avat3r", own, [names[i] for i in others]))
                baseline = score_image(crops[j], crops[k], mask, reading(j), reading(k))
                results.append(PhotoResult(names[k], "nearest-view", baseline, [names[j]]))
                images.append(HeldOutImages(names[k], crops[k], image, crops[j], names[j]))
                stage("Leave-one-out", k + 1, len(used))
    return PhotoEvaluation(
        results=results, summaries=[summarize(m, results) for m in METHODS], images=images,
        used=names, skipped=list(base.skipped), warnings=list(base.warnings), resolution=r, model=info.name,
        refine=refine, device=str(dev), seconds=time.perf_counter() - start,
    )


def summarize(method: str, results: list[PhotoResult]) -> MethodSummary:
    """The ``method``'s rows of ``results`` averaged (see ``MethodSummary``)."""
    rows = [r.score for r in results if r.method == method]
    errors = {}
    for g in READ_GROUPS:
        pairs = [s.expression[g] for s in rows]
        errors[g] = mean_finite([abs(p["read"] - p["photo"]) for p in pairs if p["read"] is not None and p["photo"] is not None])
    return MethodSummary(
        method=method, num_photos=len(rows),
        psnr_face=mean_finite([s.psnr_face for s in rows]), ssim_face=mean_finite([s.ssim_face for s in rows]),
        psnr_crop=mean_finite([s.psnr_crop for s in rows]), ssim_crop=mean_finite([s.ssim_crop for s in rows]),
        akd_px512=mean_finite([s.akd_px512 for s in rows]), face_found=sum(s.face_found for s in rows),
        expression_error=errors,
    )
