"""Refinement's penalty weights on your own photos: leave-one-out scores, one JSON line per case.

    python benchmarks/refine_penalty.py PHOTO... [--weights W] [--case STEPS:PROXIMITY:SMOOTHNESS ...]
        [--resolution R]

Each case runs ``evaluate --photos --leave-one-out --refine STEPS`` (``eval/photos.py``) with
``pipeline/refine.py``'s ``PROXIMITY_WEIGHT`` and ``SMOOTHNESS_WEIGHT`` set as given, so the cases
differ in the penalty alone. The default cases: no refinement, refinement unpenalised, and the
shipped weights.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--case", action="append", help="STEPS:PROXIMITY:SMOOTHNESS")
    parser.add_argument("--resolution", type=int, default=None, help="comparison crop side (default: the model's)")
    args = parser.parse_args()

    from avat3r_cli.eval.photos import evaluate_photos
    from avat3r_cli.pipeline import refine

    shipped = f"{refine.PROXIMITY_WEIGHT}:{refine.SMOOTHNESS_WEIGHT}"
    for case in args.case or ["0:0:0", "100:0:0", f"100:{shipped}"]:
        steps, proximity, smoothness = case.split(":")
        refine.PROXIMITY_WEIGHT, refine.SMOOTHNESS_WEIGHT = float(proximity), float(smoothness)
        start = time.perf_counter()
        result = evaluate_photos(args.photos, weights=args.weights, refine=int(steps), resolution=args.resolution,
                                 device="cpu")
        summary = next(s for s in result.summaries if s.method == "avat3r")
        print(json.dumps({
            "case": "refine_penalty", "steps": int(steps), "proximity": float(proximity), "smoothness": float(smoothness),
            "resolution": result.resolution, **summary.to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
