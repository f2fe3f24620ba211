"""``avat3r synth -o DIR --subjects N --seed S``: synthetic multi-view heads for training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from avat3r_cli.cli.progress import counter, progress_bar


def synth(
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="DIR", help="Dataset folder (created; resumable).", show_default=False)
    ],
    subjects: Annotated[int, typer.Option(help="Number of synthetic identities (>= 1).")] = 1,
    seed: Annotated[int, typer.Option(help="Dataset seed; subject i uses seed * 100003 + i.")] = 0,
    timesteps: Annotated[int, typer.Option(help="Expressions per subject; the first is neutral.")] = 6,
    cameras: Annotated[int, typer.Option(help="Views per timestep; camera 0 is frontal.")] = 12,
    resolution: Annotated[int, typer.Option(help="Square image side in pixels (16..2048).")] = 256,
    shard: Annotated[
        str, typer.Option(metavar="I/N", help="Render only subjects with index % N == I (split work over N processes).")
    ] = "0/1",
    json_output: Annotated[
        bool, typer.Option("--json", help="Also print a JSON summary of what was written on stdout.")
    ] = False,
) -> None:
    """Render synthetic multi-view heads (random identities and expressions) in the dataset layout."""
    from avat3r_cli.core.errors import Avat3rError
    from avat3r_cli.pipeline.synth import synthesize  # imports torch; keep --help fast

    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise Avat3rError(f"--shard must look like I/N (e.g. 0/2), got {shard!r}") from None

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        on_progress = counter(bar, "Rendering")
        result = synthesize(output, subjects, seed=seed, timesteps=timesteps, cameras=cameras,
                            resolution=resolution, progress=on_progress, shard=(index, count))
    note = f", {result.skipped} already complete" if result.skipped else ""
    missed = f"; MediaPipe left {result.unlabelled} timesteps unlabelled" if result.unlabelled else ""
    console.print(
        f"Wrote {result.output}/ ({result.generated} subjects, {result.images} images{note}) "
        f"in {result.seconds:.1f} s{missed}",
        markup=False,
    )
    if json_output:
        typer.echo(json.dumps(result.to_dict()))
