"""Gaussians per network pixel (``gaussian_upsample``) on your own photos: one JSON line per case.

    python benchmarks/gaussian_upsample.py PHOTO... [--weights W] [--factor F ...] [--resolution R ...]
        [--refine N ...]

The model's ``gaussian_upsample`` f adds no tensors (``docs/model.md``), so one set of weights runs
at every f: each factor writes a copy of the weights folder whose ``config.json`` differs in
``gaussian_upsample`` alone, and the cases differ in that alone. For each factor, refinement steps
and comparison resolution: ``evaluate --photos --leave-one-out`` scores (``eval/photos.py``). For
each factor: the avatar made from all the photos without refinement (``create --refine 0
--no-video``), its Gaussian count and the median time of one frame of its turntable at 512².
The leave-one-out lines' ``seconds`` are what the cases cost (refinement included).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _factor_weights(source: Path, factor: int, folder: Path) -> Path:
    """A copy of the weights folder ``source`` whose config has ``gaussian_upsample = factor``."""
    from avat3r_cli.io.weights import CONFIG_FILE, WEIGHTS_FILE, read_config

    folder.mkdir(parents=True)
    shutil.copyfile(source / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    config = {**read_config(source), "gaussian_upsample": factor}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


def _render_seconds(ply: Path, size: int, frames: int) -> float:
    """Median seconds of one ``size``² frame of a ``frames``-frame turntable of ``ply`` (as ``avat3r render``)."""
    import torch

    from avat3r_cli.io.ply import read_ply
    from avat3r_cli.pipeline.turntable import turntable_cameras
    from avat3r_cli.render.api import render

    gaussians = read_ply(ply)
    cameras, _ = turntable_cameras(gaussians, frames, size)
    times = []
    with torch.inference_mode():
        for camera in cameras:
            t0 = time.perf_counter()
            render(gaussians, camera)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--weights", default=None, help="weights folder (default: the bundled model)")
    parser.add_argument("--factor", type=int, action="append", help="gaussian_upsample (default: 1 and 2)")
    parser.add_argument("--resolution", type=int, action="append", help="comparison crop side (default: 256 and 512)")
    parser.add_argument("--refine", type=int, action="append", help="refinement steps (default: 0)")
    parser.add_argument("--repeats", type=int, default=8, help="turntable frames timed")
    args = parser.parse_args()

    from avat3r_cli.eval.photos import evaluate_photos
    from avat3r_cli.pipeline.avatar import default_weights_folder
    from avat3r_cli.pipeline.create import run_create

    source = Path(args.weights) if args.weights else default_weights_folder()
    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.factor or [1, 2]:
            weights = str(_factor_weights(source, factor, Path(tmp) / f"f{factor}"))
            for steps in args.refine or [0]:
                for resolution in args.resolution or [256, 512]:
                    start = time.perf_counter()
                    result = evaluate_photos(args.photos, weights=weights, refine=steps, resolution=resolution,
                                             device="cpu")
                    summary = next(s for s in result.summaries if s.method == "avat3r")
                    print(json.dumps({
                        "case": "leave_one_out", "gaussian_upsample": factor, "refine": steps,
                        "resolution": resolution, **summary.to_dict(),
                        "seconds": round(time.perf_counter() - start, 1),
                    }), flush=True)
            out = Path(tmp) / f"avatar{factor}"
            report = run_create(args.photos, out, weights=weights, refine=0, video=False, device="cpu")
            print(json.dumps({
                "case": "avatar", "gaussian_upsample": factor, "gaussians": report["gaussians"],
                "render_512_seconds": round(_render_seconds(out / "avatar.ply", 512, args.repeats), 3),
            }), flush=True)


if __name__ == "__main__":
    main()
