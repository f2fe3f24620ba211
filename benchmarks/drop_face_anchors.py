"""An ablation of the anchors in front of the face: writes a copy of a model without them.

    python benchmarks/drop_face_anchors.py OUT_MODEL [--weights avat3r-small]
    avat3r evaluate --data DATA --weights OUT_MODEL ...   # then compare with --weights W

Anchor queries do not attend to each other (``model/anchor_gaussians.py``), so dropping some
leaves every other Gaussian of the model exactly as it was: the copy differs from the model in
the dropped anchors alone. Dropped: anchors in front of the head frame's centre (z < -3 cm)
inside the face's box (|x| < 7 cm, -7 cm < y < 11 cm). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--weights", default="avat3r-small")
    args = parser.parse_args()

    from avat3r_cli.io.weights import save_model
    from avat3r_cli.model.avat3r import Avat3r
    from avat3r_cli.pipeline.avatar import resolve_weights_spec
    from avat3r_cli.pipeline.models import load_avat3r

    model, _ = load_avat3r(resolve_weights_spec(args.weights))
    if model.anchors is None:
        raise SystemExit(f"{args.weights}: the model has no anchor Gaussians")
    points = model.anchors.points
    face = (points[:, 2] < -0.03) & (points[:, 0].abs() < 0.07) & (points[:, 1] > -0.07) & (points[:, 1] < 0.11)
    keep = ~face
    ablated = Avat3r(model.config.replace(anchor_gaussians=int(keep.sum())))
    state = model.state_dict()
    for name in ("anchors.points", "anchors.embedding"):
        state[name] = state[name][keep]
    ablated.load_state_dict(state, strict=True)
    save_model(ablated, args.output)
    print(json.dumps({"case": "drop_face_anchors", "weights": args.weights, "anchors": int(points.shape[0]),
                      "dropped": int(face.sum()), "output": args.output}))


if __name__ == "__main__":
    main()
