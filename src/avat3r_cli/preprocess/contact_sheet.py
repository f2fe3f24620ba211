"""A contact sheet PNG of prepared photos, so a person can see what went into the model.

One row per photo: the head crop with its landmarks, the position map (x, y, z as colour, faded
by confidence), the confidence, and the top-3 blendshapes with the solved head pose.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from avat3r_cli.core.expressions import EXPRESSION_NAMES
from avat3r_cli.preprocess.photos import PreparedPhotos

_TEXT_WIDTH = 220


def _position_image(points: np.ndarray, confidence: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    rgb = (points.transpose(1, 2, 0) - lo) / np.maximum(hi - lo, 1e-6)
    return (np.clip(rgb, 0, 1) * confidence.transpose(1, 2, 0) * 255).astype(np.uint8)


def contact_sheet(prepared: PreparedPhotos, tile: int = 192) -> Image.Image:
    """The sheet as a PIL image: ``len(views)`` rows of three ``tile``-sized panels and a caption."""
    views = prepared.views
    all_points = np.concatenate([v.positions.numpy().reshape(3, -1) for v in views], axis=1)
    lo, hi = np.percentile(all_points, 1, axis=1), np.percentile(all_points, 99, axis=1)
    sheet = Image.new("RGB", (3 * tile + _TEXT_WIDTH, tile * len(views)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    scale = tile / prepared.resolution
    for row, view in enumerate(views):
        y = row * tile
        crop = Image.fromarray(view.image).resize((tile, tile), Image.Resampling.BICUBIC)
        crop_draw = ImageDraw.Draw(crop)
        for x_px, y_px in view.landmarks[:468] * scale:
            crop_draw.point((float(x_px), float(y_px)), fill=(0, 255, 0))
        sheet.paste(crop, (0, y))
        pos = _position_image(view.positions.numpy(), view.confidence.numpy(), lo[None, None], hi[None, None])
        sheet.paste(Image.fromarray(pos).resize((tile, tile), Image.Resampling.NEAREST), (tile, y))
        conf = (np.repeat(view.confidence.numpy(), 3, axis=0).transpose(1, 2, 0) * 255).astype(np.uint8)
        sheet.paste(Image.fromarray(conf).resize((tile, tile), Image.Resampling.NEAREST), (2 * tile, y))
        top = np.argsort(-view.blendshapes)[:3]
        lines = [view.name[:30], ""] + [f"{EXPRESSION_NAMES[i]}: {view.blendshapes[i]:.2f}" for i in top]
        pose = view.pose
        lines += ["", f"yaw {pose['yaw_deg']:+.0f}  pitch {pose['pitch_deg']:+.0f}  roll {pose['roll_deg']:+.0f}",
                  f"distance {pose['distance_m']:.2f} m  rms {pose['rms_px']:.1f} px"]
        draw.multiline_text((3 * tile + 8, y + 8), "\n".join(lines), fill=(0, 0, 0), spacing=4)
    return sheet
