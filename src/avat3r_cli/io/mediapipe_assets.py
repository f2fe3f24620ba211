"""The bundled MediaPipe files (Face Landmarker, selfie segmenter) and the canonical face mesh.

The ``.task`` file is a zip of TFLite models plus ``geometry_pipeline_metadata_landmarks.binarypb``,
a protobuf (GeometryPipelineMetadata) holding MediaPipe's canonical face mesh. The mediapipe
wheel no longer ships the proto classes, so the few fields needed are decoded from the wire
format here.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io.bundled import ASSETS_ENV, asset_path, restore_hint

FACE_LANDMARKER_FILE = "mediapipe/face_landmarker_v2.task"
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
SELFIE_SEGMENTER_FILE = "mediapipe/selfie_segmentation.tflite"
SELFIE_SEGMENTER_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
_GEOMETRY_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def face_landmarker_path() -> Path:
    """Path of the bundled ``face_landmarker_v2.task``, its sha256 verified (once per file state)."""
    return _verified_asset(FACE_LANDMARKER_FILE, FACE_LANDMARKER_SHA256, "MediaPipe's face model")


def selfie_segmenter_path() -> Path:
    """Path of the bundled ``selfie_segmentation.tflite`` (person vs background), sha256 verified."""
    return _verified_asset(SELFIE_SEGMENTER_FILE, SELFIE_SEGMENTER_SHA256, "MediaPipe's person segmenter")


def _verified_asset(relative: str, expected: str, what: str) -> Path:
    path = asset_path(relative)
    if not path.is_file():
        raise Avat3rError(
            f"{path}: {what} is missing; it ships with the package "
            f"({restore_hint(path)}; or set {ASSETS_ENV} to a folder that holds {relative})"
        )
    stat = path.stat()
    _verify(path, expected, stat.st_size, stat.st_mtime_ns)
    return path


@functools.lru_cache(maxsize=16)
def _verify(path: Path, expected: str, size: int, mtime_ns: int) -> None:
    # Keyed by size and mtime too: a file replaced during the process is hashed again.
    digest = sha256_of(path)
    if digest != expected:
        raise InputFileError(
            path,
            f"sha256 {digest[:12]}... does not match the expected {expected[:12]}... "
            f"(damaged or changed); {restore_hint(path)}",
        )


@dataclass(frozen=True)
class CanonicalFace:
    """MediaPipe's canonical face mesh in the head frame.

    The head frame is metric and OpenCV-like: x towards the subject's left (image right in a
    frontal view), y down, z from the face towards the back of the head; the origin is
    MediaPipe's (inside the head, about 7 cm behind the nose tip).

    Attributes:
        vertices: ``[468, 3]`` float32, metres.
        triangles: ``[898, 3]`` int64 vertex indices.
        uvs: ``[468, 2]`` float32 texture coordinates, v growing downwards like image rows.
        procrustes_ids: ``[P]`` landmark indices MediaPipe uses for its rigid head-pose fit.
        procrustes_weights: ``[P]`` float32 weights of those landmarks.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    procrustes_ids: np.ndarray
    procrustes_weights: np.ndarray


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes):
    """Yield (field number, wire type, value) of a protobuf message; value is bytes or int."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _floats(wire: int, value) -> list[float]:
    if wire == 5:
        return [struct.unpack("<f", value)[0]]
    return list(struct.unpack(f"<{len(value) // 4}f", value))  # packed


def _uints(wire: int, value) -> list[int]:
    if wire == 0:
        return [value]
    out, pos = [], 0  # packed varints
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


@functools.lru_cache(maxsize=None)
def load_canonical_face(task_path: Path | None = None) -> CanonicalFace:
    """Decode the canonical face mesh from the Face Landmarker ``.task`` file."""
    path = task_path or face_landmarker_path()
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(_GEOMETRY_MEMBER)
        vertex_buffer: list[float] = []
        index_buffer: list[int] = []
        procrustes: list[tuple[int, float]] = []
        for field, wire, value in _fields(data):
            if field == 1:  # canonical_mesh: Mesh3d
                for f, w, v in _fields(value):
                    if f == 3:
                        vertex_buffer += _floats(w, v)
                    elif f == 4:
                        index_buffer += _uints(w, v)
            elif field == 2:  # procrustes_landmark_basis: WeightedLandmarkRef
                ref = {f: (w, v) for f, w, v in _fields(value)}
                landmark = ref.get(1, (0, 0))[1]
                weight = _floats(*ref[2])[0] if 2 in ref else 0.0
                procrustes.append((int(landmark), weight))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, struct.error, IndexError) as error:
        raise InputFileError(path, f"cannot read the canonical face mesh ({error})") from None
    verts = np.asarray(vertex_buffer, dtype=np.float32).reshape(-1, 5)  # x y z u v per vertex
    if verts.shape[0] != 468 or len(index_buffer) != 898 * 3:
        raise InputFileError(path, f"unexpected canonical mesh: {verts.shape[0]} vertices, {len(index_buffer)} indices")
    # MediaPipe's frame: centimetres, y up, +z towards the viewer. Ours: metres, y down, z away.
    vertices = verts[:, :3] * np.array([0.01, -0.01, -0.01], dtype=np.float32)
    return CanonicalFace(
        vertices=vertices,
        triangles=np.asarray(index_buffer, dtype=np.int64).reshape(-1, 3),
        uvs=verts[:, 3:5].copy(),
        procrustes_ids=np.array([p[0] for p in procrustes], dtype=np.int64),
        procrustes_weights=np.array([p[1] for p in procrustes], dtype=np.float32),
    )
