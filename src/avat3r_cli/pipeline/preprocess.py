"""``preprocess``: photos -> model inputs on disk, a contact sheet and a JSON report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.tensors import save_tensors
from avat3r_cli.preprocess.contact_sheet import contact_sheet
from avat3r_cli.preprocess.photos import PreparedPhotos, prepare_photos


def default_cache_dir() -> Path:
    """``$AVAT3R_CACHE`` or ``$XDG_CACHE_HOME/avat3r-cli`` (``~/.cache/avat3r-cli``), subfolder preprocess."""
    root = os.environ.get("AVAT3R_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "avat3r-cli")
    return Path(root) / "preprocess"


def prepared_report(prepared: PreparedPhotos) -> dict:
    """JSON-ready summary: the views used (name, pose, top blendshapes), skipped photos, warnings."""
    from avat3r_cli.core.expressions import EXPRESSION_NAMES

    views = []
    for v in prepared.views:
        top = sorted(range(len(v.blendshapes)), key=lambda i: -float(v.blendshapes[i]))[:3]
        views.append({"photo": v.name, "pose": v.pose, "top_blendshapes": {EXPRESSION_NAMES[i]: round(float(v.blendshapes[i]), 3) for i in top}})
    return {
        "resolution": prepared.resolution,
        "geometry": prepared.geometry,
        "features": prepared.features,
        "views": views,
        "skipped": [{"photo": p, "reason": why} for p, why in prepared.skipped],
        "warnings": prepared.warnings,
    }


def run_preprocess(
    photos: list[Path],
    output: Path,
    resolution: int = 128,
    geometry: str = "template",
    features: str = "none",
    focal_px: float | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict:
    """Prepare ``photos`` and write ``output/{inputs.safetensors, contact_sheet.png, preprocess.json}``."""
    if not 32 <= resolution <= 1024 or resolution % 16:
        raise Avat3rError(f"--resolution must be a multiple of 16 in 32..1024, got {resolution}")
    if output.exists() and not output.is_dir():
        raise Avat3rError(f"{output}: exists and is not a folder")
    start = time.perf_counter()
    prepared = prepare_photos(
        [Path(p) for p in photos], resolution, geometry=geometry, features=features, focal_px=focal_px,
        cache_dir=default_cache_dir() if use_cache else None, progress=progress, notice=notice,
    )
    output.mkdir(parents=True, exist_ok=True)
    stacked = prepared.stacked()
    report = prepared_report(prepared)
    save_tensors(output / "inputs.safetensors", stacked, {"report": json.dumps(report)})
    with atomic_output(output / "contact_sheet.png") as tmp:
        contact_sheet(prepared).save(tmp, format="PNG")
    report["seconds"] = round(time.perf_counter() - start, 3)
    with atomic_output(output / "preprocess.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
