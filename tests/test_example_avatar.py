"""examples/make_example_avatar.py: the committed head.ply is reproducible and head-like."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from avat3r_cli.core.frames import head_to_viewer
from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.ply import read_ply, write_ply

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPT = EXAMPLES / "make_example_avatar.py"
COMMITTED = EXAMPLES / "head.ply"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example_avatar", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def head(script: ModuleType) -> Gaussians:
    return script.build_example_avatar(script.DEFAULT_SEED)


def test_committed_file_is_reproduced_byte_for_byte(head: Gaussians, tmp_path: Path) -> None:
    out = tmp_path / "head.ply"
    write_ply(out, head_to_viewer(head))
    assert out.read_bytes() == COMMITTED.read_bytes(), (
        "examples/head.ply is stale: rerun `python examples/make_example_avatar.py`"
    )


def test_committed_file_is_small_and_readable() -> None:
    assert COMMITTED.stat().st_size < 3 * 1024 * 1024
    g = read_ply(COMMITTED)
    assert 15_000 <= g.count <= 25_000
    assert g.sh_degree == 0


def test_main_writes_other_seeds(script: ModuleType, head: Gaussians, tmp_path: Path) -> None:
    out = tmp_path / "seed1.ply"
    script.main(["--output", str(out), "--seed", "1"])
    other = read_ply(out)
    assert 15_000 <= other.count <= 25_000
    assert other.count != head.count or not torch.equal(other.means, head_to_viewer(head).means)


def test_committed_file_is_in_the_viewer_frame(head: Gaussians) -> None:
    # The file is the head-frame build turned 180° about x: y up, the face (eye whites) on +z.
    g = read_ply(COMMITTED)
    torch.testing.assert_close(g.means, head.means * torch.tensor([1.0, -1.0, -1.0]), atol=1e-6, rtol=0)
    sclera = g.means[(g.colors_dc() > 0.75).all(dim=1)]
    hair = g.means[(g.colors_dc() < 0.35).all(dim=1) & (g.colors_dc()[:, 0] > g.colors_dc()[:, 2] + 0.05)]
    assert bool((sclera[:, 2] > 0.08).all()) and float(hair[:, 1].mean()) > 0.03


def test_head_sized_and_well_formed(head: Gaussians) -> None:
    assert 15_000 <= head.count <= 25_000
    assert head.sh_degree == 0
    lo, hi = head.means.amin(0), head.means.amax(0)
    assert bool(((hi - lo) < 0.5).all())
    # Head centred near the origin: skull 0.16 x 0.22 x 0.20 m, neck hanging below (+y).
    assert 0.14 < float(hi[0] - lo[0]) < 0.22
    assert float(lo[1]) < -0.1 and float(hi[1]) < 0.25
    assert 0.18 < float(hi[2] - lo[2]) < 0.26
    torch.testing.assert_close(head.quats.norm(dim=1), torch.ones(head.count), atol=1e-5, rtol=0)
    assert bool(((head.scales > 0.0005) & (head.scales < 0.006)).all())
    torch.testing.assert_close(head.opacities, torch.full((head.count,), 0.9))
    colours = head.colors_dc()
    assert bool(((colours >= -1e-5) & (colours <= 1 + 1e-5)).all())


def test_faces_minus_z_with_hair_on_top(head: Gaussians) -> None:
    colours, means = head.colors_dc(), head.means
    # The near-white eye whites sit on the front (-z) at mid height, one on each side.
    sclera = means[(colours > 0.75).all(dim=1)]
    assert len(sclera) > 100
    assert bool((sclera[:, 2] < -0.08).all())
    assert bool((sclera[:, 1].abs() < 0.03).all())
    assert (sclera[:, 0] < 0).sum() > 20 and (sclera[:, 0] > 0).sum() > 20
    # Dark brown hair (red over blue, unlike the navy collar and the pupils): mostly above the
    # centre (-y is up) and behind the face.
    hair = means[(colours < 0.35).all(dim=1) & (colours[:, 0] > colours[:, 2] + 0.05)]
    assert len(hair) > 3000
    assert float(hair[:, 1].mean()) < -0.03
    assert float(hair[:, 2].mean()) > 0.0


def test_discs_lie_tangent_to_the_surface(head: Gaussians) -> None:
    # The thin axis (local z, the third scale) is the surface normal: for the skull-sized
    # part it points away from the head centre, so no disc is seen edge-on from outside.
    w, x, y, z = head.quats.unbind(dim=1)
    axis = torch.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], dim=1)
    assert bool((head.scales[:, 2] < head.scales[:, 0]).all())
    head_part = head.means[:, 1] < 0.03
    outward = (axis * head.means).sum(dim=1)[head_part]
    assert float((outward > 0).float().mean()) > 0.9


def test_same_seed_same_tensors(script: ModuleType, head: Gaussians) -> None:
    again = script.build_example_avatar(script.DEFAULT_SEED)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        assert torch.equal(getattr(again, name), getattr(head, name)), name
    assert np.array_equal(again.means.numpy(), head.means.numpy())
