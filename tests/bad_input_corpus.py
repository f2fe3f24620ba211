"""The machinery of the bad-input corpus: cases, the shared valid files, command lines.

``tests/bad_inputs.py`` holds the cases themselves; this module holds what they are built from.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avat3r_cli.core.gaussians import Gaussians
from avat3r_cli.io.ply import write_ply
from avat3r_cli.io.weights import CONFIG_FILE, WEIGHTS_FILE, sha256_file
from avat3r_cli.pipeline.bundle import AvatarBundle, BundleMetadata, save_bundle


@dataclass(frozen=True)
class Run:
    """A command line (``argv`` without ``avat3r``) and the file its error must name."""

    argv: list[str]
    names: Path


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(corpus, folder)`` writes it under ``folder`` and returns the run."""

    name: str
    command: str
    problem: str
    expect: str
    build: Callable[[Corpus, Path], Run]


class Corpus:
    """What the cases share: a model folder, a valid bundle and splat file, photo bytes.

    ``root`` holds the shared files (under ``_valid/``) and one folder per case.
    """

    def __init__(self, root: Path, weights: Path) -> None:
        self.root = root
        self.weights = weights

    def folder(self, case: Case) -> Path:
        path = self.root / case.name
        path.mkdir(parents=True, exist_ok=False)
        return path

    @cached_property
    def valid(self) -> Path:
        path = self.root / "_valid"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def resolution(self) -> int:
        return int(json.loads((self.weights / CONFIG_FILE).read_text())["image_size"])

    @cached_property
    def face(self) -> Image.Image:
        from skimage import data

        return Image.fromarray(data.astronaut())

    def encoded(self, fmt: str, image: Image.Image | None = None, **options: object) -> bytes:
        buffer = io.BytesIO()
        (image or self.face).save(buffer, format=fmt, **options)
        return buffer.getvalue()

    def bundle(self) -> AvatarBundle:
        """A small valid bundle for ``self.weights``: one view of a plane 0.6 m in front of the camera."""
        r, f, depth = self.resolution, float(self.resolution), 0.6
        K = torch.tensor([[f, 0.0, r / 2], [0.0, f, r / 2], [0.0, 0.0, 1.0]])
        w2c = torch.eye(4)
        w2c[2, 3] = depth
        v, u = torch.meshgrid(torch.arange(r) + 0.5, torch.arange(r) + 0.5, indexing="ij")
        positions = torch.stack([(u - r / 2) / f * depth, (v - r / 2) / f * depth, torch.zeros(r, r)])
        meta = BundleMetadata(
            model_name=str(self.weights), model_source=f"folder:{self.weights}",
            model_sha256=sha256_file(self.weights / WEIGHTS_FILE), resolution=r, confidence_threshold=0.5,
            geometry="template", features="none", photos=["plane.png"],
        )
        return AvatarBundle(
            images=torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, r, r, 3), dtype=np.uint8)),
            positions=positions[None], confidence=torch.ones(1, 1, r, r), K=K[None], world_to_cam=w2c[None],
            blendshapes=torch.zeros(1, 52), metadata=meta,
        )

    @cached_property
    def valid_bundle(self) -> Path:
        path = self.valid / "avatar.avat3r.safetensors"
        save_bundle(path, self.bundle())
        return path

    @cached_property
    def valid_ply(self) -> Path:
        g = torch.Generator().manual_seed(0)
        quats = torch.randn(50, 4, generator=g)
        gaussians = Gaussians(
            means=torch.randn(50, 3, generator=g) * 0.1, quats=quats / quats.norm(dim=1, keepdim=True),
            scales=torch.full((50, 3), 0.02), opacities=torch.full((50,), 0.8), sh=torch.zeros(50, 1, 3),
        )
        path = self.valid / "avatar.ply"
        write_ply(path, gaussians)
        return path

    @cached_property
    def valid_codes(self) -> Path:
        path = self.valid / "codes.npy"
        np.save(path, np.zeros((2, 52), np.float32))
        return path


# --- command lines ------------------------------------------------------------------------------


def create(c: Corpus, folder: Path, *photos: Path) -> list[str]:
    return ["create", *map(str, photos), "-o", str(folder / "out"), "--weights", str(c.weights), "--no-video",
            "--device", "cpu"]


def preprocess(folder: Path, photo: Path) -> list[str]:
    return ["preprocess", str(photo), "-o", str(folder / "out"), "--resolution", "64"]


def animate(avatar: Path, expr: Path, folder: Path, *extra: str) -> list[str]:
    return ["animate", str(avatar), "--expr", str(expr), "-o", str(folder / "out" / "anim.mp4"), "--size", "16",
            "--device", "cpu", *extra]


def render(ply: Path, folder: Path) -> list[str]:
    return ["render", str(ply), "-o", str(folder / "out" / "turn.mp4"), "--frames", "1", "--size", "16", "--device", "cpu"]


# --- writing inputs ---------------------------------------------------------------------------


def write_input(folder: Path, name: str, data: bytes | str) -> Path:
    """``folder/name`` holding ``data`` (text is written as UTF-8)."""
    path = folder / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, pixels: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, holding only ``pixels`` (compressed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(pixels)) if pixels else b""
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")


def npy_bytes(header: str, payload: bytes = b"") -> bytes:
    """A version-1.0 ``.npy`` file with the header dict text ``header`` (padded as NumPy pads it)."""
    text = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + payload
