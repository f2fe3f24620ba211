"""``avat3r track VIDEO -o expr.npy [--pose pose.npy]``: expression codes from a face video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from avat3r_cli.cli.progress import progress_bar


def track(
    video: Annotated[
        Path,
        typer.Argument(
            metavar="VIDEO",
            help="A video of one face: .mp4 (or anything FFmpeg reads), .gif, or a folder of frame_*.png.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="EXPR.npy",
            help="Output: float32 [T, 52] MediaPipe blendshape scores, one row per frame.",
            show_default=False,
        ),
    ],
    pose: Annotated[
        Path | None,
        typer.Option(
            "--pose", metavar="POSE.npy",
            help="Also write the head motion: float32 [T, 4, 4], each frame's rigid transform "
            "relative to the first, in the head frame (avat3r animate --pose applies it).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Also print a JSON summary of what was written on stdout.")
    ] = False,
) -> None:
    """Track a face through a video: per-frame expression codes (and head pose) for animate.

    Frames without a face are filled from their nearest neighbours and counted in the summary.
    """
    from avat3r_cli.pipeline.track import track_video  # imports MediaPipe and PyAV; keep --help fast

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with progress_bar(console) as bar:
        task: list[int] = []

        def on_progress(done: int, total: int | None) -> None:
            if not task:
                task.append(bar.add_task("Tracking", total=total))
            bar.update(task[0], completed=done)

        result = track_video(video, output, pose_npy=pose, progress=on_progress)

    frames = "frame" if result.frames == 1 else "frames"
    if result.filled:
        missing = "frame" if result.filled == 1 else "frames"
        note = f" ({result.filled} {missing} without a face, filled from neighbours)"
    else:
        note = ""
    written = str(result.output) + (f" + {result.pose_output}" if result.pose_output is not None else "")
    console.print(
        f"Tracked {result.frames} {frames}{note} -> {written} in {result.seconds:.1f} s", markup=False
    )
    if json_output:
        typer.echo(json.dumps(result.to_dict()))
