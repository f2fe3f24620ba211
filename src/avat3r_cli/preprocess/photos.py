"""Photos to model inputs: face analysis, cameras, crops, position maps, in one head frame.

Per photo: load (EXIF-upright), find the face, solve its camera in the head frame by PnP, crop
the head square at the model's resolution, and build the position map with the chosen geometry
backend. Results are cached by the photo's content and the settings: a cached view takes the
name of the photo it is used for, an unreadable entry is recomputed (and replaced), and a cache
that cannot be written only costs the speed-up.

Letters: V views (used photos), R crop side.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avat3r_cli import __version__
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.core.expressions import EXPRESSION_DIM
from avat3r_cli.io.images import exif_focal_35mm
from avat3r_cli.io.mediapipe_assets import load_canonical_face
from avat3r_cli.io.tensors import load_tensors, save_tensors
from avat3r_cli.preprocess.crop import crop_camera, crop_photo, head_crop_box
from avat3r_cli.preprocess.face import NUM_LANDMARKS, FaceAnalyzer, analyze_photo
from avat3r_cli.preprocess.head_pose import default_focal_px, focal_from_exif_35mm, solve_camera
from avat3r_cli.preprocess.person_mask import person_masks
from avat3r_cli.preprocess.sapiens import feature_backend_name
from avat3r_cli.preprocess.template_geometry import (
    extend_to_person,
    lift_landmarks,
    render_position_map,
    template_gaussians,
)

GEOMETRY_BACKENDS = ("template", "dust3r")


@dataclass
class PhotoView:
    """One photo, prepared.

    Attributes:
        name: the photo's file name.
        image: ``uint8 [R, R, 3]`` head crop.
        positions: ``[3, R, R]`` head-frame points (metres).
        confidence: ``[1, R, R]`` in 0..1.
        K: ``[3, 3]`` crop intrinsics; world_to_cam ``[4, 4]`` (head frame to camera).
        blendshapes: ``[52]`` MediaPipe scores of the photo.
        landmarks: ``[478, 2]`` landmarks in crop pixels.
        pose: yaw, pitch, roll (degrees), distance (m) and reprojection RMS (px) of the solve.
    """

    name: str
    image: np.ndarray
    positions: torch.Tensor
    confidence: torch.Tensor
    K: torch.Tensor
    world_to_cam: torch.Tensor
    blendshapes: np.ndarray
    landmarks: np.ndarray
    pose: dict[str, float]


@dataclass
class PreparedPhotos:
    """The usable photos of one subject, with what was skipped and why."""

    views: list[PhotoView]
    resolution: int
    geometry: str
    features: str
    feature_maps: torch.Tensor | None = None  # [V, C_f, h, w] when a feature backend ran
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def stacked(self) -> dict[str, torch.Tensor]:
        """``images [V, 3, R, R]`` in 0..1, positions, confidence, K ``[V, 3, 3]``, world_to_cam, blendshapes."""
        v = self.views
        return {
            "images": torch.from_numpy(np.stack([x.image for x in v])).permute(0, 3, 1, 2).float() / 255.0,
            "positions": torch.stack([x.positions for x in v]),
            "confidence": torch.stack([x.confidence for x in v]),
            "K": torch.stack([x.K for x in v]),
            "world_to_cam": torch.stack([x.world_to_cam for x in v]),
            "blendshapes": torch.from_numpy(np.stack([x.blendshapes for x in v])),
            **({} if self.feature_maps is None else {"features": self.feature_maps}),
        }


# The packages whose code decides what a cached view holds: face analysis, cameras, crops and
# position maps (preprocess/), the rasteriser that renders the template (render/), photo loading.
_CODE_THAT_PREPARES = ("preprocess", "render", "io/images.py")


@functools.lru_cache(maxsize=1)
def preprocessing_fingerprint() -> str:
    """sha256 of the source of the code that prepares a photo (``_CODE_THAT_PREPARES``).

    Part of every cache key, so a release that changes preprocessing (a new position-map rule, a
    camera fix) never reads views its predecessor cached: the version string alone does not move
    with such changes. Read from the installed files, so a wheel and a checkout agree.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _CODE_THAT_PREPARES:
        target = root / name
        for source in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _cache_key(path: Path, resolution: int, focal_px: float | None) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):  # streamed: a huge file never sits in memory
                digest.update(chunk)
    except OSError as error:
        raise InputFileError(path, f"cannot read file ({error.strerror or error})") from None
    digest.update(json.dumps([resolution, "template", focal_px, __version__, preprocessing_fingerprint()]).encode())
    return digest.hexdigest()


