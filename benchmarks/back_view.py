"""Is each avatar's head closed behind? ``eval/back_view.py``'s check, one JSON line per avatar.

    python benchmarks/back_view.py OUT/avatar.avat3r.safetensors ... [--device cpu]

Each argument is the animation bundle ``avat3r create`` wrote; the check runs on the avatar at
its neutral code (what ``avatar.ply`` holds). A closed head: |mirror_correlation| under 0.35
and back_depth_m below -0.03 (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from avat3r_cli.eval.back_view import back_view_check
    from avat3r_cli.pipeline.avatar import Avatar

    for path in args.bundles:
        avatar = Avatar.load(path, device=args.device)
        gaussians = avatar.neutral()
        check = back_view_check(gaussians)
        print(json.dumps({
            "case": "back_view", "avatar": path, "views": avatar.bundle.num_views, "gaussians": gaussians.count,
            "mirror_correlation": round(check.mirror_correlation, 3), "back_depth_m": round(check.back_depth_m, 4),
            "back_coverage": round(check.back_coverage, 3),
        }), flush=True)


if __name__ == "__main__":
    main()
