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
