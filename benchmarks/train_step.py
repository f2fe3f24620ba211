"""Training step time on the CPU: one JSON line per case (median seconds per step, peak RSS).

    python benchmarks/train_step.py                 # the small preset (the bundled model's)
    python benchmarks/train_step.py --preset tiny --steps 20
    python benchmarks/train_step.py --gaussian-upsample 1 --gaussian-upsample 2   # 128² and 256² Gaussian grids

Each case writes two synthetic subjects (the project's generator, MediaPipe labels, 8 cameras, 2
timesteps) at the resolution the preset's model reads, prepares them as ``prepare-data`` does, and
runs the real ``train`` loop for ``--steps`` steps (4 inputs, 2 targets, as the bundled model was
trained), each case in a fresh process so peak RSS is its own. The first steps pay one-time costs
(allocator, first kernels) and are left out of the median.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
from dataclasses import replace
import sys
import tempfile
from pathlib import Path

WARMUP_STEPS = 3


def run_case(preset: str, steps: int, upsample: int | None = None) -> dict:
    """Generate, prepare and train in a temporary folder; the step-time summary."""
    import torch

    from avat3r_cli.data.prepare import prepare_dataset
    from avat3r_cli.data.synthetic.generate import generate_dataset
    from avat3r_cli.model.avat3r import Avat3r
    from avat3r_cli.model.config import get_preset
    from avat3r_cli.train.trainer import TrainConfig, train

    config = get_preset(preset)
    if upsample is not None:
        config = replace(config, gaussian_upsample=upsample)
    resolution = config.input_size
    with tempfile.TemporaryDirectory(prefix="avat3r-train-bench-") as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        generate_dataset(data, subjects=2, seed=0, timesteps=2, cameras=8, resolution=max(resolution, 128))
        prepare_dataset(data, resolution)
        cfg = TrainConfig(data_dir=data, output_dir=run, preset=preset, steps=steps, device="cpu",
                          num_subjects_val=0, checkpoint_every=10 * steps, validate_every=10 * steps, warmup=1,
                          gaussian_upsample=upsample)
        train(cfg)
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in log[WARMUP_STEPS:]]
    return {
        "case": "train_step", "preset": preset, "resolution": resolution, "network_resolution": config.image_size,
        "gaussian_upsample": config.gaussian_upsample, "anchor_gaussians": config.anchor_gaussians * config.anchor_children,
        "inputs": 4, "targets": 2, "steps": len(seconds), "seconds_per_step": round(statistics.median(seconds), 3),
        "steps_per_hour": round(3600 / statistics.median(seconds)), "parameters": Avat3r(config).num_parameters(),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset(s) to time (default: small)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--gaussian-upsample", type=int, action="append", help="Gaussians per network pixel per side (default: the preset's)")
    parser.add_argument("--in-process", action="store_true", help="run the (single) case in this process")
    args = parser.parse_args()
    presets = args.preset or ["small"]
    factors = args.gaussian_upsample or [None]
    if args.in_process:
        for preset in presets:
            for factor in factors:
                print(json.dumps(run_case(preset, args.steps, factor)), flush=True)
        return
    for preset in presets:
        for factor in factors:
            extra = [] if factor is None else ["--gaussian-upsample", str(factor)]
            subprocess.run([sys.executable, __file__, "--in-process", "--preset", preset, "--steps", str(args.steps),
                            *extra], check=True)


if __name__ == "__main__":
    main()
