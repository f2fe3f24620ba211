"""``avat3r prepare-data DIR``: run the photo preprocessing on every image of a dataset, once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from avat3r_cli.cli.progress import progress_bar


def prepare_data(
    data: Annotated[Path, typer.Argument(metavar="DIR", help="Dataset folder (docs/dataset.md).", show_default=False)],
    resolution: Annotated[int, typer.Option(help="Crop side: the model's input resolution (see `avat3r models`).")] = 128,
    geometry: Annotated[str, typer.Option(
        help="Position-map backend: template, or dust3r (DUSt3R's maps for the input cameras; its weights must be "
             "downloaded first: avat3r weights download dust3r).")] = "template",
    device: Annotated[str, typer.Option(help="Where DUSt3R runs: auto|cpu|cuda[:i]|mps.")] = "auto",
) -> None:
    """Write SUBJECT/prepared_r{R}_{geometry}.safetensors for every subject that lacks a current one."""
    from avat3r_cli.pipeline.dataset import ensure_prepared

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        task = bar.add_task("Preparing subjects", total=None)
        count = ensure_prepared(data, resolution, geometry,
                                progress=lambda done, total: bar.update(task, completed=done, total=total),
                                device=device, notice=lambda line: console.print(line, markup=False))
    console.print(f"Prepared {count} subject(s) of {data} at {resolution}x{resolution}" if count
                  else f"{data}: every subject is already prepared at {resolution}x{resolution}")