_CACHED_SHAPES = {
    "image": ("R", "R", 3), "positions": (3, "R", "R"), "confidence": (1, "R", "R"), "K": (3, 3),
    "world_to_cam": (4, 4), "blendshapes": (EXPRESSION_DIM,), "landmarks": (NUM_LANDMARKS, 2),
}


def _view_to_tensors(view: PhotoView, notes: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {
        "image": torch.from_numpy(np.ascontiguousarray(view.image).copy()),
        "positions": view.positions.contiguous(),
        "confidence": view.confidence.contiguous(),
        "K": view.K,
        "world_to_cam": view.world_to_cam,
        "blendshapes": torch.from_numpy(view.blendshapes),
        "landmarks": torch.from_numpy(view.landmarks),
    }
    return tensors, {"pose": json.dumps(view.pose), "notes": json.dumps(notes)}


def _view_from_tensors(
    tensors: dict[str, torch.Tensor], meta: dict[str, str], name: str, resolution: int
) -> tuple[PhotoView, list[str]] | None:
    """The cached view, named ``name``, and its notes; None when the entry is not what it should be."""
    for key, shape in _CACHED_SHAPES.items():
        expected = tuple(resolution if d == "R" else d for d in shape)
        if key not in tensors or tuple(tensors[key].shape) != expected:
            return None
    try:
        pose, notes = json.loads(meta["pose"]), json.loads(meta.get("notes", "[]"))
    except (KeyError, ValueError, RecursionError):
        return None
    if not isinstance(pose, dict) or not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        return None
    view = PhotoView(
        name=name,
        image=tensors["image"].numpy(),
        positions=tensors["positions"],
        confidence=tensors["confidence"],
        K=tensors["K"],
        world_to_cam=tensors["world_to_cam"],
        blendshapes=tensors["blendshapes"].numpy(),
        landmarks=tensors["landmarks"].numpy(),
        pose=pose,
    )
    return view, notes


def _read_cached(entry: Path, path: Path, resolution: int) -> tuple[PhotoView, list[str]] | None:
    """The view cached in ``entry`` for the photo ``path``, with its warnings; None on a miss.

    The key is the photo's content, so the entry may have been made from a copy under another
    name: the view takes this photo's name and the warnings name this path. An unusable
    entry (truncated, foreign, from another layout) is removed, to be recomputed.
    """
    if not entry.is_file():
        return None
    try:
        cached = _view_from_tensors(*load_tensors(entry), name=path.name, resolution=resolution)
    except InputFileError:  # a fault of the cache, never of the photo
        cached = None
    if cached is None:
        try:
            entry.unlink(missing_ok=True)
        except OSError:  # a read-only cache: the entry is recomputed each time, still correct
            pass
        return None
    view, notes = cached
    return view, [f"{path}: {note}" for note in notes]


def _write_cached(entry: Path, path: Path, view: PhotoView, warnings: list[str]) -> None:
    """Store ``view`` and its warnings (without the path); a read-only or full disk only loses the speed-up."""
    prefix = f"{path}: "
    notes = [w[len(prefix):] if w.startswith(prefix) else w for w in warnings]
    try:
        save_tensors(entry, *_view_to_tensors(view, notes))
    except OSError:
        pass


def prepare_photo(
    path: Path, analyzer: FaceAnalyzer, resolution: int, focal_px: float | None = None
) -> tuple[PhotoView, list[str]]:
    """Prepare one photo with template geometry; raises InputFileError (no face, too small, unreadable)."""
    image, face, warnings = analyze_photo(path, analyzer)
    h, w = image.shape[:2]
    if focal_px is None:
        f35 = exif_focal_35mm(path)
        focal_px = focal_from_exif_35mm(f35, h, w) if f35 else default_focal_px(h, w)
    canonical = load_canonical_face()
    try:
        camera, fit = solve_camera(face.landmarks, (h, w), focal_px, canonical)
        box = head_crop_box(camera)
    except ValueError as error:
        raise InputFileError(path, f"cannot solve the head pose ({error})") from None
    crop_cam = crop_camera(camera, box, resolution)
    crop = crop_photo(image, box, resolution)
    template = template_gaussians(lift_landmarks(face.landmarks, camera, canonical), canonical)
    person = torch.from_numpy(person_masks(crop[None])[0, 0] > 0.5)
    pmap = extend_to_person(render_position_map(template, crop_cam), person, crop_cam)
    scale = resolution / box.size
    landmarks = (face.landmarks[:, :2] - np.array([box.x0, box.y0], np.float32)) * scale
    pose = {"yaw_deg": fit.yaw_deg, "pitch_deg": fit.pitch_deg, "roll_deg": fit.roll_deg,
            "distance_m": fit.distance_m, "rms_px": fit.rms_px, "focal_px": float(focal_px)}
    view = PhotoView(path.name, crop, pmap.points, pmap.confidence, crop_cam.K, crop_cam.world_to_cam,
                     face.blendshapes.astype(np.float32), landmarks.astype(np.float32), pose)
    return view, warnings


def prepare_photos(
    paths: list[Path],
    resolution: int,
    geometry: str = "template",
    features: str = "none",
    focal_px: float | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> PreparedPhotos:
    """Prepare several photos of one person; unusable photos are skipped while one remains.

    Raises Avat3rError when no photo is usable (the message lists each photo's problem).
    """
    if geometry not in GEOMETRY_BACKENDS:
        raise Avat3rError(f"--geometry {geometry!r} is not one of {', '.join(GEOMETRY_BACKENDS)}")
    features = feature_backend_name(features)
    if not paths:
        raise Avat3rError("no photos given")
    result = PreparedPhotos([], resolution, geometry, features)
    # Opened on the first photo that gets as far as face analysis (about 0.8 s), so unreadable
    # photos and cache hits never pay for it.
    analyzer = FaceAnalyzer()
    try:
        for i, path in enumerate(paths):
            path = Path(path)
            try:
                entry = None
                if cache_dir is not None and path.is_file():
                    entry = cache_dir / f"{_cache_key(path, resolution, focal_px)}.safetensors"
                cached = None if entry is None else _read_cached(entry, path, resolution)
                if cached is not None:
                    view, warnings = cached
                else:
                    view, warnings = prepare_photo(path, analyzer, resolution, focal_px)
                    if entry is not None:
                        _write_cached(entry, path, view, warnings)
                result.views.append(view)
                result.warnings += warnings
            except InputFileError as error:
                result.skipped.append((str(path), error.problem))
            if progress is not None:
                progress(i + 1, len(paths))
    finally:
        analyzer.close()
    if not result.views:
        reasons = "; ".join(f"{p}: {why}" for p, why in result.skipped)
        if len(result.skipped) == 1:
            raise InputFileError(result.skipped[0][0], result.skipped[0][1])
        raise Avat3rError(f"no usable photo ({reasons})")
    result.warnings += [f"{p}: skipped ({why})" for p, why in result.skipped]
    if geometry == "dust3r":
        _apply_dust3r(result, notice)
    if features != "none":
        _apply_sapiens(result, features, notice)
    return result


def _apply_dust3r(result: PreparedPhotos, notice: Callable[[str], None] | None) -> None:
    """Replace the template position maps by DUSt3R's, aligned to the solved cameras."""
    from avat3r_cli.core.camera import Camera
    from avat3r_cli.preprocess.dust3r import DUST3R_LICENCE_NOTICE, dust3r_position_maps, load_dust3r

    if notice is not None:
        notice(DUST3R_LICENCE_NOTICE)
    model = load_dust3r()
    r = result.resolution
    cameras = [Camera(v.K, v.world_to_cam, r, r) for v in result.views]
    crops = np.stack([v.image for v in result.views])
    positions, confidence = dust3r_position_maps(crops, cameras, model)
    for view, pos, conf in zip(result.views, positions, confidence):
        view.positions, view.confidence = pos, conf


def _apply_sapiens(result: PreparedPhotos, features: str, notice: Callable[[str], None] | None) -> None:
    """Sapiens feature maps ``[V, C_f, 64, 64]`` of the crops."""
    from avat3r_cli.preprocess.sapiens import SAPIENS_LICENCE_NOTICE, extract_features, load_sapiens

    if notice is not None:
        notice(SAPIENS_LICENCE_NOTICE)
    model = load_sapiens(features)
    crops = np.stack([v.image for v in result.views])
    result.feature_maps = extract_features(model, crops, embed_dim=model.embed_dim, out_dtype=torch.float16)
