"""Expression and head-pose files that drive ``animate``: readers with precise errors, writers.

Letters: T frames, E = 52 expression dimensions (``core/expressions.py`` order).

Expression files (``read_expressions``), chosen by suffix:

- ``.npy``: a numeric ``[T, 52]`` array (``np.save``; loaded with ``allow_pickle=False``, so an
  object array is refused, never unpickled).
- ``.csv``: a header row of names, then one row per frame. Names are matched to the 52 names
  case-insensitively, so Live Link Face's ``EyeBlinkLeft`` is ``eyeBlinkLeft``. The other
  standard columns of a Live Link Face export (``Timecode``, ``BlendShapeCount``, the head and
  eye rotations) are ignored quietly, and so is ``TongueOut`` (no such channel here) unless it
  is ever non-zero; any other unknown column is ignored with one warning. Missing names are 0 (a
  warning lists them, except ``_neutral``, which ARKit lacks).
- ``.json``: a list of frames, or an object whose ``"frames"`` holds that list (other keys such as
  ``"fps"`` are allowed). A frame is a list of 52 numbers, or an object ``{name: score}``
  (matched like CSV columns). With a top-level ``"names"`` list, list frames follow its order
  instead (matched like CSV columns).

Pose files (``read_poses``): ``.npy`` float ``[T, 4, 4]`` rigid head motion relative to the first
frame, in the head frame (metres), as ``avat3r track --pose`` writes it (see ``pipeline/track.py``):
``pose[t]`` moves a head point at frame 0 to where it is at frame t, so frame t is rendered with
``world_to_cam @ pose[t]`` (the camera moves inversely around the still avatar). ``pose[0]``
should be the identity; T must equal the expression file's T.

Every problem raises ``InputFileError`` naming the file, so the CLI prints one line: that
includes what the parsers themselves refuse (over-long CSV fields, JSON nested thousands deep or
holding a 400-digit number, a ``.npy`` header promising more data than the file holds).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from avat3r_cli.core.errors import InputFileError, input_file_errors
from avat3r_cli.core.expressions import EXPRESSION_DIM, EXPRESSION_INDEX, EXPRESSION_NAMES
from avat3r_cli.io.atomic import atomic_output

EXPRESSION_SUFFIXES = (".npy", ".csv", ".json")
_BY_LOWER = {name.lower(): i for name, i in EXPRESSION_INDEX.items()}
_RIGID_TOL = 1e-3  # float32 poses from tracking are orthonormal to ~1e-6; this allows rounding
_LIST_LIMIT = 6
# Live Link Face writes these beside the 52 ARKit blendshapes; none is an expression channel.
_LIVE_LINK_EXTRAS = frozenset(
    name.lower()
    for name in (
        "Timecode", "BlendShapeCount", "HeadYaw", "HeadPitch", "HeadRoll",
        "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
    )
)
# ARKit's 52nd blendshape; MediaPipe's space has _neutral instead. Warned about only when used.
_TONGUE = "tongueout"


def _short(items: list[str]) -> str:
    more = f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return ", ".join(items[:_LIST_LIMIT]) + more


def _npy_header(path: Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, checked against the file's size before any load."""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic.startswith(b"PK\x03\x04"):
            raise InputFileError(path, f"is an .npz archive; save one {what} array with np.save")
        # np.load treats any file without the .npy magic as a pickle; say what it really is.
        if magic != b"\x93NUMPY":
            raise InputFileError(path, f"not a readable .npy file (no NumPy header); save a float {what} array with np.save")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
        except Exception as exc:  # numpy evaluates the header text; a forged one fails in many ways
            raise InputFileError(path, f"not a readable .npy file (bad header: {str(exc)[:120] or type(exc).__name__})") from None
        data_bytes = path.stat().st_size - f.tell()
    if any(d < 0 for d in shape):
        raise InputFileError(path, f"not a readable .npy file (bad header: shape {list(shape)})")
    if dtype.hasobject:
        raise InputFileError(path, f"holds Python objects (a pickle); refusing to load it (save a float {what} array)")
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise InputFileError(path, f"holds {dtype} values; expected a float {what} array")
    needed = math.prod(shape) * dtype.itemsize
    if needed > data_bytes:
        raise InputFileError(
            path, f"is truncated: its header promises shape {list(shape)} ({needed:,} bytes) but it holds {data_bytes:,}"
        )
    return shape, dtype


