"""``avat3r render AVATAR.ply -o OUT.mp4``: a turntable video of an avatar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from avat3r_cli.cli.progress import counter, progress_bar

def render(
    avatar: Annotated[
        Path, typer.Argument(metavar="AVATAR.ply", help="A 3D Gaussian splat .ply (INRIA 3DGS layout).", show_default=False)
    ],
    # str, not Path: Path drops a trailing '/', which is how a PNG-frame folder is asked for.
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", metavar="OUT",
            help="Output: .mp4 (H.264), .gif, or a folder of PNG frames (no suffix or a trailing '/').",
            show_default=False,
        ),
    ],
    frames: Annotated[int, typer.Option(help="Frames in one full turn (>= 1).")] = 120,
    size: Annotated[int, typer.Option(help="Square image side in pixels (16..4096).")] = 512,
    fps: Annotated[int, typer.Option(help="Frames per second (1..240).")] = 30,
    background: Annotated[
        str, typer.Option(help="Background: white, black, gray, #rrggbb or r,g,b in 0..1.")
    ] = "white",
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    fov: Annotated[float, typer.Option(help="Vertical field of view of the camera, degrees.")] = 30.0,
    elevation: Annotated[float, typer.Option(help="Camera height above the avatar's equator, degrees.")] = 10.0,
    json_output: Annotated[
        bool, typer.Option("--json", help="Also print a JSON summary of what was written on stdout.")
    ] = False,
) -> None:
    """Render a 360° turntable of an avatar to a video, a GIF or PNG frames."""
    from avat3r_cli.pipeline.turntable import render_turntable  # imports torch; keep --help fast

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        on_progress = counter(bar, "Rendering")
        result = render_turntable(
            avatar, output, frames=frames, size=size, fps=fps, background=background,
            device=device, fov_deg=fov, elevation_deg=elevation, progress=on_progress,
        )
    video = result.video
    shown = f"{video.path}/" if video.kind == "png" else str(video.path)
    what = ("PNG " if video.kind == "png" else "") + ("frame" if video.frames == 1 else "frames")
    console.print(
        f"Wrote {shown} ({video.frames} {what}, {video.width}x{video.height}, {video.fps} fps) "
        f"in {result.seconds:.1f} s on {result.device}",
        markup=False,
    )
    if json_output:
        typer.echo(json.dumps(result.to_dict()))
