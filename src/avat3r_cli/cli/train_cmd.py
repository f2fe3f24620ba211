"""``avat3r train --data DIR -o RUN``: train an Avat3r model on prepared subjects.

Multi-GPU / multi-process: launch with torchrun, e.g.
``torchrun --standalone --nproc_per_node=8 -m avat3r_cli train --preset base --data DIR -o RUN``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console


def train(
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Dataset folder of prepared subjects.", show_default=False)
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="RUN", help="Run folder (checkpoint, log, model/).", show_default=False),
    ],
    preset: Annotated[str, typer.Option(help="Model size: tiny, small, base (see `avat3r models`).")] = "tiny",
    steps: Annotated[int, typer.Option(min=1, help="Total optimizer steps (the schedule's length).")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in RUN from its checkpoint.")] = False,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda[:i]|mps (auto picks CUDA when present).")] = "auto",
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate (Adam).")] = 5e-4,
    warmup: Annotated[int, typer.Option(min=0, help="Linear warm-up steps before the cosine decay.")] = 100,
    inputs: Annotated[int, typer.Option(min=1, help="Input views V per sample.")] = 4,
    min_inputs: Annotated[
        int | None,
        typer.Option(min=1, help="Draw each sample's input count in MIN..--inputs (default: always --inputs).",
                     show_default=False),
    ] = None,
    targets: Annotated[int, typer.Option(min=1, help="Target views M per sample (the paper uses 8 on GPUs).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and of every sample.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Steps between checkpoints (0: only at the end).")] = 500,
    validate_every: Annotated[
        int, typer.Option(min=0, help="Steps between validation renders into RUN/val/ (0: only at the end).")
    ] = 500,
    val_subjects: Annotated[
        int, typer.Option(min=0, help="Hold out the last N subjects (sorted) from training.")
    ] = 2,
    geometry: Annotated[str, typer.Option(help="Position-map backend of the prepared files to read: template|dust3r.")] = "template",
    consistent_inputs: Annotated[
        bool, typer.Option("--consistent-inputs", help="All input views at one timestep (ablation).")
    ] = False,
    init: Annotated[
        str | None,
        typer.Option(
            "--init", metavar="WEIGHTS",
            help="Start --preset from these weights (folder, registry name or org/name) instead of random ones.",
        ),
    ] = None,
    reinit: Annotated[
        list[str] | None,
        typer.Option(metavar="MODULE", help="With --init: draw this submodule's weights afresh (repeatable)."),
    ] = None,
    changed_weight: Annotated[
        float,
        typer.Option(min=0.0, help="Extra L1 weight on the pixels the target's expression changes (0: off)."),
    ] = 0.0,
    expression_mixing: Annotated[
        bool,
        typer.Option("--expression-mixing", help="Add the code-driven channel mixing to the preset (zero-started)."),
    ] = False,
    expression_field: Annotated[
        bool,
        typer.Option("--expression-field", help="Add the learned blendshape field over head positions (zero-started)."),
    ] = False,
    anchor_gaussians: Annotated[
        int | None,
        typer.Option(
            "--anchor-gaussians", metavar="Q", min=0,
            help="Anchor queries on the template head that fill what no photo sees (default: the preset's; 0: none).",
        ),
    ] = None,
    gaussian_upsample: Annotated[
        int | None,
        typer.Option(
            "--gaussian-upsample", metavar="F",
            help="Gaussians per network pixel along each side: crops and targets F times the network's "
            "grid (1, 2 or 4; default: the preset's).",
        ),
    ] = None,
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="Stop after this step (resume later); the schedule still spans --steps.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Train (or resume) an Avat3r model; writes RUN/model/ with config.json + model.safetensors."""
    from avat3r_cli.train.trainer import TrainConfig  # imports torch; keep --help fast
    from avat3r_cli.train.trainer import train as run_training

    # Under torchrun only rank 0 talks; the others would print the same lines again.
    main_rank = os.environ.get("RANK", "0") == "0"
    console = Console(stderr=True, highlight=False, soft_wrap=True, quiet=not main_rank)
    cfg = TrainConfig(
        data_dir=data, output_dir=output, preset=preset, steps=steps, lr=lr, warmup=warmup, num_inputs=inputs,
        min_inputs=min_inputs,
        num_targets=targets, seed=seed, checkpoint_every=checkpoint_every, validate_every=validate_every,
        device=device, resume=resume, geometry=geometry, consistent_inputs=consistent_inputs,
        num_subjects_val=val_subjects, stop_after=stop_after, changed_weight=changed_weight, init_from=init,
        reinit=tuple(reinit or ()), expression_mixing=expression_mixing,
        expression_field=expression_field, anchor_gaussians=anchor_gaussians, gaussian_upsample=gaussian_upsample,
    )
    if not resume:
        from avat3r_cli.model.config import get_preset
        from avat3r_cli.pipeline.dataset import ensure_prepared

        try:
            config = get_preset(preset)
            if gaussian_upsample is not None:
                config = config.replace(gaussian_upsample=gaussian_upsample)
            resolution = config.input_size
        except ValueError as error:
            from avat3r_cli.core.errors import Avat3rError

            raise Avat3rError(str(error)) from None
        with _progress_bar(console) as bar:
            prep = bar.add_task("Preparing subjects", total=None, loss=float("nan"))
            ensure_prepared(data, resolution, geometry, progress=lambda d, t: bar.update(prep, completed=d, total=t),
                            device=device, notice=lambda line: console.print(line, markup=False))
    with _progress_bar(console) as bar:
        task: list[Any] = []

        def on_progress(done: int, total: int, record: dict[str, Any]) -> None:
            if not task:
                task.append(bar.add_task("Training", total=total, completed=done - 1, loss=float("nan")))
            bar.update(task[0], completed=done, loss=record["loss"])

        result = run_training(cfg, progress=on_progress)
    per_step = result.seconds_per_step
    console.print(
        f"Trained steps {result.start_step + 1}..{result.end_step} of {steps} on {result.device}"
        f" (x{result.world_size}) in {result.seconds:.1f} s"
        + (f" ({per_step:.3f} s/step)" if per_step else "")
        + (f", last loss {result.last_loss:.4f}" if result.last_loss is not None else "")
        + f"; model in {result.model_dir}",
        markup=False,
    )
    if json_output and main_rank:
        typer.echo(json.dumps(result.to_dict()))


def _progress_bar(console: Console):
    """Steps, loss and ETA on stderr (off when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal or console.quiet,
    )


if __name__ == "__main__":  # `python -m avat3r_cli.cli.train_cmd ...`, e.g. under torchrun
    typer.run(train)
