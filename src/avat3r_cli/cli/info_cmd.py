"""``avat3r info AVATAR.ply [--json]``: what is in a Gaussian splat file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _vec(values: list[float]) -> str:
    return "  ".join(f"{axis} {v:+.4f}" for axis, v in zip("xyz", values))


def _print_table(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=data["path"], title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    degree = data["sh_degree"]
    coeffs = (degree + 1) ** 2
    rows = [
        ("Gaussians", f"{data['count']:,}"),
        ("SH degree", f"{degree} ({coeffs} coefficient{'s' if coeffs > 1 else ''} per channel)"),
        ("bounds min", _vec(data["bounds_min"])),
        ("bounds max", _vec(data["bounds_max"])),
        ("extent", " x ".join(f"{v:.4f}" for v in data["extent"]) + " m"),
        ("centre", _vec(data["centre"])),
        (
            "opacity",
            f"mean {data['opacity_mean']:.3f}  median {data['opacity_median']:.3f}  "
            f"min {data['opacity_min']:.3f}  max {data['opacity_max']:.3f}",
        ),
        ("faint (<0.05)", f"{100.0 * data['faint_fraction']:.1f} %"),
        (
            "scale (m)",
            f"min {data['scale_min']:.3g}  median {data['scale_median']:.3g}  max {data['scale_max']:.3g}",
        ),
        ("file size", f"{data['file_bytes'] / 1e6:.2f} MB"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console(highlight=False).print(table)


def info(
    avatar: Annotated[
        Path, typer.Argument(metavar="AVATAR.ply", help="A 3D Gaussian splat .ply (INRIA 3DGS layout).", show_default=False)
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the statistics as one JSON object on stdout.")
    ] = False,
) -> None:
    """Show an avatar's Gaussian count, SH degree, bounds, opacity and scale statistics."""
    from avat3r_cli.pipeline.info import avatar_info  # imports torch; keep --help fast

    data = avatar_info(avatar)
    if json_output:
        typer.echo(json.dumps(data))
    else:
        _print_table(data)
