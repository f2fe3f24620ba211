"""Tests for the INRIA 3DGS .ply reader/writer (io/ply.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.ply import (
    OPACITY_MAX,
    OPACITY_MIN,
    gaussians_to_ply_array,
    ply_property_names,
    ply_stats,
    read_ply,
    write_ply,
)


def random_gaussians(n: int, degree: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.cat(
        [
            torch.tensor([0.0, 1.0, 1e-30, 0.9999999, 0.5]),
            torch.rand(n // 2, generator=g),
            torch.sigmoid(torch.randn(n - n // 2 - 5, generator=g) * 12),
        ]
    )
    return Gaussians(
        means=torch.randn(n, 3, generator=g),
        quats=quats / quats.norm(dim=1, keepdim=True),
        scales=torch.exp(torch.randn(n, 3, generator=g) * 3 - 4),
        opacities=opacities,
        sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g),
    )


def write_vertex(path: Path, columns: dict[str, np.ndarray], text: bool = False, byte_order: str = "<") -> Path:
    """A .ply with one vertex element holding ``columns`` in the given order and dtypes."""
    n = len(next(iter(columns.values())))
    table = np.empty(n, dtype=[(name, col.dtype.str) for name, col in columns.items()])
    for name, col in columns.items():
        table[name] = col
    PlyData([PlyElement.describe(table, "vertex")], text=text, byte_order=byte_order).write(str(path))
    return path


def stored_columns(n: int, degree: int, seed: int = 1, normals: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=n).astype(np.float32) for name in ply_property_names(degree, normals)}


def expected_from_stored(cols: dict[str, np.ndarray], degree: int) -> dict[str, np.ndarray]:
    k = (degree + 1) ** 2
    stack = lambda names: np.stack([cols[x].astype(np.float64) for x in names], axis=1)  # noqa: E731
    quats = stack([f"rot_{i}" for i in range(4)])
    sh = np.zeros((len(cols["x"]), k, 3))
    sh[:, 0] = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    for c in range(3):
        for j in range(1, k):
            sh[:, j, c] = cols[f"f_rest_{c * (k - 1) + j - 1}"]
    return {
        "means": stack(["x", "y", "z"]),
        "quats": quats / np.linalg.norm(quats, axis=1, keepdims=True),
        "scales": np.exp(stack(["scale_0", "scale_1", "scale_2"])),
        "opacities": 1 / (1 + np.exp(-cols["opacity"].astype(np.float64))),
        "sh": sh,
    }


def assert_matches(g: Gaussians, expected: dict[str, np.ndarray]) -> None:
    for name, want in expected.items():
        got = getattr(g, name)
        assert got.dtype == torch.float32 and got.device.type == "cpu"
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_round_trip_is_exact(tmp_path: Path, degree: int) -> None:
    g = random_gaussians(2000, degree, seed=degree)
    first, second = tmp_path / "a.ply", tmp_path / "b.ply"
    write_ply(first, g)
    back = read_ply(first)
    write_ply(second, back)
    assert first.read_bytes() == second.read_bytes()

    header = PlyData.read(str(first))
    assert header.text is False and header.byte_order == "<"
    assert [p.name for p in header["vertex"].properties] == ply_property_names(degree)
    assert {header["vertex"].data.dtype[i].str for i in range(len(header["vertex"].properties))} == {"<f4"}
    assert back.sh_degree == degree and back.count == 2000
    torch.testing.assert_close(back.means, g.means, rtol=0, atol=0)
    torch.testing.assert_close(back.sh, g.sh, rtol=0, atol=0)
    torch.testing.assert_close(back.quats, g.quats, rtol=0, atol=0)
    torch.testing.assert_close(back.scales, g.scales, rtol=2e-7, atol=0)
    clamped = g.opacities.clamp(OPACITY_MIN, OPACITY_MAX)
    torch.testing.assert_close(back.opacities, clamped, rtol=0, atol=1e-6)
    assert math.isfinite(float(header["vertex"]["opacity"].min()))  # opacity 0 clamped, not -inf


def test_rewriting_a_foreign_file_is_stable(tmp_path: Path) -> None:
    cols = stored_columns(5000, 1, seed=7)
    rng = np.random.default_rng(8)
    cols["opacity"] = (rng.normal(size=5000) * 20).astype(np.float32)
    quats = np.stack([cols[f"rot_{i}"] for i in range(4)], axis=1)
    for i in range(4):  # unit already, so rot_* must survive untouched
        cols[f"rot_{i}"] = (quats[:, i] / np.linalg.norm(quats, axis=1)).astype(np.float32)
    source = write_vertex(tmp_path / "foreign.ply", cols)
    once, twice = tmp_path / "once.ply", tmp_path / "twice.ply"
    write_ply(once, read_ply(source))
    write_ply(twice, read_ply(once))
    assert once.read_bytes() == twice.read_bytes()
    rewritten = PlyData.read(str(once))["vertex"]
    for name in ["x", "f_dc_1", "f_rest_8", "rot_0", "rot_3"]:
        np.testing.assert_array_equal(rewritten[name], cols[name], err_msg=name)
    # A float32 activation cannot hold every stored float32 value: logits below -2 (opacity
    # < 0.12) and log-scales beyond +-2 survive exactly, others can move by a few ulps (and large
    # logits more), which is why only the second rewrite is promised to be byte-identical.
    low = cols["opacity"] < -2
    assert low.sum() > 1000
    np.testing.assert_array_equal(rewritten["opacity"][low], cols["opacity"][low])
    sigmoid = lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))  # noqa: E731
    np.testing.assert_allclose(sigmoid(rewritten["opacity"]), sigmoid(cols["opacity"]), rtol=1e-6, atol=1e-7)
    cols["scale_2"] *= 4
    rescaled = write_vertex(tmp_path / "scales.ply", cols)
    write_ply(once, read_ply(rescaled))
    far = np.abs(cols["scale_2"]) > 2
    assert far.sum() > 1000
    stored = PlyData.read(str(once))["vertex"]["scale_2"]
    np.testing.assert_array_equal(stored[far], cols["scale_2"][far])
    np.testing.assert_allclose(stored, cols["scale_2"], rtol=0, atol=5e-7)


def test_pad_degree_0_to_3(tmp_path: Path) -> None:
    g = random_gaussians(50, 0)
    path = tmp_path / "padded.ply"
    write_ply(path, g, sh_degree=3)
    vertex = PlyData.read(str(path))["vertex"]
    assert len(vertex.properties) == 62
    assert [p.name for p in vertex.properties][3:6] == ["nx", "ny", "nz"]
    assert all((vertex[f"f_rest_{i}"] == 0).all() for i in range(45))
    assert all((vertex[name] == 0).all() for name in ["nx", "ny", "nz"])
    back = read_ply(path)
    assert back.sh_degree == 3
    torch.testing.assert_close(back.sh[:, 0], g.sh[:, 0], rtol=0, atol=0)
    assert back.sh[:, 1:].abs().max() == 0


def test_truncate_degree_3_to_1(tmp_path: Path) -> None:
    g = random_gaussians(50, 3)
    write_ply(tmp_path / "t.ply", g, sh_degree=1)
    back = read_ply(tmp_path / "t.ply")
    assert back.sh_degree == 1
    torch.testing.assert_close(back.sh, g.sh[:, :4], rtol=0, atol=0)
    with pytest.raises(ValueError, match="sh_degree"):
        write_ply(tmp_path / "neg.ply", g, sh_degree=-1)


def test_f_rest_is_channel_major(tmp_path: Path) -> None:
    sh = torch.zeros(1, 4, 3)
    for k in range(4):
        for c in range(3):
            sh[0, k, c] = 100 * c + k  # channel c, coefficient k
    g = Gaussians(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.ones(1, 3), torch.tensor([0.5]), sh)
    path = tmp_path / "layout.ply"
    write_ply(path, g)
    vertex = PlyData.read(str(path))["vertex"]
    assert [float(vertex[f"f_dc_{c}"][0]) for c in range(3)] == [0, 100, 200]
    got = [float(vertex[f"f_rest_{i}"][0]) for i in range(9)]
    assert got == [1, 2, 3, 101, 102, 103, 201, 202, 203]
    torch.testing.assert_close(read_ply(path).sh, sh, rtol=0, atol=0)


def test_reads_gsplat_layout_without_normals(tmp_path: Path) -> None:
    cols = stored_columns(300, 3, normals=False)
    assert len(cols) == 59
    names = list(cols)
    order = [names[i] for i in np.random.default_rng(3).permutation(len(names))]
    shuffled = {name: cols[name] for name in order}
    shuffled["filter_3D"] = np.ones(300, dtype=np.float32)  # unknown extras are ignored
    g = read_ply(write_vertex(tmp_path / "gsplat.ply", shuffled))
    assert g.sh_degree == 3
    assert_matches(g, expected_from_stored(cols, 3))


def test_reads_inria_layout_in_another_order(tmp_path: Path) -> None:
    cols = stored_columns(300, 2)
    assert len(cols) == 3 + 3 + 3 + 24 + 1 + 3 + 4
    g = read_ply(write_vertex(tmp_path / "inria.ply", dict(reversed(list(cols.items())))))
    assert g.sh_degree == 2
    assert_matches(g, expected_from_stored(cols, 2))


@pytest.mark.parametrize(
    ("text", "byte_order", "dtype"),
    [(True, "=", np.float32), (False, ">", np.float32), (False, "<", np.float64)],
    ids=["ascii", "big-endian", "double"],
)
def test_reads_other_encodings(tmp_path: Path, text: bool, byte_order: str, dtype: type) -> None:
    cols = {name: col.astype(dtype) for name, col in stored_columns(20, 1).items()}
    g = read_ply(write_vertex(tmp_path / "other.ply", cols, text=text, byte_order=byte_order))
    assert_matches(g, expected_from_stored({k: v.astype(np.float32) for k, v in cols.items()}, 1))


def test_quaternions_are_normalised_on_read(tmp_path: Path) -> None:
    cols = stored_columns(3, 0)
    for i, value in enumerate([[2.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]):
        for j in range(4):
            cols[f"rot_{j}"][i] = value[j]
    q = read_ply(write_vertex(tmp_path / "q.ply", cols)).quats
    torch.testing.assert_close(q, torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]))


def test_write_rejects_bad_values_and_leaves_nothing(tmp_path: Path) -> None:
    g = random_gaussians(10, 0)
    g.means[3, 1] = float("nan")
    path = tmp_path / "out.ply"
    with pytest.raises(ValueError, match=r"Gaussians\.means has 1 NaN/inf"):
        write_ply(path, g)
    assert list(tmp_path.iterdir()) == []
    g = random_gaussians(10, 0)
    g.opacities[0] = 1.5
    with pytest.raises(ValueError, match="outside 0..1"):
        write_ply(path, g)


def test_write_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "avatar.ply"
    write_ply(path, random_gaussians(10, 0, seed=1))
    g = random_gaussians(20, 1, seed=2)
    write_ply(path, g)
    assert read_ply(path).count == 20 and [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["avatar.ply"]


def test_ply_stats() -> None:
    g = Gaussians(
        means=torch.tensor([[0.0, 0, 0], [2, 4, -6], [1, -1, 0], [1, 1, 2]]),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1),
        scales=torch.tensor([[0.01, 0.02, 0.03], [0.1, 0.2, 0.3], [1, 2, 3], [0.001, 0.002, 0.003]]),
        opacities=torch.tensor([0.01, 0.5, 0.9, 0.04]),
        sh=torch.zeros(4, 4, 3),
    )
    s = ply_stats(g)
    assert (s.count, s.sh_degree) == (4, 1)
    assert s.bounds_min == (0, -1, -6) and s.bounds_max == (2, 4, 2) and s.centre == (1, 1, -1)
    assert s.opacity_min == pytest.approx(0.01) and s.opacity_max == pytest.approx(0.9)
    assert s.opacity_mean == pytest.approx(0.3625) and s.opacity_median == pytest.approx(0.27)
    assert s.scale_min == pytest.approx(0.001) and s.scale_max == pytest.approx(3)
    assert s.scale_median == pytest.approx(0.065)
    assert s.faint_fraction == 0.5
    d = json.loads(json.dumps(s.to_dict()))
    assert d["bounds_max"] == [2, 4, 2] and d["count"] == 4


# --- bad files: each builder writes a file under tmp_path and returns its path --------------------


def _valid(tmp: Path, n: int = 4, degree: int = 0, **changes: np.ndarray | None) -> Path:
    cols: dict[str, np.ndarray] = stored_columns(n, degree)
    for name, col in changes.items():
        if col is None:
            cols.pop(name)
        else:
            cols[name] = col
    return write_vertex(tmp / "bad.ply", cols)


def _raw(tmp: Path, data: bytes, name: str = "bad.ply") -> Path:
    (tmp / name).write_bytes(data)
    return tmp / name


def _truncated(tmp: Path) -> Path:
    path = _valid(tmp, n=10)
    return _raw(tmp, path.read_bytes()[:-7])


def _renamed(tmp: Path, old: str, new: str) -> Path:
    cols = stored_columns(4, 0)
    return write_vertex(tmp / "bad.ply", {(new if k == old else k): v for k, v in cols.items()})


def _list_property(tmp: Path) -> Path:
    cols = stored_columns(2, 0)
    table = np.empty(2, dtype=[(k, "<f4") for k in cols if k != "opacity"] + [("opacity", object)])
    for k in cols:
        table[k] = cols[k] if k != "opacity" else [np.array([1.0], "<f4"), np.array([2.0, 3.0], "<f4")]
    element = PlyElement.describe(table, "vertex", val_types={"opacity": "f4"})
    PlyData([element]).write(str(tmp / "bad.ply"))
    return tmp / "bad.ply"


def _faces_only(tmp: Path) -> Path:
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", object)])
    PlyData([PlyElement.describe(faces, "face")]).write(str(tmp / "bad.ply"))
    return tmp / "bad.ply"


def _with_values(name: str, values: list[float], dtype: str = "<f4"):  # noqa: ANN202
    return lambda tmp: _valid(tmp, **{name: np.array(values + [0.0] * (4 - len(values)), dtype)})


BAD_FILES = {
    "missing": (lambda tmp: tmp / "nope.ply", "file does not exist"),
    "directory": (lambda tmp: tmp, "is a directory"),
    "jpeg": (lambda tmp: _raw(tmp, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)), "not a PLY file"),
    "text": (lambda tmp: _raw(tmp, b"x y z\n1 2 3\n"), "not a PLY file"),
    "empty": (lambda tmp: _raw(tmp, b""), "not a PLY file"),
    "non-ascii header": (lambda tmp: _raw(tmp, b"ply\n\xff\xfe\n"), r"malformed PLY header \(non-ASCII"),
    "bad type": (
        lambda tmp: _raw(tmp, b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty flot x\nend_header\n"),
        r"malformed PLY header \(line 4: unknown field type 'flot'\)\Z",
    ),
    "header cut": (
        lambda tmp: _raw(tmp, b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"),
        "malformed PLY header",
    ),
    "negative count": (
        lambda tmp: _raw(tmp, b"ply\nformat binary_little_endian 1.0\nelement vertex -3\nend_header\n"),
        "unreadable PLY file",
    ),
    "truncated": (_truncated, r"file is truncated \(element 'vertex', row \d+ of 10\)"),
    "truncated ascii": (
        lambda tmp: _raw(tmp, b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n"),
        "file is truncated",
    ),
    "bad ascii value": (
        lambda tmp: _raw(tmp, b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\nabc\n"),
        r"bad data: .* \(element 'vertex', row 1 of 2\)",
    ),
    "point cloud": (
        lambda tmp: write_vertex(tmp / "bad.ply", {k: np.zeros(3, "<f4") for k in ["x", "y", "z", "red"]}),
        "not a 3D Gaussian splat file",
    ),
    "no vertex": (_faces_only, r"no 'vertex' element \(elements found: face\)"),
    "missing props": (
        lambda tmp: _valid(tmp, scale_2=None, rot_3=None),
        r"missing properties: scale_2, rot_3\Z",
    ),
    "misspelled": (
        lambda tmp: _renamed(tmp, "scale_2", "scale2"),
        r"missing properties: scale_2 \(unrecognised properties: scale2\)",
    ),
    "f_rest gap": (lambda tmp: _valid(tmp, degree=1, f_rest_4=None), r"missing properties: f_rest_4\Z"),
    "f_rest count": (
        lambda tmp: _valid(tmp, degree=1, f_rest_9=np.zeros(4, "<f4")),
        r"10 f_rest properties do not form an SH degree 0\.\.4 \(expected 0, 9, 24, 45 or 72\)\Z",
    ),
    "f_rest huge index": (
        lambda tmp: _valid(tmp, degree=1, f_rest_999999999=np.zeros(4, "<f4")),
        "10 f_rest properties do not form an SH degree .*; the highest is f_rest_999999999",
    ),
    "list property": (_list_property, "list properties where numbers are expected: opacity"),
    "integer property": (
        lambda tmp: _valid(tmp, x=np.arange(4, dtype="<i4")),
        r"properties must be float or double, got: x \(int32\)",
    ),
    "nan": (_with_values("opacity", [np.nan, np.nan]), r"NaN/inf values in properties: opacity \(2\)\Z"),
    "nan in two": (
        lambda tmp: _valid(tmp, x=np.array([np.nan] * 4, "<f4"), f_dc_2=np.array([0, np.inf, 0, 0], "<f4")),
        r"NaN/inf values in properties: x \(4\), f_dc_2 \(1\)\Z",
    ),
    "inf": (_with_values("y", [np.inf]), r"NaN/inf values in properties: y \(1\)"),
    "double overflow": (_with_values("z", [1e300], "<f8"), r"NaN/inf values in properties: z \(1\)"),
    "scale overflow": (_with_values("scale_1", [100.0]), "scale too large: log-scale 100"),
    "zero gaussians": (lambda tmp: _valid(tmp, n=0), r"contains no Gaussians \(vertex count is 0\)"),
    "fewer declared": (
        lambda tmp: _raw(tmp, _valid(tmp, n=10).read_bytes().replace(b"element vertex 10\n", b"element vertex 7\n")),
        r"holds 204 bytes after the rows its header declares \(element vertex 7\): is the count wrong\?\Z",
    ),
    "fewer declared ascii": (
        lambda tmp: _raw(tmp, b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n2\n3\n"),
        r"holds 3 data lines, more than the 2 rows its header declares \(element vertex 2\)",
    ),
}


def test_a_stray_byte_after_the_data_is_harmless(tmp_path: Path) -> None:
    path = _valid(tmp_path, n=3)
    path.write_bytes(path.read_bytes() + b"\n")
    assert read_ply(path).count == 3


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_input_file_error(tmp_path: Path, case: str) -> None:
    build, message = BAD_FILES[case]
    path = build(tmp_path)
    with pytest.raises(InputFileError, match=message) as info:
        read_ply(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_gaussians_to_ply_array_matches_property_names() -> None:
    g = random_gaussians(10, 2)
    table = gaussians_to_ply_array(g)
    assert table.dtype == np.dtype("<f4") and table.shape == (10, len(ply_property_names(2)))
    scale_col = ply_property_names(2).index("scale_0")
    np.testing.assert_allclose(np.exp(table[:, scale_col]), g.scales[:, 0].numpy(), rtol=1e-6)
