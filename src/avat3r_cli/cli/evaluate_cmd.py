"""``avat3r evaluate``: score a model on held-out dataset subjects (``--data``) or on real photos (``--photos``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from avat3r_cli.cli.create_cmd import DEFAULT_REFINE_STEPS
from avat3r_cli.cli.progress import progress_bar


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def evaluate(
    photo_paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="PHOTO...", help="With --photos: photos of one person (at least two usable).", show_default=False),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", metavar="DIR", help="Dataset folder of prepared subjects.", show_default=False),
    ] = None,
    photos: Annotated[
        bool, typer.Option("--photos", help="Score on the photos given as arguments (with --leave-one-out).")
    ] = False,
    leave_one_out: Annotated[
        bool,
        typer.Option("--leave-one-out", help="Photos: each photo in turn is held out, the avatar made from the others."),
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(
            metavar="W",
            help="Model folder (e.g. RUN/model, or RUN itself), registered name or hub repo org/name@rev. "
            "Photos: default the bundled avat3r-small.",
            show_default=False,
        ),
    ] = None,
    subjects: Annotated[
        list[str] | None,
        typer.Option("--subjects", help="Data: subjects to score (repeat); default: the run's held-out ones, else all."),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Data: samples per subject.")] = 4,
    inputs: Annotated[int, typer.Option(min=1, help="Data: input views V per sample.")] = 4,
    targets: Annotated[int, typer.Option(min=1, help="Data: target views M per sample.")] = 4,
    baselines: Annotated[
        bool, typer.Option("--baselines", help="Data: also score the input-expression and nearest-view baselines.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Data: seed that fixes every sample and the bootstrap.")] = 0,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    expressions: Annotated[
        int,
        typer.Option(
            "--expressions", min=0,
            help="Data: frontal renders per subject scored by MediaPipe for expression accuracy (0: skip).",
        ),
    ] = 24,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="Data: bootstrap resamples for the expression intervals (0: none).")
    ] = 1000,
    ceiling: Annotated[
        bool,
        typer.Option("--ceiling", help="Data: also read the ground-truth frontal views the same way (the ceiling)."),
    ] = False,
    refine: Annotated[
        int | None,
        typer.Option(help=f"Photos: test-time fitting steps per avatar, as create --refine (default {DEFAULT_REFINE_STEPS}, as create).", show_default=False),
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(help="Crop side of the comparison (default: the model's image size). Data: the targets are read "
                          "from the subjects prepared at that side (prepare-data --resolution R).", show_default=False),
    ] = None,
    sheet: Annotated[
        Path | None,
        typer.Option("--sheet", metavar="DIR", help="Photos: a PNG per held-out photo (photo | render | nearest view).",
                     show_default=False),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Photos: keep no preprocessing results.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="JSON on stdout: one object per method (photos: per photo and method, then per method).")
    ] = False,
) -> None:
    """Score a model on held-out dataset subjects, or leave-one-out on your own photos."""
    if photos or photo_paths:
        if data is not None:
            raise typer.BadParameter("give either --data DIR or --photos PHOTO..., not both")
        if not photos:
            raise typer.BadParameter("photos given without --photos (the photo evaluation is --photos PHOTO... --leave-one-out)")
        if not photo_paths:
            raise typer.BadParameter("--photos needs the photos as arguments")
        if not leave_one_out:
            raise typer.BadParameter("--photos needs --leave-one-out (the photo protocol: each photo held out in turn)")
        _evaluate_photos(photo_paths, weights, DEFAULT_REFINE_STEPS if refine is None else refine, resolution, device, not no_cache, sheet, json_output)
        return
    if data is None:
        raise typer.BadParameter("give --data DIR (held-out dataset subjects) or --photos PHOTO... --leave-one-out")
    if refine is not None or sheet is not None or leave_one_out:
        raise typer.BadParameter("--refine, --sheet and --leave-one-out are for --photos")
    _evaluate_data(data, weights, subjects, samples, inputs, targets, baselines, seed, device, expressions, bootstrap,
                   ceiling, json_output, resolution)


def _weights_spec(weights: str | None) -> str | None:
    """A run folder is accepted for its model/ (what `avat3r train -o RUN` writes)."""
    if weights and (Path(weights) / "model" / "config.json").is_file() and not (Path(weights) / "config.json").is_file():
        return str(Path(weights) / "model")
    return weights


# -- --data ----------------------------------------------------------------------------------------

def _evaluate_data(data, weights, subjects, samples, inputs, targets, baselines, seed, device, expressions, bootstrap,
                   ceiling, json_output, resolution=None) -> None:
    from avat3r_cli.core.errors import Avat3rError
    from avat3r_cli.eval.evaluate import evaluate as run_evaluation  # imports torch; keep --help fast

    if weights is None:
        raise Avat3rError("no weights given and none are registered yet: pass --weights RUN/model")
    spec = _weights_spec(weights)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    results = run_evaluation(
        spec, data, subjects=subjects or None, num_samples=samples, seed=seed, baselines=baselines, device=device,
        num_inputs=inputs, num_targets=targets, target_resolution=resolution,
    )
    accuracy = floor = None
    if expressions or ceiling:
        from avat3r_cli.core.runtime import resolve_device
        from avat3r_cli.eval.expression_accuracy import expression_accuracy, expression_ceiling
        from avat3r_cli.pipeline.models import load_avat3r
        from avat3r_cli.preprocess.face import FaceAnalyzer

        model, _ = load_avat3r(spec, resolve_device(device))
        names = list(results[0].subjects)
        with FaceAnalyzer() as analyzer:
            if expressions:
                accuracy = expression_accuracy(model, data, names, codes_per_subject=expressions, seed=seed,
                                               analyzer=analyzer, resamples=bootstrap)
            if ceiling:
                cfg = model.config
                floor = expression_ceiling(data, names, cfg.input_size, cfg.geometry_backend, seed=seed,
                                           analyzer=analyzer, resamples=bootstrap)
    if json_output:
        for result in results:
            row = result.to_dict()
            if accuracy is not None and result.method == "avat3r":
                row.update(_expression_fields(accuracy))
            typer.echo(json.dumps(row))
        if floor is not None:
            typer.echo(json.dumps({"method": "ground-truth-views", **_expression_fields(floor)}))
        return
    _print_data_tables(results, accuracy, floor, console)


def _expression_fields(accuracy: Any) -> dict[str, Any]:
    return {
        "expression_correlation": accuracy.correlation,
        "expression_interval": accuracy.interval,
        "expression_renders": {"renders": accuracy.renders, "detected": accuracy.detected},
    }


def _print_data_tables(results: list, accuracy: Any, floor: Any, console: Console) -> None:
    from rich.table import Table

    out = Console(highlight=False)
    table = Table(title=f"{results[0].num_images} target images from {len(results[0].subjects)} subject(s)")
    for column in ("method", "PSNR", "PSNR fg", "PSNR changed", "SSIM", "LPIPS", "IoU"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in results:
        table.add_row(r.method, _fmt(r.psnr), _fmt(r.psnr_fg), _fmt(r.psnr_changed), _fmt(r.ssim, 3), _fmt(r.lpips, 3),
                      _fmt(r.iou, 3))
    out.print(table)
    groups = Table(title="By view (yaw of the target camera: front < 45°, side 45-135°, back > 135°)")
    groups.add_column("method")
    for name, group in results[0].view_groups.items():
        groups.add_column(f"{name} ({group.num_images})\nPSNR / IoU", justify="right")
    for r in results:
        groups.add_row(r.method, *(f"{_fmt(g.psnr)} / {_fmt(g.iou, 3)}" for g in r.view_groups.values()))
    out.print(groups)
    if accuracy is not None or floor is not None:
        rows = [(f"avat3r ({accuracy.detected}/{accuracy.renders} renders)", accuracy)] if accuracy is not None else []
        if floor is not None:
            rows.append((f"ground-truth views, ceiling ({floor.detected}/{floor.renders})", floor))
        expr = Table(title="Expression accuracy: correlation of requested and MediaPipe-read scores [95 % bootstrap]")
        expr.add_column("frontal images")
        groups_names = list((accuracy or floor).correlation)
        for g in groups_names:
            expr.add_column(g, justify="right")
        for label, acc in rows:
            cells = []
            for g in groups_names:
                ci = acc.interval.get(g)
                cells.append(_fmt(acc.correlation[g]) + ("" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"))
            expr.add_row(label, *cells)
        out.print(expr)
    if results[0].lpips is None:
        console.print("LPIPS: not available (needs the lpips package and its AlexNet weights; nothing is downloaded)")


# -- --photos --------------------------------------------------------------------------------------


def _evaluate_photos(paths, weights, refine, resolution, device, use_cache, sheet, json_output) -> None:
    from avat3r_cli.eval.photo_sheet import check_sheet_folder, write_sheets
    from avat3r_cli.eval.photos import evaluate_photos  # imports torch; keep --help fast

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if sheet is not None:
        check_sheet_folder(sheet)
    with progress_bar(console) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = evaluate_photos(paths, weights=_weights_spec(weights), refine=refine, resolution=resolution, device=device,
                                 use_cache=use_cache, progress=on_progress,
                                 notice=lambda line: console.print(line, markup=False))
    for photo, why in result.skipped:
        console.print(Text.assemble(("Skipped: ", "yellow"), f"{photo}: {why}"))
    if sheet is not None:
        written = write_sheets(result.images, sheet)
        console.print(f"Wrote {len(written)} sheet(s) to {sheet}/", markup=False)
    if json_output:
        skipped = [{"photo": p, "reason": why} for p, why in result.skipped]
        for row in result.results:
            typer.echo(json.dumps(row.to_dict()))
        for summary in result.summaries:
            typer.echo(json.dumps({**summary.to_dict(), "resolution": result.resolution, "model": result.model,
                                   "refine": result.refine, "skipped": skipped}))
        return
    _print_photo_tables(result)
    console.print(f"{len(result.used)} photos, each held out in turn, {result.resolution}² crops, model {result.model}"
                  f"{f', refine {result.refine}' if result.refine else ''}, {result.seconds:.1f} s on {result.device}",
                  markup=False)


_GROUPS = ("jawOpen", "smile", "blink")
_IMAGE_COLUMNS = ("PSNR\nface", "SSIM\nface", "PSNR\ncrop", "SSIM\ncrop", "AKD\npx@512")


def _image_cells(s: Any) -> list[str]:
    return [_fmt(s.psnr_face), _fmt(s.ssim_face, 3), _fmt(s.psnr_crop), _fmt(s.ssim_crop, 3), _fmt(s.akd_px512)]


def _print_photo_tables(result: Any) -> None:
    from rich import box
    from rich.table import Table

    out = Console(highlight=False)

    def table(title: str, *columns: str) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD)
        for i, column in enumerate(columns):
            t.add_column(column, justify="left" if i < 2 else "right", no_wrap=i == 1)
        return t

    scores = table("Each photo held out: the avatar from the others at its camera and code, and its nearest view",
                   "photo", "method", *_IMAGE_COLUMNS, "face\nfound")
    reads = table("MediaPipe's scores read on the image / on the photo (all: mean |difference|)", "photo", "method", *_GROUPS)
    for r in result.results:
        scores.add_row(r.photo, r.method, *_image_cells(r.score), "yes" if r.score.face_found else "no")
        reads.add_row(r.photo, r.method, *(f"{_fmt(r.score.expression[g]['read'])} / {_fmt(r.score.expression[g]['photo'])}"
                                          for g in _GROUPS))
    reads.rows[-1].end_section = True
    for m in result.summaries:
        reads.add_row("all", m.method, *(_fmt(m.expression_error[g], 3) for g in _GROUPS))
    summary = table("Mean over the held-out photos (AKD: over those with a face read on both)",
                    "method", "photos", *_IMAGE_COLUMNS, "faces\nfound")
    for m in result.summaries:
        summary.add_row(m.method, str(m.num_photos), *_image_cells(m), f"{m.face_found}/{m.num_photos}")
    for t in (scores, reads, summary):
        out.print(t)


if __name__ == "__main__":
    typer.run(evaluate)
