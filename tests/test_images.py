"""Photo loading: formats, orientation, colour modes, size limits and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from avat3r_cli.core.errors import InputFileError
from avat3r_cli.io.images import _to_rgb, exif_focal_35mm, load_photo, read_photo


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


@pytest.mark.parametrize("mode", ["P", "PA", "1", "I;16", "LA", "CMYK"])
def test_early_reduce_keeps_every_mode_right(tmp_path, mode):
    """Images over max_side are box-reduced before conversion; palettes and 16-bit go through RGB/I first."""
    left = Image.new("RGB", (300, 200), (200, 40, 40))
    left.paste((40, 40, 200), (150, 0, 300, 200))
    if mode == "I;16":
        image = Image.fromarray(np.tile(np.linspace(0, 60000, 300).astype(np.uint16), (200, 1)))
    elif mode == "PA":
        image = left.convert("P").convert("PA")
    else:
        image = left.convert(mode)
    path = tmp_path / ("photo.tif" if mode in ("CMYK", "PA") else "photo.png")
    image.save(path)
    photo = read_photo(path, max_side=50)
    assert photo.image.shape == (33, 50, 3) and photo.warnings == []
    reference = np.asarray(_to_rgb(image).resize((50, 33), Image.Resampling.LANCZOS), dtype=np.int16)
    # Mean colour of each side, away from the red/blue edge (where two resampling chains differ
    # most) and robust to the 1-bit mode's dithering: averaged palette indices would be far off.
    for cols in (slice(3, 20), slice(30, 47)):
        got, want = photo.image[3:-3, cols].reshape(-1, 3).mean(0), reference[3:-3, cols].reshape(-1, 3).mean(0)
        assert np.abs(got - want).max() <= 4.0, (cols, got, want)


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    Image.new("RGB", (4000, 2000), (10, 200, 30)).save(tmp_path / "big.jpg")
    sizes = []
    real_load = Image.Image.load

    def spy(self):
        sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    out = load_photo(tmp_path / "big.jpg", max_side=500)
    assert out.shape == (250, 500, 3)
    assert sizes and max(max(s) for s in sizes) <= 1000  # JPEG draft: 1/4 scale, never the full 4000


def test_animated_and_odd_exif_photos_load_with_warnings(tmp_path, rgb):
    frames = [Image.fromarray(rgb), Image.fromarray(rgb[::-1].copy())]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    photo = read_photo(tmp_path / "moving.gif")
    assert photo.image.shape == (40, 60, 3)
    assert photo.warnings == [f"{tmp_path / 'moving.gif'}: is animated or multi-page; using its first frame"]
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 9  # not an orientation
    image.save(tmp_path / "odd.jpg", exif=exif)
    photo = read_photo(tmp_path / "odd.jpg")
    assert photo.image.shape == (40, 60, 3) and "invalid EXIF orientation 9" in photo.warnings[0]


@pytest.mark.parametrize(
    "tags",
    [
        {0xA405: "abc"},
        {0xA405: (1, 2)},
        {0x920A: 4.0, 0xA20E: 100.0, 0xA210: "abc"},
        {0x920A: 4.0, 0xA20E: 100.0, 0xA210: (1, 2)},
        {0x920A: (4, 1, 3)},
        {0x920A: 4.0, 0xA20E: 0.0},
    ],
)
def test_malformed_exif_focal_tags_give_none(tmp_path, rgb, tags):
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif.get_ifd(0x8769).update(tags)
    image.save(tmp_path / "tagged.jpg", exif=exif)
    assert exif_focal_35mm(tmp_path / "tagged.jpg") is None


def test_malformed_pixel_size_tag_falls_back_to_the_image_size(tmp_path, rgb):
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif.get_ifd(0x8769).update({0x920A: 4.0, 0xA20E: 100.0, 0xA002: "wide"})
    image.save(tmp_path / "tagged.jpg", exif=exif)
    # 60 px at 100 px/inch: a 15.24 mm sensor side, so 4 mm is 4 * 36 / 15.24 mm equivalent.
    assert exif_focal_35mm(tmp_path / "tagged.jpg") == pytest.approx(4.0 * 36.0 / (0.6 * 25.4))


def test_corrupt_exif_block_costs_only_the_orientation(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "corrupt.jpg", exif=b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff garbage")
    photo = read_photo(tmp_path / "corrupt.jpg")
    assert photo.image.shape == (40, 60, 3)
    assert exif_focal_35mm(tmp_path / "corrupt.jpg") is None
