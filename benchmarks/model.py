"""Avat3r model speed and memory: one JSON line per case (medians), each case in a fresh process.

    python benchmarks/model.py                    # CPU: tiny, small, base (base skipped if a decode > 5 s)
    python benchmarks/model.py --device cuda      # GPU: tiny, small, base, paper; fp32 and bf16 autocast
    python benchmarks/model.py --case tiny        # one case, in this process

Per case: parameters, median seconds of ``encode_views`` and of one ``decode`` (a new expression),
peak memory (CPU: the process's max RSS; CUDA: ``torch.cuda.max_memory_allocated``). On CUDA the
bf16 case also times decode + rendering one image at the input resolution, i.e. expressions per
second when driving an avatar (targets: tiny <= 20 ms and small <= 100 ms per 4-view decode on the
2-core CPU; paper >= 30 expressions/s on one H100/H200).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

CPU_CASES = ["tiny", "small", "base"]
CUDA_CASES = ["tiny", "small", "base", "paper"]
CPU_DECODE_LIMIT_S = 5.0


def make_inputs(config, views: int, device):
    """Views on a circle 0.6 m around a head-sized cloud, 30 degree field of view."""
    import torch

    from avat3r_cli.core.camera import intrinsics_from_fov, look_at
    from avat3r_cli.model.inputs import ViewInputs

    g = torch.Generator().manual_seed(0)
    r = config.image_size
    w2c = []
    for i in range(views):
        a = 2 * math.pi * i / views
        eye = torch.tensor([0.6 * math.sin(a), 0.0, -0.6 * math.cos(a)])
        w2c.append(look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])))
    features = None
    if config.feature_dim:
        side = max(r // 8, 1)  # Sapiens gives H/16 of a 2x upsampled crop
        features = torch.randn(1, views, config.feature_dim, side, side, generator=g)
    inputs = ViewInputs(
        images=torch.rand(1, views, 3, r, r, generator=g),
        positions=0.1 * torch.randn(1, views, 3, r, r, generator=g),
        confidence=torch.rand(1, views, 1, r, r, generator=g),
        K=intrinsics_from_fov(30.0, r, r).expand(1, views, 3, 3).clone(),
        world_to_cam=torch.stack(w2c)[None],
        features=features,
    )
    return inputs.to(device)


def timed(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(preset: str, device_name: str, views: int, repeats: int, bf16: bool) -> dict:
    import torch

    from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
    from avat3r_cli.model.config import get_preset

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    config = get_preset(preset)
    torch.manual_seed(0)
    model = Avat3r(config).to(device).eval()
    inputs = make_inputs(config, views, device)
    expressions = torch.rand(repeats + 2, 1, config.expression_dim, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    row = {
        "preset": preset, "views": views, "resolution": [config.image_size, config.image_size],
        "parameters": model.num_parameters(), "device": device_name,
        "dtype": "bf16-autocast" if bf16 else "fp32", "threads": torch.get_num_threads(),
    }
    if cuda:
        row["gpu"] = torch.cuda.get_device_name(device)
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        encoded = model.encode_views(inputs)
        model.decode(encoded, expressions[0])  # warm-up (and the CPU skip rule)
        sync()
        first = time.perf_counter() - t0
        if not cuda and preset == "base" and first > CPU_DECODE_LIMIT_S:
            return {**row, "skipped": f"one encode+decode took {first:.1f} s > {CPU_DECODE_LIMIT_S} s on the CPU"}
        step = iter(range(1, 10**6))
        row["encode_s"] = timed(lambda: model.encode_views(inputs), repeats, sync)
        next_expression = lambda: expressions[next(step) % len(expressions)]  # noqa: E731
        row["decode_s"] = timed(lambda: model.decode(encoded, next_expression()), repeats, sync)
        if cuda and bf16:
            row.update(render_timing(model, encoded, inputs, expressions, repeats, sync, maps_to_gaussians))
    if cuda:
        row["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        row["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    row["decodes_per_s"] = round(1.0 / row["decode_s"], 2)
    return row


def render_timing(model, encoded, inputs, expressions, repeats, sync, maps_to_gaussians) -> dict:
    """Decode + filter + render one image from the first input camera: expressions per second."""
    try:
        from avat3r_cli.core.camera import Camera
        from avat3r_cli.render import render

        h, w = inputs.image_size
        camera = Camera(inputs.K[0, 0].float(), inputs.world_to_cam[0, 0].float(), h, w)
        step = iter(range(10**6))

        def drive() -> None:
            maps = model.decode(encoded, expressions[next(step) % len(expressions)])
            render(maps_to_gaussians(maps, model.config.confidence_threshold), camera)

        drive()
        seconds = timed(drive, repeats, sync)
        return {"decode_render_s": seconds, "expressions_per_s": round(1.0 / seconds, 2)}
    except Exception as exc:  # rendering is another layer's; report, don't hide the decode figures
        return {"render_error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--case", help="run one preset in this process")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (with --case)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.device, args.views, args.repeats, args.bf16)), flush=True)
        return
    cases = CUDA_CASES if args.device == "cuda" else CPU_CASES
    for preset in cases:
        for bf16 in (False, True) if args.device == "cuda" else (False,):
            cmd = [sys.executable, __file__, "--case", preset, "--device", args.device,
                   "--views", str(args.views), "--repeats", str(args.repeats)] + (["--bf16"] if bf16 else [])
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                tail = (result.stderr.strip().splitlines() or ["?"])[-1]
                print(json.dumps({"preset": preset, "device": args.device, "bf16": bf16, "error": tail}), flush=True)
            else:
                print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
