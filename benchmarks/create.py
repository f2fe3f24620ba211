"""``create`` and ``animate`` speed: one JSON line per case (medians).

    python benchmarks/create.py [--weights W] [--photos examples/photos] [--device cpu|cuda]

CPU cases (the bundled model unless --weights): ``create`` on the four example photos without
videos (preprocessing cache off, so MediaPipe, PnP, crops and position maps are timed) and with
videos (120-frame turntable and the expression tour at 256^2), in this process; the same two as
whole ``avat3r create`` commands in fresh processes (what a user waits for: Python and torch
start-up included), and ``avat3r --help``; ``animate`` frames per second at 256^2 (a new
expression's decode + one render, loading and video encoding included), once with random codes
and once with the example clip (``examples/expressions.csv``). Targets on the 2-core CPU: create
<= 5 s without videos, <= 15 s with them; ``--help`` <= 0.3 s; animate >= 5 frames/s.

CUDA case (``--device cuda``): the paper preset with random weights on 4 random 512^2 views with
Sapiens-sized features: "create" = encode + decode + Gaussians, "animate" = decode + one 512^2
render per expression (targets: <= 2 s and >= 30 frames/s on one H100/H200).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def cpu_cases(weights: str | None, photos: list[Path], repeats: int) -> None:
    from avat3r_cli.pipeline.animate import run_animate
    from avat3r_cli.pipeline.create import run_create
    from avat3r_cli.pipeline.expression_files import read_expressions

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_create(photos, tmp / "warm", weights=weights, video=False, use_cache=False, device="cpu")
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            report = run_create(photos, tmp / f"a{i}", weights=weights, video=False, use_cache=False, device="cpu")
            times.append(time.perf_counter() - t0)
        print(json.dumps({"case": "create", "device": "cpu", "videos": False, "photos": len(photos),
                          "gaussians": report["gaussians"], "seconds": round(statistics.median(times), 3),
                          "repeats": repeats, "peak_rss_mb": _peak_rss_mb()}), flush=True)
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            report = run_create(photos, tmp / f"v{i}", weights=weights, video=True, size=256, frames=120,
                                use_cache=False, device="cpu")
            times.append(time.perf_counter() - t0)
        print(json.dumps({"case": "create", "device": "cpu", "videos": True, "turntable_frames": 120, "size": 256,
                          "photos": len(photos), "seconds": round(statistics.median(times), 3),
                          "timings": report["timings"], "repeats": repeats, "peak_rss_mb": _peak_rss_mb()}), flush=True)
        command_cases(weights, photos, tmp, repeats)
        frames = 30
        rng = np.random.default_rng(0)
        np.save(tmp / "codes.npy", (rng.random((frames, 52)) * 0.6).astype(np.float32))
        # Random scores on all 52 channels at once are far outside the training codes and make the
        # model draw larger Gaussians (slower to render); the example clip is what a user's
        # tracked video looks like. Both are reported.
        clip = Path(__file__).resolve().parents[1] / "examples" / "expressions.csv"
        cases = [("random", tmp / "codes.npy", frames)]
        if clip.is_file():
            cases.append(("example clip", clip, len(read_expressions(clip)[0])))
        for codes_name, codes_path, count in cases:
            fps = []
            for i in range(repeats):
                t0 = time.perf_counter()
                run_animate(tmp / "a0", codes_path, tmp / f"anim{i}.mp4", size=256, device="cpu", weights=weights)
                fps.append(count / (time.perf_counter() - t0))
            print(json.dumps({"case": "animate", "device": "cpu", "codes": codes_name, "size": 256, "frames": count,
                              "frames_per_s": round(statistics.median(fps), 2), "repeats": repeats,
                              "peak_rss_mb": _peak_rss_mb()}), flush=True)


def _wall(argv: list[str], repeats: int) -> tuple[float, float]:
    """Median wall seconds of ``argv`` run ``repeats`` times, and its largest peak RSS in MB."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return statistics.median(times), peak


def command_cases(weights: str | None, photos: list[Path], tmp: Path, repeats: int) -> None:
    """Whole ``avat3r`` commands in fresh processes: start-up, imports and exit included."""
    cli = [sys.executable, "-m", "avat3r_cli"]
    seconds, _ = _wall([*cli, "--help"], max(repeats, 5))
    print(json.dumps({"case": "command", "argv": "avat3r --help", "seconds": round(seconds, 3),
                      "repeats": max(repeats, 5)}), flush=True)
    for video in (False, True):
        argv = [*cli, "create", *map(str, photos), "-o", str(tmp / f"cmd-{video}")]
        argv += [*(["--weights", weights] if weights else []), *([] if video else ["--no-video"])]
        seconds, peak = _wall(argv, repeats)
        print(json.dumps({"case": "command", "argv": "avat3r create examples/photos/*.jpg -o OUT"
                          + ("" if video else " --no-video"), "seconds": round(seconds, 3),
                          "repeats": repeats, "preprocessing_cache": "warm after the first run",
                          "peak_rss_mb": round(peak, 1)}), flush=True)


def cuda_case(repeats: int) -> None:
    import torch

    from avat3r_cli.core.camera import Camera
    from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
    from avat3r_cli.model.config import get_preset
    from avat3r_cli.render import render

    sys.path.insert(0, str(Path(__file__).parent))
    from model import make_inputs  # the model benchmark's synthetic views

    device = torch.device("cuda")
    config = get_preset("paper")
    model = Avat3r(config).to(device).eval()
    inputs = make_inputs(config, 4, device)
    codes = torch.rand(repeats + 2, 52, device=device)
    cam = Camera(inputs.K[0, 0], inputs.world_to_cam[0, 0], config.image_size, config.image_size)

    def create_once():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            enc = model.encode_views(inputs)
            g = maps_to_gaussians(model.decode(enc, torch.zeros(1, 52, device=device)), config.confidence_threshold)
        torch.cuda.synchronize()
        return enc, g

    create_once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc, g = create_once()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"case": "create", "device": torch.cuda.get_device_name(), "preset": "paper", "views": 4,
                      "gaussians": g.count, "seconds": round(statistics.median(times), 4),
                      "note": "model only: preprocessing and downloads excluded"}), flush=True)
    frame_times = []
    for code in codes:
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            g = maps_to_gaussians(model.decode(enc, code[None]), config.confidence_threshold)
        render(g, cam)
        torch.cuda.synchronize()
        frame_times.append(time.perf_counter() - t0)
    print(json.dumps({"case": "animate", "device": torch.cuda.get_device_name(), "preset": "paper", "size": 512,
                      "frames_per_s": round(1.0 / statistics.median(frame_times[2:]), 2),
                      "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="model folder or name (default: the bundled model)")
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "photos")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.device == "cuda":
        cuda_case(args.repeats)
    else:
        cpu_cases(args.weights, sorted(args.photos.glob("*.jpg")), args.repeats)


if __name__ == "__main__":
    main()
