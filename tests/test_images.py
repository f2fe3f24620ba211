"""Photo loading: formats, orientation, colour modes, size limits and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.io.images import load_photo


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 40, 40)
    image[:, 30:] = (40, 40, 200)
    return np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tif"])
def test_formats_load_as_rgb(tmp_path, rgb, suffix):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(rgb).save(path)
    out = load_photo(path)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert abs(int(out[20, 5, 0]) - 200) < 25 and abs(int(out[20, 55, 2]) - 200) < 25


def test_exif_orientation_is_applied(tmp_path, rgb):
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    out = load_photo(tmp_path / "rotated.jpg")
    assert out.shape == (60, 40, 3)
    assert out[5, 20, 0] > 150 and out[55, 20, 2] > 150  # red (left half) is now on top


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA"])
def test_colour_modes_convert(tmp_path, rgb, mode):
    path = tmp_path / ("photo.tif" if mode == "CMYK" else "photo.png")
    Image.fromarray(rgb).convert(mode).save(path)
    out = load_photo(path)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    out = load_photo(tmp_path / "deep.png")
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and 100 < out[0, 32, 0] < 160


def test_transparent_areas_become_white(tmp_path, rgb):
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    assert (load_photo(tmp_path / "cut.png") == 255).all()


def test_large_photos_are_downscaled_first(tmp_path):
    Image.new("RGB", (3000, 1500), (10, 20, 30)).save(tmp_path / "big.jpg")
    out = load_photo(tmp_path / "big.jpg", max_side=1024)
    assert out.shape == (512, 1024, 3)


def test_bad_inputs_name_the_file(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    cases = {
        "truncated.jpg": "truncated",
        "empty.jpg": "empty",
        "notes.jpg": "not an image",
        "missing.jpg": "does not exist",
    }
    for name, problem in cases.items():
        with pytest.raises(InputFileError, match=problem) as info:
            load_photo(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name))
    with pytest.raises(InputFileError, match="directory"):
        load_photo(tmp_path)
