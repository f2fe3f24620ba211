"""``avat3r preprocess PHOTOS... -o DIR``: photos to model inputs, and a contact sheet to check them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from avat3r_cli.cli.progress import progress_bar


def preprocess(
    photos: Annotated[list[Path], typer.Argument(metavar="PHOTOS...", help="Photos of one person (JPEG, PNG, WebP, BMP, TIFF).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for inputs.safetensors, contact_sheet.png and preprocess.json.", show_default=False)],
    resolution: Annotated[int, typer.Option(help="Crop side in pixels (the model's input resolution).")] = 128,
    geometry: Annotated[str, typer.Option(help="Position-map backend: template (offline, CPU) or dust3r.")] = "template",
    features: Annotated[str, typer.Option(help="Image features: none, or sapiens[-0.3b|-0.6b|-1b|-2b].")] = "none",
    focal: Annotated[float | None, typer.Option(help="Focal length in pixels for every photo (default: EXIF, else a 50 mm equivalent).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute instead of reusing cached results.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Turn photos into exactly what the model consumes: head crops, cameras, position maps."""
    from avat3r_cli.pipeline.preprocess import run_preprocess

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        task = bar.add_task("Preprocessing", total=len(photos))
        report = run_preprocess(
            photos, output, resolution=resolution, geometry=geometry, features=features, focal_px=focal,
            use_cache=not no_cache, progress=lambda done, total: bar.update(task, completed=done, total=total),
            notice=lambda line: console.print(line),
        )
    for warning in report["warnings"]:
        console.print(f"[yellow]Warning:[/yellow] {warning}")
    console.print(f"Wrote {output}/ ({len(report['views'])} views at {resolution}x{resolution}) in {report['seconds']:.1f} s")
    if as_json:
        typer.echo(json.dumps(report))