def _load_npy(path: Path, what: str) -> np.ndarray:
    """``np.load`` without pickles, after checking the header; every failure is one InputFileError."""
    if not path.is_file():
        raise InputFileError(path, "no such file" if not path.exists() else "is not a file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty")
    _npy_header(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except MemoryError:
        raise InputFileError(path, "is too large to load (out of memory)") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(path, f"not a readable .npy file ({exc})") from None
    return array


def _check_codes(path: Path, codes: np.ndarray) -> np.ndarray:
    """Shape ``[T, 52]``, T >= 1, finite; returns float32."""
    if codes.ndim != 2 or codes.shape[1] != EXPRESSION_DIM:
        raise InputFileError(path, f"expression array has shape {list(codes.shape)}, expected [T, {EXPRESSION_DIM}]")
    if codes.shape[0] == 0:
        raise InputFileError(path, "holds no frames (T = 0)")
    bad = ~np.isfinite(codes)
    if bad.any():
        frame, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputFileError(
            path, f"{int(bad.sum())} NaN/infinite value(s), first at frame {frame} ({EXPRESSION_NAMES[col]})"
        )
    return codes.astype(np.float32)


def _range_warning(path: Path, codes: np.ndarray) -> list[str]:
    lo, hi = float(codes.min()), float(codes.max())
    if lo < -0.01 or hi > 1.01:  # a little slack for filters that overshoot
        return [f"{path}: scores span {lo:.2f}..{hi:.2f}; the model was trained on 0..1 (results may look odd)"]
    return []


def _column_map(path: Path, names: list[str]) -> tuple[list[int | None], list[str]]:
    """For each name its expression index (None = unknown), and the warnings to print."""
    index: list[int | None] = [_BY_LOWER.get(str(n).strip().lower()) for n in names]
    warnings: list[str] = []
    quiet = _LIVE_LINK_EXTRAS | {_TONGUE}
    unknown = [str(n).strip() for n, i in zip(names, index) if i is None and str(n).strip().lower() not in quiet]
    if unknown:
        warnings.append(f"{path}: ignoring {len(unknown)} column(s) that are not expression names: {_short(unknown)}")
    if all(i is None for i in index):
        raise InputFileError(path, f"none of its columns is an expression name (e.g. jawOpen, eyeBlinkLeft); got {_short([str(n) for n in names])}")
    found = {i for i in index if i is not None}
    dup = [EXPRESSION_NAMES[i] for i in found if index.count(i) > 1]
    if dup:
        raise InputFileError(path, f"column(s) given twice: {_short(dup)}")
    missing = [n for i, n in enumerate(EXPRESSION_NAMES) if i not in found and n != "_neutral"]
    if missing:
        warnings.append(f"{path}: {len(missing)} expression(s) missing, set to 0: {_short(missing)}")
    return index, warnings


def _tongue_warning(path: Path, used: bool) -> list[str]:
    if not used:
        return []
    return [f"{path}: ignoring TongueOut: the expression space (MediaPipe's) has no tongue channel"]


def _read_csv(path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel writes a BOM
    except UnicodeDecodeError:
        raise InputFileError(path, "is not a UTF-8 text CSV file") from None
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [r for r in reader if any(cell.strip() for cell in r)]
    except csv.Error as exc:  # a field over the csv module's size limit, a NUL byte, ...
        raise InputFileError(path, f"not a readable CSV file (line {reader.line_num}: {exc})") from None
    if not rows:
        raise InputFileError(path, "is empty")
    header, body = rows[0], rows[1:]
    if not body:
        raise InputFileError(path, "has a header but no frames")
    index, warnings = _column_map(path, header)
    tongue = [c for c, name in enumerate(header) if name.strip().lower() == _TONGUE]
    tongue_used = False
    codes = np.zeros((len(body), EXPRESSION_DIM), np.float64)
    for r, row in enumerate(body):
        line = r + 2  # 1-based, after the header
        if len(row) != len(header):
            raise InputFileError(path, f"line {line} has {len(row)} fields, the header has {len(header)}")
        for c, i in enumerate(index):
            if i is None and c not in tongue:
                continue
            try:
                value = float(row[c])
            except ValueError:
                raise InputFileError(path, f"line {line}, column {header[c].strip()}: {row[c][:40]!r} is not a number") from None
            if i is None:
                tongue_used |= value != 0.0
            else:
                codes[r, i] = value
    return codes, warnings + _tongue_warning(path, tongue_used)


def _number(path: Path, value: Any, where: str) -> float:
    # bool is an int in Python, but true/false in an expression file is a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputFileError(path, f"{where}: {json.dumps(value)[:40]} is not a number")
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise InputFileError(path, f"{where}: {str(value)[:20]}... is too large a number") from None


def _read_json(path: Path) -> tuple[np.ndarray, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(path, "is not a UTF-8 JSON file") from None
    if not text.strip():
        raise InputFileError(path, "is empty")
    try:
        # NaN/Infinity are not JSON; parse_constant turns them into a clear error below.
        data = json.loads(text, parse_constant=lambda c: math.nan)
    except RecursionError:
        raise InputFileError(path, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, or an integer longer than Python converts
        raise InputFileError(path, f"not valid JSON ({str(exc)[:160]})") from None
    names = None
    if isinstance(data, dict):
        names = data.get("names")
        if "frames" not in data:
            raise InputFileError(path, 'expected a list of frames or an object with "frames"')
        data = data["frames"]
    if not isinstance(data, list):
        raise InputFileError(path, '"frames" must be a list')
    if not data:
        raise InputFileError(path, "holds no frames")
    warnings: list[str] = []
    codes = np.zeros((len(data), EXPRESSION_DIM), np.float64)
    if all(isinstance(f, dict) for f in data):
        keys = list(dict.fromkeys(k for f in data for k in f))
        index, warnings = _column_map(path, keys)
        lookup = dict(zip(keys, index))
        tongue_used = False
        for t, frame in enumerate(data):
            for k, v in frame.items():
                if lookup[k] is not None:
                    codes[t, lookup[k]] = _number(path, v, f"frame {t}, {k}")
                elif k.strip().lower() == _TONGUE:
                    tongue_used |= _number(path, v, f"frame {t}, {k}") != 0.0
        return codes, warnings + _tongue_warning(path, tongue_used)
    if not all(isinstance(f, list) for f in data):
        raise InputFileError(path, "frames must all be lists of numbers or all be {name: score} objects")
    index: list[int | None] = list(range(EXPRESSION_DIM))
    if names is not None:
        if not isinstance(names, list):
            raise InputFileError(path, '"names" must be a list of expression names')
        index, warnings = _column_map(path, names)
    tongue = {c for c, name in enumerate(names or []) if str(name).strip().lower() == _TONGUE}
    tongue_used = False
    for t, frame in enumerate(data):
        if len(frame) != len(index):
            raise InputFileError(path, f"frame {t} has {len(frame)} values, expected {len(index)}")
        for c, i in enumerate(index):
            value = _number(path, frame[c], f"frame {t}, value {c}")
            if i is not None:
                codes[t, i] = value
            elif c in tongue:
                tongue_used |= value != 0.0
    return codes, warnings + _tongue_warning(path, tongue_used)


def read_expressions(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Expression codes ``[T, 52]`` float32 from a .npy, .csv or .json file (module docstring).

    Returns:
        (codes, warnings): warnings are one-line messages for the user (ignored columns, ...).

    Raises:
        InputFileError: missing, empty, pickled, wrong shape, NaN/inf, unparsable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPRESSION_SUFFIXES:
        raise InputFileError(path, f"unsupported expression file '{suffix}'; use .npy [T, 52], .csv or .json")
    with input_file_errors(path, "expression file"):
        if suffix == ".npy":
            codes, warnings = _load_npy(path, "[T, 52]"), []
        else:
            if not path.is_file():
                raise InputFileError(path, "no such file" if not path.exists() else "is not a file")
            codes, warnings = _read_csv(path) if suffix == ".csv" else _read_json(path)
        codes = _check_codes(path, np.asarray(codes))
    return codes, warnings + _range_warning(path, codes)


def read_poses(path: str | Path, frames: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Head poses ``[T, 4, 4]`` float32 from a ``.npy`` file (module docstring).

    Args:
        path: the pose file.
        frames: when given, T must equal it (the expression file's frame count).

    Returns:
        (poses, warnings).
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise InputFileError(path, "a pose file must be .npy holding a float [T, 4, 4] array")
    with input_file_errors(path, "pose file"):
        poses = _load_npy(path, "[T, 4, 4]").astype(np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise InputFileError(path, f"pose array has shape {list(poses.shape)}, expected [T, 4, 4]")
    if poses.shape[0] == 0:
        raise InputFileError(path, "holds no frames (T = 0)")
    if frames is not None and poses.shape[0] != frames:
        raise InputFileError(path, f"has {poses.shape[0]} poses but the expression file has {frames} frames")
    if not np.isfinite(poses).all():
        raise InputFileError(path, f"NaN/infinite value(s), first at frame {int(np.argwhere(~np.isfinite(poses))[0, 0])}")
    bottom = np.abs(poses[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    rot = poses[:, :3, :3]
    ortho = np.abs(rot.transpose(0, 2, 1) @ rot - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((bottom > _RIGID_TOL) | (ortho > _RIGID_TOL) | (np.linalg.det(rot) <= 0))
    if bad.size:
        raise InputFileError(path, f"pose {int(bad[0])} is not a rigid transform (rotation + translation, last row 0 0 0 1)")
    warnings = []
    if np.abs(poses[0] - np.eye(4)).max() > _RIGID_TOL:
        warnings.append(f"{path}: the first pose is not the identity; poses are applied as given (relative to the avatar)")
    return poses.astype(np.float32), warnings


def save_expressions(path: str | Path, codes: np.ndarray) -> None:
    """Write codes ``[T, 52]`` as float32 ``.npy`` atomically (checked like the reader)."""
    path = Path(path)
    arr = _check_codes(path, np.asarray(codes, dtype=np.float64))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def save_poses(path: str | Path, poses: np.ndarray) -> None:
    """Write poses ``[T, 4, 4]`` as float32 ``.npy`` atomically."""
    arr = np.asarray(poses, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4) or not np.isfinite(arr).all():
        raise ValueError(f"poses must be finite [T, 4, 4], got {list(arr.shape)}")
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
