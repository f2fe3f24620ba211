"""``avat3r create PHOTOS... -o OUT/``: photos in, an animatable avatar folder out."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from avat3r_cli.cli.progress import stage_progress

# Penalised fitting (pipeline/refine.py) raised held-out SSIM and landmark accuracy on real
# photos at 50 steps, about 30 s for four photos on a 2-core CPU (the bundled model's card).
DEFAULT_REFINE_STEPS = 50


def create(
    output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help="Avatar folder: avatar.ply, avatar.avat3r.safetensors, turntable.mp4, expressions.mp4, report.json.", show_default=False)],
    photos: Annotated[list[Path] | None, typer.Argument(metavar="PHOTOS...", help="Photos of one person's head: one works, four from different sides work best. With --per-folder: subject folders.", show_default=False)] = None,
    weights: Annotated[str | None, typer.Option(help="Model: a folder (config.json + model.safetensors), a registered name or a hub repo org/name[@rev]. Default: the bundled avat3r-small.", show_default=False)] = None,
    refine: Annotated[int, typer.Option(help="Test-time fitting steps to the input photos (0 = none); kept when animating.")] = DEFAULT_REFINE_STEPS,
    no_video: Annotated[bool, typer.Option("--no-video", help="Skip the turntable and expression videos (faster).")] = False,
    size: Annotated[int, typer.Option(help="Video side in pixels (16..4096).")] = 256,
    frames: Annotated[int, typer.Option(help="Frames in the turntable's full turn.")] = 120,
    fps: Annotated[int, typer.Option(help="Video frames per second (1..240).")] = 30,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    geometry: Annotated[str | None, typer.Option(help="Position-map backend (template or dust3r). Default: what the model expects.", show_default=False)] = None,
    features: Annotated[str | None, typer.Option(help="Image features (none or sapiens[-...]). Default: what the model expects.", show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute preprocessing instead of reusing cached results.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report (batch: one line per subject) as JSON on stdout.")] = False,
    per_folder: Annotated[bool, typer.Option("--per-folder", help="Each PHOTOS argument is a folder of one subject's photos; OUT/<folder name>/ per subject.")] = False,
    subjects_from: Annotated[str | None, typer.Option(metavar="FILE", help="Subject folders, one per line ('-': standard input); implies --per-folder.", show_default=False)] = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Batch: skip subjects whose OUT/<name>/report.json exists (resume).")] = False,
    shard: Annotated[str, typer.Option(metavar="I/N", help="Batch: take every N-th subject starting at I (split one list over N machines).")] = "0/1",
) -> None:
    """Make an animatable 3D Gaussian avatar from photos of a head (or one per subject folder)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if per_folder or subjects_from is not None:
        _create_batch(photos or [], output, subjects_from, skip_existing, shard, as_json, console, dict(
            weights=weights, refine=refine, video=not no_video, size=size, frames=frames, fps=fps, device=device,
            geometry=geometry, features=features, use_cache=not no_cache))
        return
    if not photos:
        raise typer.BadParameter("give at least one photo (or --per-folder FOLDERS / --subjects-from FILE)")
    # Paths first: a typo must not wait for torch, MediaPipe and the model to load.
    from avat3r_cli.pipeline.create_checks import check_output_folder, check_photo_paths

    photos = check_photo_paths(photos)
    check_output_folder(output)
    from avat3r_cli.pipeline.create import run_create  # imports torch; keep --help fast

    with stage_progress(console) as on_progress:
        report = run_create(
            photos, output, weights=weights, refine=refine, video=not no_video, size=size, frames=frames,
            fps=fps, device=device, geometry=geometry, features=features, use_cache=not no_cache,
            progress=on_progress, notice=lambda line: console.print(line, markup=False),
        )
    for warning in report["warnings"]:
        console.print(Text.assemble(("Warning: ", "yellow"), warning))
    used, skipped = len(report["photos"]["used"]), len(report["photos"]["skipped"])
    refined = ""
    if report["refine"]:
        r = report["refine"]
        refined = f", refined {r['steps']} steps: PSNR {r['psnr_before']:.2f} -> {r['psnr_after']:.2f} dB"
    console.print(
        f"Wrote {output}/ ({report['gaussians']} Gaussians from {used} photo{'s' if used != 1 else ''}"
        f"{f', {skipped} skipped' if skipped else ''}{refined}) in {report['seconds']:.1f} s on {report['device']}",
        markup=False,
    )
    if as_json:
        typer.echo(json.dumps(report))


def _create_batch(folders, output, subjects_from, skip_existing, shard, as_json, console, options) -> None:
    """Batch mode: one JSON line per subject with --json; exit 1 when any subject failed."""
    from avat3r_cli.pipeline.batch import Shard, read_subject_list, run_batch

    folders = list(folders) + (read_subject_list(subjects_from) if subjects_from is not None else [])
    if not folders:
        raise typer.BadParameter("no subject folders given")

    def on_result(result: dict) -> None:
        if as_json:
            typer.echo(json.dumps(result))
        line = {"ok": "done", "skipped": "skipped (exists)", "failed": f"failed: {result.get('error')}"}[result["status"]]
        console.print(f"{result['name']}: {line}", markup=False)

    def on_error(error: BaseException) -> None:
        # The error itself is in the subject's line; AVAT3R_DEBUG adds where it came from.
        from avat3r_cli.cli.app import debug_enabled

        if debug_enabled():
            traceback.print_exception(type(error), error, error.__traceback__)

    results = run_batch(folders, output, Shard.parse(shard), skip_existing, on_result=on_result, on_error=on_error, **options)
    failed = sum(r["status"] == "failed" for r in results)
    console.print(f"{len(results) - failed} of {len(results)} subject(s) done, {failed} failed", markup=False)
    if failed:
        raise typer.Exit(1)
