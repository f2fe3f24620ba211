"""Face landmarks, blendshapes and pose cues from MediaPipe's Face Landmarker.

One ``FaceAnalyzer`` wraps one MediaPipe ``FaceLandmarker`` (the bundled, sha256-verified
``face_landmarker_v2.task``) and turns its output into a ``FaceObservation`` in pixels.
``analyze_photo`` adds the checks a user needs on a real photo: a face at all, a face large
enough to use, and a warning when several faces are present.

MediaPipe is imported lazily: importing this module costs nothing, so ``avat3r --help`` stays
light. Letters: H, W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.core.expressions import EXPRESSION_NAMES
from avat3r_cli.io.images import read_photo
from avat3r_cli.io.mediapipe_assets import face_landmarker_path
from avat3r_cli.preprocess.mediapipe_task import MediaPipeTask

NUM_LANDMARKS = 478
# Outer eye corners (subject's right, subject's left): the inter-ocular distance (IOD) used for
# size checks and error budgets, as in docs/background.md (8.9 cm on the canonical face).
IOD_LANDMARKS = (33, 263)
# Below this many pixels between the outer eye corners a face is refused. MediaPipe's landmarks
# are off by ~1-2 px whatever the face size (2.9 % of a 62 px IOD on clean renders), so at 20 px
# the error is ~10 % of the face scale and poses drift by several degrees; such a face (about
# 40 px wide) would also have to be upsampled many times into the model's crop.
MIN_IOD_PX = 20.0
# A face that size spans about twice its eye distance; a photo narrower than that cannot hold one.
MIN_SIDE_PX = 40
# MediaPipe's defaults are 0.5 / 0.5 / 0.5. Lowering the thresholds recovered some missed
# large-yaw renders (5 of 17 at 0.1, docs/background.md), all lost at the landmark
# model's presence check, not by the detector; so only presence is lowered, a little, and the
# detector threshold, which guards against faces that are not there, keeps its default.
MIN_DETECTION_CONFIDENCE = 0.5
MIN_PRESENCE_CONFIDENCE = 0.4
MIN_TRACKING_CONFIDENCE = 0.5
MAX_FACES = 4
# Forehead top and chin of the canonical mesh: their direction says which way up the face is.
FOREHEAD_CHIN_LANDMARKS = (10, 152)
# A face turned further than this from upright in the image is reported: usually a photo whose
# orientation was lost (no EXIF) or a sideways shot; it is still used as it is.
MAX_UPRIGHT_DEG = 60.0


@dataclass
class FaceObservation:
    """What MediaPipe sees of the largest face in one image.

    Attributes:
        landmarks: ``[478, 3]`` float32. x, y in pixels of the analysed image (continuous
            coordinates: the image spans 0..W and 0..H, pixel centres at integer + 0.5, as in
            ``Camera``). z is MediaPipe's relative depth (origin near the head centre, negative
            towards the camera), which MediaPipe scales like x; multiplied by the width of the
            image (or unscaled window) it ran on, it is in the same pixel units as x, not metric. The first 468 follow the canonical mesh; 468..477 are the irises.
        blendshapes: ``[52]`` float32 scores in 0..1, in ``EXPRESSION_NAMES`` order.
        mediapipe_transform: ``[4, 4]`` float32 MediaPipe's facial transformation matrix
            (centimetres, its own ~63 degree camera); kept for reference only, cameras come from
            ``head_pose.solve_camera``.
        bbox: ``(x0, y0, x1, y1)`` pixels, the landmarks' bounding box.
        image_size: ``(H, W)`` of the analysed image.
        num_faces: how many faces MediaPipe found (the largest one is described here).
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    mediapipe_transform: np.ndarray
    bbox: tuple[float, float, float, float]
    image_size: tuple[int, int]
    num_faces: int

    @property
    def iod_px(self) -> float:
        """Distance in pixels between the outer eye corners (landmarks 33 and 263)."""
        a, b = IOD_LANDMARKS
        return float(np.linalg.norm(self.landmarks[a, :2] - self.landmarks[b, :2]))

    def expression(self) -> dict[str, float]:
        """The blendshape scores by name."""
        return {name: float(score) for name, score in zip(EXPRESSION_NAMES, self.blendshapes)}


class AnalyzedPhoto(NamedTuple):
    """``analyze_photo``'s result: the photo ``uint8 [H, W, 3]``, its face and user-facing warnings."""

    image: np.ndarray
    face: FaceObservation
    warnings: list[str]


