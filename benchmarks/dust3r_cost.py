"""What DUSt3R position maps cost: one JSON line per case (medians), no download needed.

    python benchmarks/dust3r_cost.py                      # CPU: 2 and 4 views
    python benchmarks/dust3r_cost.py --device cuda --views 2 --views 4 --views 7

The official network (ViT-L encoder, ViT-B decoder, DPT heads, 571 M parameters) is built with
random weights: the time of a forward pass does not depend on the values. Per case: the median
seconds of ``pairwise`` (every ordered pair of V crops at 512², DUSt3R's own input size) and of
the alignment to known cameras (``align_known_cameras``, 300 steps), and peak memory (CPU: max
RSS; CUDA: ``torch.cuda.max_memory_allocated``). ``create --geometry dust3r`` on four photos runs
one 4-view scene; ``prepare-data --geometry dust3r`` runs one scene of the input cameras per
timestep (7 for ``avat3r synth``'s 12 cameras, 6 timesteps per subject), which the last line
extrapolates to a subject.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

SYNTH_INPUT_CAMERAS, SYNTH_TIMESTEPS = 7, 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--views", type=int, action="append", help="views per scene (repeatable; default 2 and 4)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--crop", type=int, default=128, help="crop side the maps are made for (default 128)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
    from avat3r_cli.preprocess.dust3r.backend import dust3r_position_maps
    from avat3r_cli.preprocess.dust3r.config import Dust3rConfig
    from avat3r_cli.preprocess.dust3r.inference import make_pairs, pairwise
    from avat3r_cli.preprocess.dust3r.model import Dust3r

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    model = Dust3r(Dust3rConfig()).eval().to(device)
    params = sum(p.numel() for p in model.parameters())
    per_view: dict[int, float] = {}
    for views in args.views or [2, 4]:
        crops = np.random.default_rng(views).integers(0, 256, (views, args.crop, args.crop, 3), dtype=np.uint8)
        yaws = np.linspace(-40.0, 40.0, views)
        cams = [Camera(intrinsics_from_fov(30.0, args.crop, args.crop),
                       look_at(torch.tensor([0.6 * np.sin(np.radians(y)), 0.0, 0.6 * np.cos(np.radians(y))]),
                               torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])), args.crop, args.crop)
                for y in yaws]
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        pair_times, total_times = [], []
        for _ in range(args.repeats):
            with torch.no_grad():
                sync()
                t0 = time.perf_counter()
                pairwise(crops, model)
                sync()
                pair_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dust3r_position_maps(crops, cams, model)
            sync()
            total_times.append(time.perf_counter() - t0)
        pairs = len(make_pairs(views))
        per_view[views] = statistics.median(total_times)
        print(json.dumps({
            "case": f"dust3r-vitl-512-{views}-views", "device": str(device), "params_m": round(params / 1e6, 1),
            "pairs": pairs, "pairwise_s": round(statistics.median(pair_times), 2),
            "pairwise_s_per_pair": round(statistics.median(pair_times) / pairs, 3),
            "maps_s": round(per_view[views], 2),
            "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20 if cuda
                             else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }), flush=True)
    # A subject of `avat3r synth`: pairs grow as V(V-1), so scale the largest measured scene by pairs.
    largest = max(per_view)
    scale = len(make_pairs(SYNTH_INPUT_CAMERAS)) / len(make_pairs(largest))
    print(json.dumps({"case": "prepare-data-synth-subject-estimate", "device": str(device),
                      "scene_views": SYNTH_INPUT_CAMERAS, "timesteps": SYNTH_TIMESTEPS, "from_views": largest,
                      "minutes": round(per_view[largest] * scale * SYNTH_TIMESTEPS / 60, 1)}), flush=True)


if __name__ == "__main__":
    main()
