"""What refinement is fitted to: person-matted photos against the template oval, on your own photos.

    python benchmarks/refine_targets.py PHOTO... [--weights W] [--refine N]

One JSON line per case of ``evaluate --photos --leave-one-out --refine N`` (``eval/photos.py``):
``person`` is the shipped ``pipeline/refine.py`` (each photo over white outside MediaPipe's person
mask); ``oval`` replaces only ``refine_targets`` by the earlier matting (white outside the
position map's confidence >= the model's threshold, the template head's oval). The scoring is
the same in both (held-out photos matted by their person masks), so the cases differ in the
refinement target alone.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--refine", type=int, default=50)
    args = parser.parse_args()

    import torch

    from avat3r_cli.eval.photos import evaluate_photos
    from avat3r_cli.pipeline import refine

    person = refine.refine_targets

    def oval(avatar, background=refine.BACKGROUND):
        b = avatar.bundle
        images = b.images.permute(0, 3, 1, 2).float().to(avatar.device) / 255.0
        mask = (b.confidence.to(avatar.device) >= avatar.confidence_threshold).float()
        bg = torch.tensor(background, device=avatar.device).view(1, 3, 1, 1)
        return images * mask + bg * (1.0 - mask)

    for name, targets in (("person", person), ("oval", oval)):
        refine.refine_targets = targets
        start = time.perf_counter()
        result = evaluate_photos(args.photos, weights=args.weights, refine=args.refine, device="cpu")
        summary = next(s for s in result.summaries if s.method == "avat3r")
        print(json.dumps({
            "case": "refine_targets", "targets": name, "steps": args.refine, **summary.to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
