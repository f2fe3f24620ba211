"""CPU rasteriser speed and memory: one JSON line per case (medians), each case in a fresh process.

    python benchmarks/render_cpu.py            # all cases
    python benchmarks/render_cpu.py --case 0   # one case, in this process

The scene is spread like an avatar seen from 0.6 m: Gaussians on a head-sized ellipsoid, about
2 px projected sigma, opacities 0.5..0.99, with a 30 degree field of view.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

CASES = [
    {"gaussians": 20_000, "height": 256, "width": 256, "backward": True},
    {"gaussians": 100_000, "height": 512, "width": 512, "backward": True},
]


def make_scene(n: int, height: int, width: int, seed: int = 0):
    """An avatar-like scene: ``Gaussians`` on an ellipsoid and a frontal ``Camera`` at 0.6 m."""
    import torch

    from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
    from avat3r_cli.core.gaussians import Gaussians

    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = dirs * torch.tensor([0.08, 0.11, 0.10])
    K = intrinsics_from_fov(30.0, height, width)
    # Sigma of about 2 px at 0.6 m, whatever the resolution.
    sigma_m = 2.0 * 0.6 / float(K[1, 1])
    scales = sigma_m * torch.exp(0.2 * torch.randn(n, 3, generator=gen))
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    opacities = 0.5 + 0.49 * torch.rand(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen)
    w2c = look_at(torch.tensor([0.0, 0.0, -0.6]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    return Gaussians.from_colors(means, quats, scales, opacities, colors), Camera(K, w2c, height, width)


def run_case(case: dict, repeats: int) -> dict:
    import torch

    from avat3r_cli.core.gaussians import Gaussians
    from avat3r_cli.render import render

    gaussians, camera = make_scene(case["gaussians"], case["height"], case["width"])
    forward, backward = [], []
    with torch.no_grad():
        render(gaussians, camera)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            render(gaussians, camera)
            forward.append(time.perf_counter() - t0)
    if case["backward"]:
        params = [t.clone().requires_grad_() for t in (gaussians.means, gaussians.quats, gaussians.scales,
                                                       gaussians.opacities, gaussians.sh)]
        weights = torch.rand(3, case["height"], case["width"])
        for i in range(repeats + 1):
            out = render(Gaussians(*params), camera)
            t0 = time.perf_counter()
            (out.image * weights).sum().backward()
            if i:  # the first is a warm-up
                backward.append(time.perf_counter() - t0)
    return {
        "gaussians": case["gaussians"],
        "height": case["height"],
        "width": case["width"],
        "forward_s": round(statistics.median(forward), 4),
        "backward_s": round(statistics.median(backward), 4) if backward else None,
        "forward_backward_s": round(statistics.median(forward) + statistics.median(backward), 4) if backward else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "threads": __import__("torch").get_num_threads(),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, default=None, help="run one case in this process")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(CASES[args.case], args.repeats)), flush=True)
        return
    for i in range(len(CASES)):
        # A fresh process per case, so peak RSS belongs to that case alone.
        subprocess.run([sys.executable, __file__, "--case", str(i), "--repeats", str(args.repeats)], check=True,
                       env=os.environ.copy())


if __name__ == "__main__":
    main()
