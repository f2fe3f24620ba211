"""Contact sheets of a leave-one-out photo evaluation: photo | render | nearest view, one PNG per photo.

The panels are the images exactly as they were scored (composited over white outside their
silhouettes), enlarged to at least ``MIN_PANEL`` pixels so small crops stay visible, each with a
caption underneath.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.eval.photo_metrics import to_uint8
from avat3r_cli.eval.photos import HeldOutImages
from avat3r_cli.io.atomic import atomic_output

MIN_PANEL = 256
CAPTION_HEIGHT = 20


def sheet_image(held_out: HeldOutImages) -> Image.Image:
    """Three panels side by side with captions: ``[side + CAPTION_HEIGHT, 3 * side]`` pixels."""
    r = int(held_out.target.shape[-1])
    side = max(r, MIN_PANEL)
    panels = [(held_out.target, f"photo: {held_out.photo}"), (held_out.render, "avat3r: avatar from the others"),
              (held_out.nearest, f"nearest view: {held_out.nearest_photo}")]
    sheet = Image.new("RGB", (3 * side, side + CAPTION_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(panels):
        tile = Image.fromarray(to_uint8(image))
        if side != r:
            tile = tile.resize((side, side), Image.Resampling.NEAREST)
        sheet.paste(tile, (i * side, 0))
        draw.text((i * side + 4, side + 4), caption[:48], fill=(0, 0, 0))
    return sheet


def sheet_name(index: int, photo: str) -> str:
    """``01-photo_name.png``: numbered, so photos of one name from different folders do not collide."""
    return f"{index + 1:02d}-{Path(photo).stem}.png"


def check_sheet_folder(folder: str | Path) -> None:
    """Raise Avat3rError when ``folder`` cannot hold the sheets (before any work is done)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise Avat3rError(f"{folder}: exists and is not a folder")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise Avat3rError(f"{folder}: cannot write there, {parent} is a file, not a folder")
            break


def write_sheets(images: list[HeldOutImages], folder: str | Path) -> list[Path]:
    """One PNG per held-out photo in ``folder`` (created), each written atomically; returns the paths."""
    folder = Path(folder)
    check_sheet_folder(folder)
    written = []
    for i, held_out in enumerate(images):
        path = folder / sheet_name(i, held_out.photo)
        with atomic_output(path) as tmp:
            sheet_image(held_out).save(tmp, format="PNG")
        written.append(path)
    return written