def _check_image(image: np.ndarray) -> np.ndarray:
    """A C-contiguous ``uint8 [H, W, 3]`` view of ``image``, or ValueError."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] RGB image, got {image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(image)


class FaceAnalyzer(MediaPipeTask):
    """MediaPipe Face Landmarker with blendshapes, as a context manager.

    ``with FaceAnalyzer() as analyzer: face = analyzer.analyze(image)``. With ``video=True`` the
    landmarker runs in VIDEO mode (it tracks between frames) and frames go through
    ``detect_frame(image, timestamp_ms)`` with increasing timestamps; ``analyze`` is for IMAGE
    mode only. Up to ``max_faces`` faces are detected so that the largest one can be chosen.
    """

    purpose = "face analysis"

    def __init__(
        self,
        video: bool = False,
        max_faces: int = MAX_FACES,
        min_detection_confidence: float = MIN_DETECTION_CONFIDENCE,
        min_presence_confidence: float = MIN_PRESENCE_CONFIDENCE,
        model_path: str | Path | None = None,
    ) -> None:
        self.video = video
        self.max_faces = max_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.model_path = Path(model_path) if model_path is not None else None
        super().__init__()

    def __enter__(self) -> FaceAnalyzer:
        self.open()
        return self

    def _create(self, BaseOptions: Any, vision: Any) -> Any:
        """The Face Landmarker (about 0.8 s to create)."""
        path = self.model_path or face_landmarker_path()
        mode = vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=mode,
            num_faces=self.max_faces,
            min_face_detection_confidence=self.min_detection_confidence,
            min_face_presence_confidence=self.min_presence_confidence,
            min_tracking_confidence=MIN_TRACKING_CONFIDENCE,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        return vision.FaceLandmarker.create_from_options(options)

    def analyze(self, image: np.ndarray, windows: bool = True) -> FaceObservation | None:
        """The largest face in ``image`` (``uint8 [H, W, 3]`` RGB), or None when there is none.

        MediaPipe's face detector sees the whole image squeezed into 128 x 128 pixels, so a face
        narrower than about a tenth of the image's long side is missed (the 512 px astronaut
        photo padded to 896 px wide already is). When the whole image gives nothing, overlapping
        square windows as large as the short side are searched and their faces mapped back. Faces
        smaller than that relative to the short side stay unfound: searching smaller windows
        also turned up occluded profile faces (the cameraman in skimage's ``camera()``).
        ``windows=False`` looks at the whole image only.
        """
        if self.video:
            raise ValueError("this FaceAnalyzer runs in video mode: use detect_frame(image, timestamp_ms)")
        image = self._require(image)
        faces = self._detect(image, 0, 0, image.shape[:2])
        if not faces and windows:
            faces = self._detect_in_windows(image)
        return _pick_largest(faces)

    def detect_frame(self, image: np.ndarray, timestamp_ms: int) -> FaceObservation | None:
        """VIDEO mode: the largest face in one frame; ``timestamp_ms`` must increase frame to frame."""
        if not self.video:
            raise ValueError("detect_frame needs FaceAnalyzer(video=True); use analyze for single images")
        image = self._require(image)
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=image)
        result = self._task.detect_for_video(mp_image, int(timestamp_ms))
        return _pick_largest(_faces(result, image.shape[:2], image.shape[:2], 0, 0))

    def _require(self, image: np.ndarray) -> np.ndarray:
        if self._task is None:
            self.open()
        return _check_image(image)

    def _detect(
        self, window: np.ndarray, x0: int, y0: int, image_size: tuple[int, int]
    ) -> list[FaceObservation]:
        """Faces in ``window`` (at ``(x0, y0)`` of an image of ``image_size``), in image pixels."""
        result = self._task.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=window))
        return _faces(result, window.shape[:2], image_size, x0, y0)

    def _detect_in_windows(self, image: np.ndarray) -> list[FaceObservation]:
        """Faces in overlapping square windows as tall (or wide) as the image's short side."""
        height, width = image.shape[:2]
        side = min(height, width)
        if side == max(height, width):
            return []  # a square image is its own window, already searched
        step = max(1, side // 2)
        ys = sorted({*range(0, height - side + 1, step), height - side})
        xs = sorted({*range(0, width - side + 1, step), width - side})
        found: list[tuple[float, FaceObservation]] = []
        for y in ys:
            for x in xs:
                window = np.ascontiguousarray(image[y : y + side, x : x + side])
                for face in self._detect(window, x, y, (height, width)):
                    # Of a face seen in two windows, keep the copy farthest from its window's edges.
                    x0, y0, x1, y1 = face.bbox
                    found.append((min(x0 - x, y0 - y, x + side - x1, y + side - y1), face))
        unique: list[FaceObservation] = []
        for _, face in sorted(found, key=lambda item: -item[0]):
            if all(_iou(face.bbox, kept.bbox) < 0.3 for kept in unique):
                unique.append(face)
        return unique


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _pick_largest(faces: list[FaceObservation]) -> FaceObservation | None:
    """The face with the largest landmark bounding box, ``num_faces`` set to how many there were."""
    if not faces:
        return None
    best = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
    best.num_faces = len(faces)
    return best


def _faces(
    result: Any, window_size: tuple[int, int], image_size: tuple[int, int], x0: int, y0: int
) -> list[FaceObservation]:
    """MediaPipe's faces in a window at ``(x0, y0)`` of size ``window_size`` (H, W), in image pixels."""
    height, width = int(window_size[0]), int(window_size[1])
    out = []
    for k, face in enumerate(result.face_landmarks or []):
        # z: MediaPipe scales it like x (by the width of the image it saw), so this is pixels too.
        points = np.array(
            [(p.x * width + x0, p.y * height + y0, p.z * width) for p in face], dtype=np.float32
        )
        if points.shape != (NUM_LANDMARKS, 3):
            raise Avat3rError(f"MediaPipe returned {points.shape[0]} landmarks, expected {NUM_LANDMARKS}")
        categories = result.face_blendshapes[k] if result.face_blendshapes else []
        names = tuple(c.category_name for c in categories)
        if names != EXPRESSION_NAMES:
            # The expression space is defined by these names in this order; a different model
            # would silently scramble every code, so refuse instead.
            raise Avat3rError(
                f"MediaPipe's blendshape names do not match the expression space "
                f"({len(names)} names, first mismatch at {_first_mismatch(names)}); wrong face model?"
            )
        matrices = result.facial_transformation_matrixes
        transform = np.eye(4, dtype=np.float32)
        if matrices:
            transform = np.asarray(matrices[k], dtype=np.float32).reshape(4, 4)
        lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        out.append(
            FaceObservation(
                landmarks=points,
                blendshapes=np.array([c.score for c in categories], dtype=np.float32),
                mediapipe_transform=transform,
                bbox=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                image_size=(int(image_size[0]), int(image_size[1])),
                num_faces=1,
            )
        )
    return out


def _first_mismatch(names: tuple[str, ...]) -> str:
    for i, expected in enumerate(EXPRESSION_NAMES):
        if i >= len(names) or names[i] != expected:
            got = names[i] if i < len(names) else "nothing"
            return f"index {i}: {got!r} instead of {expected!r}"
    return f"index {len(EXPRESSION_NAMES)}: extra names"


def face_rotation_deg(face: FaceObservation) -> float:
    """How far the face is turned in the image plane from upright, degrees in -180..180.

    0 when the chin is straight below the forehead, +-180 upside down; positive is clockwise on
    screen (y points down).
    """
    top, chin = FOREHEAD_CHIN_LANDMARKS
    dx, dy = (face.landmarks[chin, :2] - face.landmarks[top, :2]).astype(np.float64)
    return float(np.degrees(np.arctan2(-dx, dy)))


def _turn_hint(analyzer: FaceAnalyzer, image: np.ndarray) -> str:
    """Where no face is found: whether an upright one appears with the photo turned, as a hint.

    MediaPipe misses faces far from upright (an upside-down photo, usually a lost EXIF
    orientation). Only a face that is upright and large enough in the turned image counts:
    turned textures also give MediaPipe faces, but at odd angles.
    """
    for quarter_turns, how in ((2, "180 degrees"), (1, "90 degrees counter-clockwise"), (3, "90 degrees clockwise")):
        face = analyzer.analyze(np.ascontiguousarray(np.rot90(image, quarter_turns)), windows=False)
        if face is not None and abs(face_rotation_deg(face)) <= 45.0 and face.iod_px >= MIN_IOD_PX:
            return f" upright, but there is one with the photo turned {how}: rotate it (or fix its EXIF orientation)"
    return ""


def analyze_photo(path: str | Path, analyzer: FaceAnalyzer, min_iod_px: float = MIN_IOD_PX) -> AnalyzedPhoto:
    """Load a photo and find its face: ``(image uint8 [H, W, 3], FaceObservation, warnings)``.

    Raises InputFileError naming the file when it cannot be read, when no face is found, or when
    the face is too small to use (fewer than ``min_iod_px`` pixels between the outer eye corners,
    measured in the loaded image, which ``read_photo`` caps at 2048 px; or an image under
    ``MIN_SIDE_PX`` on a side). Several faces, a face
    turned sideways or upside down, and an animated file's first frame are not errors: the
    photo is used and a warning says so.
    """
    photo = read_photo(path)
    image, warnings = photo.image, list(photo.warnings)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE_PX:
        # No usable face fits, and the window search would try thousands of slivers.
        raise InputFileError(
            path, f"image is {width}x{height} pixels, too small to hold a usable face (at least {MIN_SIDE_PX} px a side)"
        )
    face = analyzer.analyze(image)
    if face is None:
        raise InputFileError(path, "no face found" + _turn_hint(analyzer, image))
    iod = face.iod_px
    if iod < min_iod_px:
        raise InputFileError(
            path, f"face too small to use ({iod:.0f} px between the eyes; at least {min_iod_px:.0f} needed)"
        )
    if face.num_faces > 1:
        warnings.append(f"{path}: several faces ({face.num_faces}): using the largest")
    turned = face_rotation_deg(face)
    if abs(turned) > MAX_UPRIGHT_DEG:
        how = "upside down" if abs(turned) > 135.0 else "sideways"
        warnings.append(
            f"{path}: the face is {how} in the photo (turned {abs(turned):.0f} degrees); "
            "check the photo's orientation (using it as it is)"
        )
    return AnalyzedPhoto(image, face, warnings)
