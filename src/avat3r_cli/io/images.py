"""Reading photos: any common format, EXIF orientation applied, converted to 8-bit RGB.

A photo is decoded no larger than it must be: JPEGs at a reduced scale straight from the file
(Pillow's draft mode), other formats box-reduced by an integer factor right after decoding, before
any colour conversion or rotation touches the full-size pixels. EXIF is optional metadata: a
malformed tag never fails a photo, it only costs the orientation (with a warning) or the focal
length (the caller's default is used).

Letters: H, W pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from avat3r_cli.core.errors import InputFileError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Larger photos are downscaled before anything else: face analysis and crops never need more,
# and a 50-megapixel phone photo would otherwise cost seconds and hundreds of MB per step.
DEFAULT_MAX_SIDE = 2048
_ORIENTATION_TAG = 0x0112
_EXIF_IFD = 0x8769
# EXIF orientation -> the transpose that shows the photo upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Image.reduce averages pixel values, which is meaningless for palette indices and unsupported
# for 1-bit and 16-bit modes; those are converted first.
_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F")


@dataclass
class Photo:
    """A loaded photo: ``image`` uint8 ``[H, W, 3]`` RGB, upright, and one-line notes for the user."""

    image: np.ndarray
    warnings: list[str] = field(default_factory=list)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, PA, CMYK, I;16, I, F, RGBA...) to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: scale the actual range into 0..255 rather than clipping.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        image = Image.fromarray(((arr - lo) * scale).round().astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparent areas on white, the usual look of a cut-out portrait.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _orientation(image: Image.Image) -> tuple[int, str | None]:
    """The EXIF orientation (1 when absent) and a warning when the tag is unreadable or invalid."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as error:  # any EXIF parser failure only costs the orientation
        return 1, f"unreadable EXIF ({type(error).__name__}); orientation not applied"
    if value in (None, 0, 1):  # 0 is a common writer bug meaning "not set"
        return 1, None
    if isinstance(value, bool) or not isinstance(value, int) or value not in _UPRIGHT:
        return 1, f"invalid EXIF orientation {str(value)[:20]}; used as stored"
    return value, None


def _reduce_early(image: Image.Image, max_side: int) -> Image.Image:
    """Box-reduce a decoded image by the largest integer factor that keeps its long side >= max_side."""
    factor = max(image.size) // max_side
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:
        image = image.convert("I") if image.mode.startswith("I;16") else _to_rgb(image)
    return image.reduce(factor)


def read_photo(path: str | Path, max_side: int = DEFAULT_MAX_SIDE) -> Photo:
    """A photo as ``uint8 [H, W, 3]`` RGB, upright (EXIF orientation applied), with warnings.

    Images whose longer side exceeds ``max_side`` are downscaled to that size (decoded at a
    reduced scale where the format allows, then Lanczos). Animated or multi-page files use their
    first frame, with a warning.

    Raises:
        InputFileError: naming the file for a missing path, a directory, an empty, truncated,
            oversized or non-image file.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow warns on huge images (decompression bomb) and on odd metadata; we downscale
            # the first ourselves and the second is reported (or harmless): stderr stays clean.
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                # is_animated looks for a second frame only; n_frames would walk the whole file.
                if getattr(image, "is_animated", False) is True:
                    notes.append("is animated or multi-page; using its first frame")
                orientation, problem = _orientation(image)
                if problem:
                    notes.append(problem)
                full_size = image.size  # the final size follows from this, whatever draft decodes
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size directly
                image.load()
                image = _to_rgb(_reduce_early(image, max_side))
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image Pillow can read (JPEG, PNG, WebP, BMP, TIFF)") from None
    except Image.DecompressionBombError:
        raise InputFileError(path, "image is too large to decode safely") from None
    except MemoryError:
        raise InputFileError(path, "image is too large to decode (out of memory)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputFileError(path, f"unreadable or truncated image ({reason})") from None
    except Exception as error:  # a decoder plugin's own failure on a hostile file
        raise InputFileError(path, f"unreadable image ({type(error).__name__}: {error})") from error
    if min(image.size) < 1:
        raise InputFileError(path, "image has no pixels")
    width, height = full_size
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if image.size != size:  # draft and reduce round up: a last Lanczos step to the exact size
            image = image.resize(size, Image.Resampling.LANCZOS)
    if orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[orientation])
    return Photo(np.asarray(image, dtype=np.uint8).copy(), [f"{path}: {note}" for note in notes])


def load_photo(path: str | Path, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """``read_photo(path, max_side).image``: the photo as ``uint8 [H, W, 3]``, without the warnings."""
    return read_photo(path, max_side).image


def _number(value: object) -> float | None:
    """A positive finite number from an EXIF value (int, float, IFDRational), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "numerator"):
        return None  # strings, bytes, tuples: malformed tags
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return result if np.isfinite(result) and result > 0 else None


def exif_focal_35mm(path: str | Path) -> float | None:
    """The 35 mm-equivalent focal length (mm) a photo's EXIF records, or None.

    Uses FocalLengthIn35mmFilm (tag 0xA405 in the Exif IFD) when present; otherwise derives it
    from FocalLength (0x920A) and the sensor size implied by FocalPlaneX/YResolution
    (0xA20E/0xA20F, unit 0xA210) and the pixel dimensions, taking the sensor's long side as
    36 mm (the convention of ``head_pose.focal_from_exif_35mm``). Unreadable files, malformed
    tags (strings, tuples, zero), and implausible values (outside 8-1200 mm) give None: the
    caller falls back to a default.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb and metadata warnings
            with Image.open(path) as image:
                exif_ifd = image.getexif().get_ifd(_EXIF_IFD)
                size = image.size
            f35 = _number(exif_ifd.get(0xA405))
            if f35 is None:
                focal_mm = _number(exif_ifd.get(0x920A))
                res_x, res_y = _number(exif_ifd.get(0xA20E)), _number(exif_ifd.get(0xA20F))
                unit = exif_ifd.get(0xA210, 2)
                unit_mm = {1: 25.4, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(unit if isinstance(unit, int) else -1)
                width = _number(exif_ifd.get(0xA002)) or float(size[0])
                height = _number(exif_ifd.get(0xA003)) or float(size[1])
                if focal_mm is None or res_x is None or unit_mm is None:
                    return None
                sensor_long_mm = max(width / res_x, height / (res_y or res_x)) * unit_mm
                f35 = focal_mm * 36.0 / sensor_long_mm
    except Exception:  # EXIF is optional; any parser failure means "not recorded"
        return None
    return f35 if np.isfinite(f35) and 8.0 <= f35 <= 1200.0 else None
