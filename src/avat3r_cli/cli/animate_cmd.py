"""``avat3r animate AVATAR --expr FILE -o OUT.mp4``: drive an avatar with expression codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from avat3r_cli.cli.progress import counter, progress_bar


def animate(
    avatar: Annotated[Path, typer.Argument(metavar="AVATAR", help="avatar.ply or avatar.avat3r.safetensors (each finds the other), or their folder.", show_default=False)],
    expr: Annotated[Path, typer.Option("--expr", metavar="FILE", help="Expression codes: .npy [T, 52], .csv with ARKit column names (e.g. Live Link Face), or .json.", show_default=False)],
    # str, not Path: Path drops a trailing '/', which is how a PNG-frame folder is asked for.
    output: Annotated[str, typer.Option("--output", "-o", metavar="OUT", help="Output: .mp4, .gif, or a folder of PNG frames (no suffix or a trailing '/').", show_default=False)],
    ply_dir: Annotated[Path | None, typer.Option("--ply-dir", metavar="DIR", help="Also write one standard .ply per frame (frame_00000.ply, ...).", show_default=False)] = None,
    pose: Annotated[Path | None, typer.Option("--pose", metavar="FILE", help="Head motion .npy [T, 4, 4] relative to the first frame (avat3r track --pose).", show_default=False)] = None,
    fps: Annotated[int, typer.Option(help="Frames per second (1..240).")] = 30,
    camera: Annotated[str, typer.Option(help="front (fixed) or orbit (one full turn over the clip).")] = "front",
    # 256, as create's videos: every frame is a model decode plus a render, and CPUs are the common case.
    size: Annotated[int, typer.Option(help="Square image side in pixels (16..4096).")] = 256,
    background: Annotated[str, typer.Option(help="Background: white, black, gray, #rrggbb or r,g,b in 0..1.")] = "white",
    weights: Annotated[str | None, typer.Option(help="Model weights; default the model the avatar was made with (a different model is refused).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Also print a JSON summary on stdout.")] = False,
) -> None:
    """Animate an avatar made by `avat3r create` with a sequence of expression codes."""
    from avat3r_cli.pipeline.animate import run_animate  # imports torch; keep --help fast

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        on_progress = counter(bar, "Animating")
        result = run_animate(
            avatar, expr, output, ply_dir=ply_dir, fps=fps, camera=camera, size=size, pose=pose,
            weights=weights, device=device, background=background, progress=on_progress,
            warn=lambda line: console.print(Text.assemble(("Warning: ", "yellow"), line)),
        )
    video = result.video
    plys = f" and {video.frames} .ply files in {result.ply_dir}/" if result.ply_dir else ""
    console.print(
        f"Wrote {video.path} ({video.frames} frames, {video.width}x{video.height}, {video.fps} fps){plys} "
        f"in {result.seconds:.1f} s on {result.device}",
        markup=False,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
