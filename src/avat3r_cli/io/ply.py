"""3D Gaussian splats as ``.ply`` in the standard INRIA 3DGS vertex layout (README.md, "How it works").

On disk each Gaussian is one ``vertex`` row of float32 properties::

    x y z nx ny nz f_dc_0..2 f_rest_0..(3*(K-1)-1) opacity scale_0..2 rot_0..3

``opacity`` is the logit and ``scale_*`` the log of the activated values, ``rot_*`` is a wxyz
quaternion, and ``f_rest`` is channel-major: the coefficient k (1..K-1) of channel c (0=R, 1=G,
2=B) is ``f_rest_{c*(K-1) + k-1}``. Letters: N Gaussians, K SH coefficients per channel.

Round trips: activations are computed in float64 and rounded once to float32 in each direction,
so for every file this module writes, ``write_ply(read_ply(f))`` reproduces ``f`` byte for byte
and ``read_ply(write_ply(g))`` equals ``g`` to float32 rounding. A foreign file can change on
its first rewrite, after which it is stable: a float32 activation cannot hold every float32
pre-activation value (logits above about -2 and log-scales within about +-2 may move by a few ulps;
large logits more, since sigmoid(x) rounds to the same float32 for many x > 1).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyElementParseError, PlyHeaderParseError, PlyListProperty

from avat3r_cli.core.errors import InputFileError, input_file_errors
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.atomic import atomic_output

# Opacity 0 or 1 has an infinite logit. These are the float32 values nearest 0 and 1 that keep
# it finite (logit -103.28 and +16.64), so nothing a file could hold is clipped further than
# float32 itself forces. Scale 0 (log -inf) is raised to the same smallest positive float32.
OPACITY_MIN = float(np.nextafter(np.float32(0), np.float32(1)))  # 2**-149
OPACITY_MAX = 1.0 - 2.0**-24  # largest float32 below 1
SCALE_MIN = OPACITY_MIN

# A quaternion rounded to float32 after normalising is unit only to ~1e-7; dividing it again
# would move its last bits and break byte-identical rewrites, so only clearly non-unit ones are
# renormalised on read.
_QUAT_RENORM_TOL = 1e-6

_NORMALS = ("nx", "ny", "nz")
_F_REST = re.compile(r"f_rest_(\d+)\Z")
# f_rest count -> SH degree. Degree 4 is the highest any renderer we target (gsplat) evaluates.
_DEGREE_OF_REST = {3 * ((d + 1) ** 2 - 1): d for d in range(5)}
_BAD_REST = "f_rest properties do not form an SH degree 0..4 (expected 0, 9, 24, 45 or 72)"


def ply_property_names(sh_degree: int, normals: bool = True) -> list[str]:
    """Vertex property names in write order for ``sh_degree`` (62 at degree 3 with normals)."""
    if sh_degree < 0:
        raise ValueError(f"sh_degree must be >= 0, got {sh_degree}")
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [
        "x", "y", "z",
        *(_NORMALS if normals else ()),
        "f_dc_0", "f_dc_1", "f_dc_2",
        *(f"f_rest_{i}" for i in range(n_rest)),
        "opacity",
        "scale_0", "scale_1", "scale_2",
        "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def _numpy64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _check_writable(g: Gaussians) -> None:
    for name in ("means", "quats", "scales", "opacities", "sh"):
        bad = int((~torch.isfinite(getattr(g, name))).sum())
        if bad:
            raise ValueError(f"Gaussians.{name} has {bad} NaN/inf values; refusing to write them")
    if bool((g.scales < 0).any()):
        raise ValueError("Gaussians.scales has negative values (expected activated scales)")
    if bool(((g.opacities < 0) | (g.opacities > 1)).any()):
        raise ValueError("Gaussians.opacities has values outside 0..1 (expected activated)")


def gaussians_to_ply_array(gaussians: Gaussians, sh_degree: int | None = None) -> np.ndarray:
    """Stored (pre-activation) values as a float32 array ``[N, P]`` in ``ply_property_names`` order.

    Args:
        gaussians: the set (any device); ``opacities`` are clamped to
            ``[OPACITY_MIN, OPACITY_MAX]`` and ``scales`` raised to ``SCALE_MIN`` before the
            logit / log so both stay finite.
        sh_degree: None keeps the set's degree; larger pads ``f_rest`` with zeros, smaller
            truncates.

    Raises:
        ValueError: non-finite values, negative scales or opacities outside 0..1.
    """
    if sh_degree is not None and sh_degree < 0:
        raise ValueError(f"sh_degree must be >= 0, got {sh_degree}")
    g = gaussians if sh_degree is None else gaussians.with_sh_degree(sh_degree)
    _check_writable(g)
    n, k = g.count, g.sh.shape[1]
    opacity = np.clip(_numpy64(g.opacities), OPACITY_MIN, OPACITY_MAX)
    sh = _numpy64(g.sh)
    columns = [
        _numpy64(g.means),
        np.zeros((n, 3)),
        sh[:, 0, :],
        # [N, K-1, 3] -> [N, 3, K-1]: channel-major, all R first, then G, then B.
        sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),
        (np.log(opacity) - np.log1p(-opacity))[:, None],
        np.log(np.maximum(_numpy64(g.scales), SCALE_MIN)),
        _numpy64(g.quats),
    ]
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")


def write_ply(path: str | Path, gaussians: Gaussians, sh_degree: int | None = None) -> None:
    """Write ``gaussians`` as a binary little-endian INRIA 3DGS ``.ply``, atomically.

    Args:
        path: output file; written under a temporary name and renamed when complete.
        gaussians: means ``[N, 3]``, quats ``[N, 4]`` wxyz, scales ``[N, 3]``, opacities ``[N]``,
            sh ``[N, K, 3]``; any device and float dtype. Quaternions are stored as given.
        sh_degree: None keeps the set's own degree; a larger one pads with zeros (some engines
            reject degree 0, so callers may ask for 3), a smaller one truncates.

    Raises:
        ValueError: see ``gaussians_to_ply_array``.
    """
    degree = gaussians.sh_degree if sh_degree is None else sh_degree
    names = ply_property_names(degree)
    table = gaussians_to_ply_array(gaussians, degree)
    vertex = table.view(np.dtype([(name, "<f4") for name in names])).reshape(-1)
    ply = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    with atomic_output(path) as tmp, open(tmp, "wb") as stream:
        ply.write(stream)


def _load(path: Path) -> PlyData:
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a directory, expected a .ply file")
    try:
        with open(path, "rb") as stream:
            magic = stream.read(4)
    except OSError as e:
        raise InputFileError(path, f"cannot read file ({e.strerror or e})") from None
    if magic not in (b"ply\n", b"ply\r"):
        raise InputFileError(path, "not a PLY file (it does not start with the line 'ply')")
    try:
        # mmap: the copy-on-write map reads 100k Gaussians in ~0.1 s; plain reads take seconds.
        # plyfile falls back to ordinary parsing for ASCII files.
        return PlyData.read(str(path), mmap="c")
    except PlyHeaderParseError as e:
        detail = str(e.message)
        if " not in [" in detail:  # plyfile appends every known type name; keep the culprit
            detail = "unknown " + detail.split(" not in [")[0]
        raise InputFileError(path, f"malformed PLY header (line {e.line}: {detail})") from None
    except PlyElementParseError as e:
        what = "file is truncated" if "end-of-file" in str(e.message) else f"bad data: {e.message}"
        where = f" (element '{e.element.name}', row {e.row} of {e.element.count})" if e.element else ""
        raise InputFileError(path, what + where) from None
    except UnicodeDecodeError:
        raise InputFileError(path, "malformed PLY header (non-ASCII bytes)") from None
    except (ValueError, TypeError, OSError, MemoryError, OverflowError) as e:
        raise InputFileError(path, f"unreadable PLY file ({type(e).__name__}: {e})") from None


def _data_offset(path: Path) -> int:
    """Byte offset of the first data byte: just after the ``end_header`` line."""
    with open(path, "rb") as stream:
        for line in iter(stream.readline, b""):
            if line.strip() == b"end_header":
                break
        return stream.tell()


def _check_extent(path: Path, ply: PlyData) -> None:
    """Refuse data beyond the elements the header declares (e.g. a vertex count set too low).

    plyfile reads exactly the rows the header announces and ignores the rest, so such a file
    would load as a silently shortened avatar.
    """
    declared = ", ".join(f"element {e.name} {e.count}" for e in ply.elements) or "no elements"
    if ply.text:
        with open(path, "rb") as stream:
            stream.seek(_data_offset(path))
            rows = sum(1 for line in stream if line.strip())
        expected = sum(e.count for e in ply.elements)
        if rows > expected:
            raise InputFileError(
                path, f"holds {rows} data lines, more than the {expected} rows its header declares ({declared}): is the count wrong?"
            )
        return
    if any(isinstance(p, PlyListProperty) for e in ply.elements for p in e.properties):
        return  # rows of varying size; plyfile's own parse already checked they are all there
    order = "<" if ply.byte_order == "<" else ">" if ply.byte_order == ">" else "="
    rows = [e.dtype(order).itemsize for e in ply.elements]
    size = _data_offset(path) + sum(e.count * row for e, row in zip(ply.elements, rows))
    extra = path.stat().st_size - size
    # A stray byte or newline after the data is harmless; a whole row or more is data left out.
    if rows and extra >= min(rows):
        raise InputFileError(path, f"holds {extra} bytes after the rows its header declares ({declared}): is the count wrong?")


def _join(names: list[str], limit: int = 8) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _columns(path: Path, ply: PlyData) -> tuple[dict[str, np.ndarray], int]:
    """The used vertex properties as float32 ``[N]`` arrays, and the SH degree."""
    elements = [e.name for e in ply.elements]
    if "vertex" not in elements:
        found = _join(elements) or "none"
        raise InputFileError(path, f"no 'vertex' element (elements found: {found})")
    vertex = ply["vertex"]
    props = {p.name: p for p in vertex.properties}
    f_rest = sorted(int(m.group(1)) for name in props if (m := _F_REST.match(name)))
    n_rest = f_rest[-1] + 1 if f_rest else 0
    if n_rest > max(_DEGREE_OF_REST):  # before listing f_rest names a hostile header could make huge
        raise InputFileError(path, f"{len(f_rest)} {_BAD_REST}; the highest is f_rest_{f_rest[-1]}")
    required = ply_property_names(0, normals=False) + [f"f_rest_{i}" for i in range(n_rest)]
    missing = [name for name in required if name not in props]
    if missing and all(name in missing for name in required[3:]):
        raise InputFileError(
            path,
            "not a 3D Gaussian splat file: its vertices have no f_dc, opacity, scale or rot "
            "properties (a mesh or point cloud?)",
        )
    if missing:
        known = set(required) | set(_NORMALS)
        unknown = [name for name in props if name not in known]
        hint = f" (unrecognised properties: {_join(unknown, 5)})" if unknown else ""
        raise InputFileError(path, f"missing properties: {_join(missing)}{hint}")
    if n_rest not in _DEGREE_OF_REST:
        raise InputFileError(path, f"{n_rest} {_BAD_REST}")
    lists = [name for name in required if isinstance(props[name], PlyListProperty)]
    if lists:
        raise InputFileError(path, f"list properties where numbers are expected: {_join(lists)}")
    data = vertex.data
    not_float = [f"{name} ({data[name].dtype.name})" for name in required if data[name].dtype.kind != "f"]
    if not_float:
        raise InputFileError(path, f"properties must be float or double, got: {_join(not_float)}")
    if vertex.count == 0:
        raise InputFileError(path, "contains no Gaussians (vertex count is 0)")
    # float64 files are accepted; values beyond float32 range become inf and are reported below.
    with np.errstate(over="ignore"):
        columns = {name: np.asarray(data[name], dtype=np.float32) for name in required}
    bad = [f"{name} ({n})" for name, col in columns.items() if (n := int((~np.isfinite(col)).sum()))]
    if bad:
        raise InputFileError(path, f"NaN/inf values in properties: {_join(bad)}")
    return columns, _DEGREE_OF_REST[n_rest]


def _stack(columns: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.stack([columns[name] for name in names], axis=1)


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS ``.ply`` (INRIA with normals, gsplat without; any property order).

    Accepts binary (either byte order) and ASCII files, float or double properties; unknown
    properties and other elements are ignored.

    Returns:
        Float32 CPU ``Gaussians``: means ``[N, 3]``, quats ``[N, 4]`` wxyz (renormalised when off
        unit length by more than 1e-6; a zero quaternion becomes identity), scales ``[N, 3]`` =
        exp(stored), opacities ``[N]`` = sigmoid(stored), sh ``[N, K, 3]``.

    Raises:
        InputFileError: for any unusable file, with a one-line reason after the path.
    """
    path = Path(path)
    with input_file_errors(path, "PLY file"):
        ply = _load(path)
        _check_extent(path, ply)
        columns, degree = _columns(path, ply)
    k = (degree + 1) ** 2
    n = next(iter(columns.values())).shape[0]
    logit = columns["opacity"].astype(np.float64)
    with np.errstate(over="ignore"):  # exp(-logit) -> inf for logit < -709 gives opacity 0, as it should
        opacities = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        scales = np.exp(_stack(columns, ["scale_0", "scale_1", "scale_2"]).astype(np.float64))
        scales = scales.astype(np.float32)
    if not np.isfinite(scales).all():
        big = float(_stack(columns, ["scale_0", "scale_1", "scale_2"]).max())
        raise InputFileError(path, f"scale too large: log-scale {big:g} overflows float32")
    quats = _stack(columns, ["rot_0", "rot_1", "rot_2", "rot_3"])
    norm = np.linalg.norm(quats.astype(np.float64), axis=1)
    off = np.abs(norm - 1.0) > _QUAT_RENORM_TOL
    zero = norm == 0.0
    quats[off & ~zero] = (quats[off & ~zero] / norm[off & ~zero, None]).astype(np.float32)
    quats[zero] = (1.0, 0.0, 0.0, 0.0)
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = _stack(columns, ["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        rest = _stack(columns, [f"f_rest_{i}" for i in range(3 * (k - 1))])
        sh[:, 1:, :] = rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
    return Gaussians(
        means=torch.from_numpy(_stack(columns, ["x", "y", "z"])),
        quats=torch.from_numpy(np.ascontiguousarray(quats)),
        scales=torch.from_numpy(scales),
        opacities=torch.from_numpy(opacities),
        sh=torch.from_numpy(sh),
    )


@dataclass(frozen=True)
class PlyStats:
    """Summary of a Gaussian set for reports and ``--json`` output (activated values, metres).

    ``centre`` is the mean of the centres; ``scale_*`` run over all 3N per-axis scales;
    ``faint_fraction`` is the fraction of Gaussians with opacity below 0.05.
    """

    count: int
    sh_degree: int
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]
    centre: tuple[float, float, float]
    opacity_mean: float
    opacity_min: float
    opacity_max: float
    opacity_median: float
    scale_min: float
    scale_median: float
    scale_max: float
    faint_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def ply_stats(gaussians: Gaussians) -> PlyStats:
    """Statistics of ``gaussians`` (N >= 1; any device); medians are numpy's (mean of middle two)."""
    if gaussians.count == 0:
        raise ValueError("ply_stats needs at least one Gaussian")
    means = _numpy64(gaussians.means)
    opacity = _numpy64(gaussians.opacities)
    scales = _numpy64(gaussians.scales)

    def vec(v: np.ndarray) -> tuple[float, float, float]:
        return (float(v[0]), float(v[1]), float(v[2]))

    return PlyStats(
        count=gaussians.count,
        sh_degree=gaussians.sh_degree,
        bounds_min=vec(means.min(axis=0)),
        bounds_max=vec(means.max(axis=0)),
        centre=vec(means.mean(axis=0)),
        opacity_mean=float(opacity.mean()),
        opacity_min=float(opacity.min()),
        opacity_max=float(opacity.max()),
        opacity_median=float(np.median(opacity)),
        scale_min=float(scales.min()),
        scale_median=float(np.median(scales)),
        scale_max=float(scales.max()),
        faint_fraction=float((opacity < 0.05).mean()),
    )
