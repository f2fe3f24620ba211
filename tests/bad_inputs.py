"""A corpus of bad inputs for the real CLI, generated on demand, and the table of what each gives.

Every case writes its input into a folder of its own, names one command line on it, and expects
what the README promises for bad input: exit code 1, one ``Error:`` line on stderr that names the
file and says what is wrong, no traceback, and nothing new in the folder (no output, no
``.partial-`` leftover). ``tests/test_bad_inputs.py`` runs every case; ``tests/bad_inputs.md`` is
the table of them, kept in step with ``CASES`` by a test (``python tests/bad_inputs.py`` rewrites
it). Adding a case is one line below; ``tests/bad_input_corpus.py`` has what cases are built from.

The cases are grouped by what the file is: photos (``create``, ``preprocess``), splat files
(``info``, ``render``, ``animate``), animation bundles and expression / pose files
(``animate``). All fail before any video is rendered; none needs downloaded weights.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avat3r_cli.io.tensors import save_tensors
from bad_input_corpus import (
    Case,
    Corpus,
    Run,
    animate,
    create,
    npy_bytes,
    png_header,
    preprocess,
    render,
    write_input,
)

TABLE = Path(__file__).with_name("bad_inputs.md")


# --- photos -------------------------------------------------------------------------------------


def photo_case(name: str, problem: str, expect: str, file: str, data: Callable[[Corpus], bytes | str]) -> Case:
    def build(c: Corpus, folder: Path) -> Run:
        photo = write_input(folder, file, data(c))
        return Run(create(c, folder, photo), photo)

    return Case(name, "create PHOTO", problem, expect, build)


def _missing(c: Corpus, folder: Path) -> Run:
    return Run(create(c, folder, folder / "nobody.jpg"), folder / "nobody.jpg")


def _directory(c: Corpus, folder: Path) -> Run:
    (folder / "album.jpg").mkdir()
    return Run(create(c, folder, folder / "album.jpg"), folder / "album.jpg")


def _no_face(c: Corpus, folder: Path) -> Run:
    from skimage import data

    photo = folder / "camera.png"
    Image.fromarray(data.camera()).save(photo)
    return Run(create(c, folder, photo), photo)


def _upside_down(c: Corpus, folder: Path) -> Run:
    photo = folder / "upside_down.png"
    c.face.rotate(180).save(photo)
    return Run(preprocess(folder, photo), photo)


def _preprocess_truncated(c: Corpus, folder: Path) -> Run:
    data = c.encoded("JPEG")
    photo = write_input(folder, "half.jpg", data[: len(data) // 2])
    return Run(preprocess(folder, photo), photo)


PHOTOS = [
    photo_case("photo-truncated-jpeg", "JPEG cut in half", "truncated", "half.jpg",
               lambda c: (d := c.encoded("JPEG"))[: len(d) // 2]),
    photo_case("photo-truncated-png", "PNG cut at a third", "truncated", "third.png",
               lambda c: (d := c.encoded("PNG"))[: len(d) // 3]),
    photo_case("photo-truncated-webp", "WebP cut in half", "truncated", "half.webp",
               lambda c: (d := c.encoded("WEBP"))[: len(d) // 2]),
    photo_case("photo-empty", "0-byte .jpg", "file is empty", "empty.jpg", lambda c: b""),
    photo_case("photo-text", "text file named .jpg", "not an image", "notes.jpg", lambda c: "just some notes\n"),
    photo_case("photo-html", "HTML page named .png", "not an image", "page.png",
               lambda c: "<!doctype html><html><body>404</body></html>"),
    photo_case("photo-zip", "zip archive named .tif", "not an image", "archive.tif",
               lambda c: b"PK\x03\x04" + bytes(64)),
    photo_case("photo-ply", "splat file named .jpg", "not an image", "avatar.jpg",
               lambda c: c.valid_ply.read_bytes()),
    photo_case("photo-png-header-only", "PNG header without pixel data", "truncated", "header.png",
               lambda c: png_header(64, 64)),
    photo_case("photo-bomb", "PNG header claiming 30000x30000 pixels", "too large", "bomb.png",
               lambda c: png_header(30000, 30000, bytes(16))),
    photo_case("photo-tiny", "8x8 image", "too small to hold a usable face", "tiny.png",
               lambda c: c.encoded("PNG", c.face.resize((8, 8)))),
    photo_case("photo-sliver", "4000x8 image (would cost thousands of face searches)", "too small to hold",
               "sliver.png", lambda c: c.encoded("PNG", c.face.resize((4000, 8)))),
    Case("photo-missing", "create PHOTO", "photo that does not exist", "does not exist", _missing),
    Case("photo-directory", "create PHOTO", "folder named .jpg", "is a folder, expected a photo", _directory),
    Case("photo-no-face", "create PHOTO", "photo without a face (skimage camera)", "no face found", _no_face),
    Case("photo-upside-down", "preprocess PHOTO", "upside-down face (MediaPipe finds none upright)",
         "turned 180 degrees", _upside_down),
    Case("preprocess-truncated", "preprocess PHOTO", "JPEG cut in half", "truncated", _preprocess_truncated),
]


# --- splat files --------------------------------------------------------------------------------


def _ply_bytes(c: Corpus) -> bytes:
    return c.valid_ply.read_bytes()


def _fewer_declared(data: bytes) -> bytes:
    return data.replace(b"element vertex 50\n", b"element vertex 45\n", 1)


def _ascii_fewer(c: Corpus) -> bytes:
    from plyfile import PlyData

    ply = PlyData.read(str(c.valid_ply))
    ply.text = True
    buffer = io.BytesIO()
    ply.write(buffer)
    return buffer.getvalue().replace(b"element vertex 50\n", b"element vertex 48\n", 1)


def _zero_vertices(c: Corpus) -> bytes:
    data = _ply_bytes(c)
    header = data[: data.index(b"end_header\n") + len(b"end_header\n")]
    return header.replace(b"element vertex 50\n", b"element vertex 0\n", 1)


def _nan_ply(c: Corpus) -> bytes:
    data = bytearray(_ply_bytes(c))
    start = data.index(b"end_header\n") + len(b"end_header\n")
    data[start : start + 4] = struct.pack("<f", float("nan"))  # x of the first Gaussian
    return bytes(data)


def ply_case(name: str, command: str, problem: str, expect: str, data: Callable[[Corpus], bytes | str]) -> Case:
    def build(c: Corpus, folder: Path) -> Run:
        ply = write_input(folder, "avatar.ply", data(c))
        argv = ["info", str(ply)] if command == "info" else render(ply, folder)
        return Run(argv, ply)

    return Case(name, f"{command} AVATAR.ply", problem, expect, build)


def _ply_without_bundle(c: Corpus, folder: Path) -> Run:
    ply = write_input(folder, "avatar.ply", _ply_bytes(c))
    return Run(animate(ply, c.valid_codes, folder), ply)


PLYS = [
    ply_case("ply-empty", "info", "0-byte .ply", "not a PLY file", lambda c: b""),
    ply_case("ply-text", "info", "text file named .ply", "not a PLY file", lambda c: "x y z\n1 2 3\n"),
    ply_case("ply-jpeg", "info", "JPEG named .ply", "not a PLY file", lambda c: c.encoded("JPEG")),
    ply_case("ply-fewer-declared", "info", "header declares 45 vertices, file holds 50", "is the count wrong",
             lambda c: _fewer_declared(_ply_bytes(c))),
    ply_case("ply-fewer-declared-ascii", "info", "ASCII .ply declaring 48 of its 50 vertices", "is the count wrong",
             _ascii_fewer),
    ply_case("ply-truncated", "info", ".ply cut 10 bytes short", "truncated", lambda c: _ply_bytes(c)[:-10]),
    ply_case("ply-zero", "info", "0 Gaussians", "contains no Gaussians", _zero_vertices),
    ply_case("ply-nan", "info", "NaN position", "NaN/inf", _nan_ply),
    ply_case("ply-header-cut", "info", "header without end_header", "malformed PLY header",
             lambda c: b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"),
    ply_case("render-fewer-declared", "render", "header declares 45 vertices, file holds 50", "is the count wrong",
             lambda c: _fewer_declared(_ply_bytes(c))),
    ply_case("render-zero", "render", "0 Gaussians", "contains no Gaussians", _zero_vertices),
    ply_case("render-truncated", "render", ".ply cut 10 bytes short", "truncated", lambda c: _ply_bytes(c)[:-10]),
    Case("animate-ply-without-bundle", "animate AVATAR.ply", ".ply with no bundle beside it", "no animation bundle",
         _ply_without_bundle),
]


# --- animation bundles --------------------------------------------------------------------------


def bundle_case(
    name: str, problem: str, expect: str, *, tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
    meta: Callable[[dict], None] | None = None, raw_meta: str | None = None, raw: Callable[[bytes], bytes] | None = None,
) -> Case:
    """A bundle derived from the valid one: its tensors edited, its metadata JSON edited or replaced, or its bytes."""

    def build(c: Corpus, folder: Path) -> Run:
        from avat3r_cli.io.tensors import load_tensors

        path = folder / "avatar.avat3r.safetensors"
        if raw is not None:
            path.write_bytes(raw(c.valid_bundle.read_bytes()))
        else:
            values, header = load_tensors(c.valid_bundle)
            if tensors is not None:
                tensors(values)
            data = json.loads(header["avat3r"])
            if meta is not None:
                meta(data)
            header["avat3r"] = raw_meta if raw_meta is not None else json.dumps(data)
            save_tensors(path, values, header)
        return Run(animate(path, c.valid_codes, folder), path)

    return Case(name, "animate BUNDLE", problem, expect, build)


def _set(**changes: object) -> Callable[[dict], None]:
    return lambda d: d.update(changes)


def _shear(t: dict[str, torch.Tensor]) -> None:
    t["world_to_cam"][0, 0, 1] = 0.5


BUNDLES = [
    bundle_case("bundle-zero-confidence", "all confidences 0 (0 Gaussians)", "no Gaussians",
                tensors=lambda t: t["confidence"].zero_()),
    bundle_case("bundle-threshold-above-all", "threshold 0.9, confidences 0.5", "no Gaussians",
                tensors=lambda t: t["confidence"].fill_(0.5), meta=_set(confidence_threshold=0.9)),
    bundle_case("bundle-confidence-range", "confidences of 2.0", "expected 0..1",
                tensors=lambda t: t["confidence"].fill_(2.0)),
    bundle_case("bundle-K-zero", "K all zeros", "unusable K", tensors=lambda t: t["K"].zero_()),
    bundle_case("bundle-w2c-zero", "world_to_cam all zeros", "unusable world_to_cam",
                tensors=lambda t: t["world_to_cam"].zero_()),
    bundle_case("bundle-w2c-shear", "world_to_cam with a shear", "unusable world_to_cam", tensors=_shear),
    bundle_case("bundle-no-views", "every tensor with 0 views", "no views",
                tensors=lambda t: t.update({k: v[:0] for k, v in t.items()})),
    bundle_case("bundle-nan", "NaN in positions", "NaN", tensors=lambda t: t["positions"].view(-1)[0].fill_(float("nan"))),
    bundle_case("bundle-missing-tensor", "no confidence tensor", "lacks tensor", tensors=lambda t: t.pop("confidence")),
    bundle_case("bundle-wrong-shape", "K of shape [1, 3, 4]", "expected [1, 3, 3]",
                tensors=lambda t: t.update(K=torch.zeros(1, 3, 4))),
    bundle_case("bundle-threshold-text", 'confidence_threshold "abc"', "confidence_threshold",
                meta=_set(confidence_threshold="abc")),
    bundle_case("bundle-threshold-range", "confidence_threshold 5", "expected 0..1", meta=_set(confidence_threshold=5)),
    bundle_case("bundle-resolution-text", 'resolution "x"', "resolution", meta=_set(resolution="x")),
    bundle_case("bundle-resolution-mismatch", "resolution 99 for 64-pixel images", "resolution 99",
                meta=_set(resolution=99)),
    bundle_case("bundle-resolution-huge", "resolution with 401 digits", "resolution", meta=_set(resolution=10**400)),
    bundle_case("bundle-photos-number", "photos 3", "photos", meta=_set(photos=3)),
    bundle_case("bundle-version-text", 'version "1"', "not a version number", meta=_set(version="1")),
    bundle_case("bundle-version-newer", "version 99", "newer than this tool", meta=_set(version=99)),
    bundle_case("bundle-sha-number", "model_sha256 5", "model_sha256", meta=_set(model_sha256=5)),
    bundle_case("bundle-source-number", "model_source 5", "model_source", meta=_set(model_source=5)),
    bundle_case("bundle-meta-incomplete", "no model_name", "incomplete", meta=lambda d: d.pop("model_name")),
    bundle_case("bundle-meta-deep", "metadata nested 100000 deep", "nested too deeply",
                raw_meta="[" * 100_000 + "]" * 100_000),
    bundle_case("bundle-meta-not-json", "metadata that is not JSON", "not valid JSON", raw_meta="{oops"),
    bundle_case("bundle-truncated", "bundle cut in half", "not a readable safetensors file",
                raw=lambda b: b[: len(b) // 2]),
    bundle_case("bundle-text", "text file named .avat3r.safetensors", "not a readable safetensors file",
                raw=lambda b: b"hello\n"),
]


# --- expression and pose files ------------------------------------------------------------------


def expression_case(name: str, problem: str, expect: str, file: str, data: Callable[[], bytes | str]) -> Case:
    def build(c: Corpus, folder: Path) -> Run:
        expr = write_input(folder, file, data())
        return Run(animate(c.valid_bundle, expr, folder), expr)

    return Case(name, "animate --expr FILE", problem, expect, build)


def pose_case(name: str, problem: str, expect: str, data: Callable[[], bytes]) -> Case:
    def build(c: Corpus, folder: Path) -> Run:
        pose = write_input(folder, "pose.npy", data())
        return Run(animate(c.valid_bundle, c.valid_codes, folder, "--pose", str(pose)), pose)

    return Case(name, "animate --pose FILE", problem, expect, build)


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, codes=np.zeros((2, 52)))
    return buffer.getvalue()


def _frame(value: str) -> str:
    return "[[" + ", ".join([value] + ["0"] * 51) + "]]"


EXPRESSIONS = [
    expression_case("expr-json-401-digits", "JSON number with 401 digits", "too large a number", "big.json",
                    lambda: _frame("9" * 401)),
    expression_case("expr-json-5000-digits", "JSON number with 5000 digits", "not valid JSON", "huge.json",
                    lambda: _frame("9" * 5000)),
    expression_case("expr-json-deep", "JSON nested 100000 deep", "nested too deeply", "deep.json",
                    lambda: "[" * 100_000 + "]" * 100_000),
    expression_case("expr-json-bad", "JSON cut short", "not valid JSON", "cut.json", lambda: '{"frames": [[0.1,'),
    expression_case("expr-json-bool", "JSON frame of true/false", "is not a number", "bool.json",
                    lambda: _frame("true")),
    expression_case("expr-json-frames-object", '"frames" is an object', '"frames" must be a list', "obj.json",
                    lambda: '{"frames": {"a": 1}}'),
    expression_case("expr-csv-long-field", "CSV field of 200000 characters", "field larger than field limit",
                    "long.csv", lambda: "jawOpen\n" + "1" * 200_000 + "\n"),
    expression_case("expr-csv-nul", "CSV with a NUL byte", "is not a number", "nul.csv", lambda: "jawOpen\n0\x00\n"),
    expression_case("expr-csv-latin1", "CSV in Latin-1 with a non-ASCII name", "not a UTF-8", "latin1.csv",
                    lambda: "jawOpen,caf\xe9\n0.1,0.2\n".encode("latin1")),
    expression_case("expr-csv-ragged", "CSV row with a missing field", "fields, the header has", "ragged.csv",
                    lambda: "jawOpen,eyeBlinkLeft\n0.1\n"),
    expression_case("expr-npy-1e11-rows", ".npy header claiming 10^11 rows", "truncated", "rows.npy",
                    lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 52), }", bytes(64))),
    expression_case("expr-npy-negative-shape", ".npy header with shape (-5, 52)", "bad header", "neg.npy",
                    lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 52), }")),
    expression_case("expr-npy-bad-header", ".npy header that is not a dict", "bad header", "hdr.npy",
                    lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 52), ")),
    expression_case("expr-npy-pickle", ".npy of Python objects", "pickle", "objects.npy",
                    lambda: _npy(np.array([{"jawOpen": 1.0}], dtype=object), allow_pickle=True)),
    expression_case("expr-npz", ".npz archive named .npy", ".npz archive", "archive.npy", _npz),
    expression_case("expr-npy-text", "text file named .npy", "no NumPy header", "text.npy", lambda: "0.1 0.2\n"),
    expression_case("expr-npy-strings", ".npy of strings", "expected a float", "strings.npy",
                    lambda: _npy(np.array([["a"] * 52]))),
    expression_case("expr-npy-shape", ".npy of shape [3, 51]", "[T, 52]", "short.npy",
                    lambda: _npy(np.zeros((3, 51), np.float32))),
    pose_case("pose-1e11-rows", "pose .npy header claiming 10^11 poses", "truncated",
              lambda: npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 4, 4), }", bytes(64))),
    pose_case("pose-not-rigid", "pose matrices of all 2s", "not a rigid transform",
              lambda: _npy(np.full((2, 4, 4), 2.0, np.float32))),
]

CASES: list[Case] = PHOTOS + PLYS + BUNDLES + EXPRESSIONS


def table() -> str:
    """The markdown table of every case (what ``tests/bad_inputs.md`` holds)."""
    lines = [
        "# Bad-input corpus",
        "",
        "Generated by `tests/bad_inputs.py` (`python tests/bad_inputs.py` rewrites this file) and run",
        "by `tests/test_bad_inputs.py`: every case must exit 1 with one `Error:` line on stderr that",
        "names the input file and contains the expected text, print no traceback, and leave nothing",
        "behind.",
        "",
        "| case | command | input | expected in the error line |",
        "| --- | --- | --- | --- |",
    ]
    for case in CASES:
        lines.append(f"| {case.name} | `{case.command}` | {case.problem} | {case.expect} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TABLE.write_text(table(), encoding="utf-8")
    print(TABLE, file=sys.stderr)
