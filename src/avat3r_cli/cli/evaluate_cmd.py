"""``avat3r evaluate --weights W --data DIR``: PSNR / SSIM / LPIPS on held-out prepared subjects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def evaluate(
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Dataset folder of prepared subjects.", show_default=False)
    ],
    weights: Annotated[
        str | None,
        typer.Option(
            metavar="W",
            help="Model folder (e.g. RUN/model, or RUN itself), registered name or hub repo org/name@rev.",
            show_default=False,
        ),
    ] = None,
    subjects: Annotated[
        list[str] | None,
        typer.Option("--subjects", help="Subjects to score (repeat); default: the run's held-out ones, else all."),
    ] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Samples per subject.")] = 4,
    inputs: Annotated[int, typer.Option(min=1, help="Input views V per sample.")] = 4,
    targets: Annotated[int, typer.Option(min=1, help="Target views M per sample.")] = 4,
    baselines: Annotated[
        bool, typer.Option("--baselines", help="Also score the zero-expression and nearest-view baselines.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed that fixes every sample.")] = 0,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    expressions: Annotated[
        int,
        typer.Option(
            "--expressions", min=0,
            help="Frontal renders per subject scored by MediaPipe for expression accuracy (0: skip).",
        ),
    ] = 24,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per method on stdout.")] = False,
) -> None:
    """Score a model (and optionally baselines) on the same seeded held-out samples."""
    from avat3r_cli.core.errors import Avat3rError
    from avat3r_cli.eval.evaluate import evaluate as run_evaluation  # imports torch; keep --help fast

    if weights is None:
        raise Avat3rError("no weights given and none are registered yet: pass --weights RUN/model")
    spec = weights
    # A run folder is accepted for its model/ (what `avat3r train -o RUN` writes).
    if (Path(weights) / "model" / "config.json").is_file() and not (Path(weights) / "config.json").is_file():
        spec = str(Path(weights) / "model")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    results = run_evaluation(
        spec, data, subjects=subjects or None, num_samples=samples, seed=seed, baselines=baselines, device=device,
        num_inputs=inputs, num_targets=targets,
    )
    accuracy = None
    if expressions:
        from avat3r_cli.core.runtime import resolve_device
        from avat3r_cli.eval.expression_accuracy import expression_accuracy
        from avat3r_cli.pipeline.models import load_avat3r

        model, _ = load_avat3r(spec, resolve_device(device))
        accuracy = expression_accuracy(model, data, list(results[0].subjects), codes_per_subject=expressions, seed=seed)
    if json_output:
        for result in results:
            row = result.to_dict()
            if accuracy is not None and result.method == "avat3r":
                row["expression_correlation"] = accuracy.correlation
                row["expression_renders"] = {"renders": accuracy.renders, "detected": accuracy.detected}
            typer.echo(json.dumps(row))
        return
    from rich.table import Table

    table = Table(title=f"{results[0].num_images} target images from {len(results[0].subjects)} subject(s)")
    for column in ("method", "PSNR", "PSNR fg", "PSNR changed", "SSIM", "LPIPS"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in results:
        table.add_row(r.method, _fmt(r.psnr), _fmt(r.psnr_fg), _fmt(r.psnr_changed), _fmt(r.ssim, 3), _fmt(r.lpips, 3))
    Console(highlight=False).print(table)
    if accuracy is not None:
        scores = ", ".join(f"{g} {_fmt(c)}" for g, c in accuracy.correlation.items())
        console.print(f"Expression accuracy (correlation of requested and MediaPipe-read scores over "
                      f"{accuracy.detected}/{accuracy.renders} frontal renders): {scores}")
    if results[0].lpips is None:
        console.print("LPIPS: not available (needs the lpips package and its AlexNet weights; nothing is downloaded)")


if __name__ == "__main__":
    typer.run(evaluate)
