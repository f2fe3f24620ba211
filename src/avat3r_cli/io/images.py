"""Reading photos: any common format, EXIF orientation applied, converted to 8-bit RGB.

Letters: H, W pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avat3r_cli.core.errors import InputFileError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Larger photos are downscaled before anything else: face analysis and crops never need more,
# and a 50-megapixel phone photo would otherwise cost seconds and hundreds of MB per step.
DEFAULT_MAX_SIDE = 2048


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


def load_photo(path: str | Path, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """A photo as ``uint8 [H, W, 3]`` RGB, upright (EXIF orientation applied).

    Images whose longer side exceeds ``max_side`` are downscaled (Lanczos) to that size.
    Raises InputFileError naming the file for a missing path, a directory, an empty, truncated
    or non-image file.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns on huge images (decompression bomb); we downscale them ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size directly
                image = ImageOps.exif_transpose(image)
                image.load()
                image = _to_rgb(image)
    except UnidentifiedImageError:
        raise InputFileError(path, "not an image Pillow can read (JPEG, PNG, WebP, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "truncated" in reason.lower() or isinstance(error, (OSError, SyntaxError)):
            raise InputFileError(path, f"unreadable or truncated image ({reason})") from None
        raise InputFileError(path, f"unreadable image ({reason})") from None
    except Image.DecompressionBombError:
        raise InputFileError(path, "image is too large to decode safely") from None
    if min(image.size) < 1:
        raise InputFileError(path, "image has no pixels")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def exif_focal_35mm(path: str | Path) -> float | None:
    """The 35 mm-equivalent focal length (mm) a photo's EXIF records, or None.

    Uses FocalLengthIn35mmFilm (tag 0xA405 in the Exif IFD) when present; otherwise derives it
    from FocalLength (0x920A) and the sensor size implied by FocalPlaneX/YResolution
    (0xA20E/0xA20F, unit 0xA210) and the pixel dimensions, taking the sensor's long side as
    36 mm (the convention of ``head_pose.focal_from_exif_35mm``). Unreadable files, missing or
    implausible values (outside 8-1200 mm) give None: the caller falls back to a default.
    """
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            exif_ifd = exif.get_ifd(0x8769)
            size = image.size
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        return None

    def number(value: object) -> float | None:
        try:
            result = float(value)  # ints and IFDRational alike
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return result if np.isfinite(result) and result > 0 else None

    f35 = number(exif_ifd.get(0xA405))
    if f35 is None:
        focal_mm = number(exif_ifd.get(0x920A))
        res_x, res_y = number(exif_ifd.get(0xA20E)), number(exif_ifd.get(0xA20F))
        unit_mm = {1: 25.4, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(int(exif_ifd.get(0xA210, 2) or 2))
        width = number(exif_ifd.get(0xA002)) or float(size[0])
        height = number(exif_ifd.get(0xA003)) or float(size[1])
        if focal_mm is None or res_x is None or unit_mm is None:
            return None
        sensor_long_mm = max(width / res_x, height / (res_y or res_x)) * unit_mm
        f35 = focal_mm * 36.0 / sensor_long_mm
    return f35 if 8.0 <= f35 <= 1200.0 else None
