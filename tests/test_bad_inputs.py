"""The bad-input corpus (``tests/bad_inputs.py``, table in ``tests/bad_inputs.md``) on the real CLI.

Each case must end as the README promises: exit 1, exactly one ``Error:`` line on stderr naming
the file, no traceback, nothing left behind. Controls run the same command lines on valid
inputs, so a case cannot pass because the command line itself is broken. Inputs that are odd but
usable (malformed EXIF, an animated file, a sideways face) must work, with a warning where the
user should know.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avat3r_cli.core.errors import PARSE_ERRORS, InputFileError, input_file_errors
from bad_input_corpus import Corpus, animate, create, preprocess, render
from bad_inputs import CASES, TABLE, table
from cli_fixtures import STAGE_LINE, invoke, shared_cache, weights  # noqa: F401


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, weights: Path) -> Corpus:  # noqa: F811
    return Corpus(tmp_path_factory.mktemp("corpus"), weights)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_bad_input(result, named: Path, expect: str) -> None:
    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    # Off a terminal, `create` prints a line per stage before the error; those are not errors.
    lines = [line for line in result.stderr.strip().splitlines() if not STAGE_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"expected one Error: line, got:\n{result.stderr}"
    assert "Traceback" not in result.output
    assert str(named) in lines[0], f"{named} not named in {lines[0]!r}"
    assert expect in lines[0], f"{expect!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(corpus: Corpus, case) -> None:
    folder = corpus.folder(case)
    run = case.build(corpus, folder)
    before = files_under(folder)
    result = invoke(*run.argv)
    assert_bad_input(result, run.names, case.expect)
    assert files_under(folder) == before, f"left behind: {sorted(files_under(folder) - before)}"
    assert not list(corpus.root.rglob("*.partial-*"))


def test_case_names_are_unique_and_the_table_is_current() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert TABLE.read_text(encoding="utf-8") == table(), "run: python tests/bad_inputs.py"


def test_controls_succeed(corpus: Corpus, tmp_path: Path) -> None:
    """The corpus's command lines on valid inputs: each bad case differs from these only in its input."""
    result = invoke(*animate(corpus.valid_bundle, corpus.valid_codes, tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "out" / "anim.mp4").is_file()
    result = invoke(*render(corpus.valid_ply, tmp_path / "r"))
    assert result.exit_code == 0, result.output
    result = invoke("info", corpus.valid_ply, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["count"] == 50


# --- odd but usable inputs --------------------------------------------------------------------


def _exif_photo(corpus: Corpus, path: Path, exif_tags: dict[int, object], orientation: object = None) -> Path:
    image = corpus.face.copy()
    exif = image.getexif()
    if orientation is not None:
        exif[0x0112] = orientation
    exif.get_ifd(0x8769).update(exif_tags)
    image.save(path, exif=exif)
    return path


def test_malformed_exif_values_are_ignored(corpus: Corpus, tmp_path: Path) -> None:
    photos = [
        # FocalLengthIn35mmFilm as text; then FocalLength with a unit of the wrong type and a tuple.
        _exif_photo(corpus, tmp_path / "f35_text.jpg", {0xA405: "abc"}),
        _exif_photo(corpus, tmp_path / "unit_text.jpg", {0x920A: 4.0, 0xA20E: 100.0, 0xA210: "abc"}),
        _exif_photo(corpus, tmp_path / "focal_tuple.jpg", {0x920A: (4, 1, 3)}),
        _exif_photo(corpus, tmp_path / "orientation.jpg", {}, orientation=99),
    ]
    for photo in photos:
        result = invoke(*preprocess(tmp_path / photo.stem, photo))
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    assert "invalid EXIF orientation" in result.stderr  # the last one: used as stored, with a warning


def test_animated_file_uses_its_first_frame_with_a_warning(corpus: Corpus, tmp_path: Path) -> None:
    gif = tmp_path / "moving.gif"
    corpus.face.save(gif, save_all=True, append_images=[corpus.face.rotate(10)], duration=100)
    result = invoke(*preprocess(tmp_path / "out", gif))
    assert result.exit_code == 0, result.output
    assert "is animated or multi-page; using its first frame" in result.stderr


def test_sideways_face_is_used_with_a_warning(corpus: Corpus, tmp_path: Path) -> None:
    photo = tmp_path / "sideways.png"
    corpus.face.rotate(90, expand=True).save(photo)
    result = invoke(*preprocess(tmp_path / "out", photo))
    assert result.exit_code == 0, result.output
    assert "sideways" in result.stderr and "orientation" in result.stderr


def test_create_refuses_an_avatar_with_no_gaussians(corpus: Corpus, tmp_path: Path, monkeypatch) -> None:
    """A model whose confidence threshold no pixel reaches would write an empty avatar: refused."""
    import avat3r_cli.pipeline.create as create_module

    photo = tmp_path / "face.png"
    corpus.face.save(photo)
    real = create_module.bundle_from_prepared

    def all_doubtful(prepared, info, threshold):  # every pixel below the threshold
        bundle = real(prepared, info, threshold)
        bundle.confidence.mul_(0.0)
        return bundle

    monkeypatch.setattr(create_module, "bundle_from_prepared", all_doubtful)
    result = invoke(*create(corpus, tmp_path, photo))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.strip().splitlines() if not STAGE_LINE.match(line)]
    assert len(lines) == 1 and "face.png" in lines[0] and "no Gaussians" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


def test_large_png_is_reduced_early_and_quietly(tmp_path: Path, recwarn, monkeypatch) -> None:
    """Over Pillow's decompression-bomb warning limit: no warning escapes, colours survive the reduce."""
    from avat3r_cli.io.images import read_photo

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # warn above 0.1 MP, refuse above 0.2 MP
    big = np.zeros((300, 500, 3), np.uint8)
    big[:, :250] = (200, 30, 30)
    big[:, 250:] = (30, 30, 200)
    Image.fromarray(big).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "big.png")
    photo = read_photo(tmp_path / "big.png", max_side=100)
    assert photo.image.shape == (60, 100, 3) and photo.warnings == []
    assert abs(int(photo.image[30, 10, 0]) - 200) <= 3 and abs(int(photo.image[30, 90, 2]) - 200) <= 3
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


@pytest.mark.parametrize("error", list(PARSE_ERRORS), ids=[e.__name__ for e in PARSE_ERRORS])
def test_the_net_turns_each_parser_failure_into_one_line(tmp_path: Path, error: type[BaseException]) -> None:
    path = tmp_path / "take.csv"
    with pytest.raises(InputFileError) as info, input_file_errors(path, "expression file"):
        raise error("line one\nline two")
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "expression file" in message
    assert isinstance(info.value.__cause__, error)  # AVAT3R_DEBUG still shows where it came from
    with pytest.raises(InputFileError, match="already precise"), input_file_errors(path, "expression file"):
        raise InputFileError(path, "already precise")
