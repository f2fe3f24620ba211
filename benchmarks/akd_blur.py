"""What blur alone does to AKD: each photo's crop against itself blurred, one JSON line per (photo, sigma).

    python benchmarks/akd_blur.py PHOTO... [--sigma S ...] [--resolution R]

``evaluate --photos`` reads MediaPipe's 478 landmarks on a render and on the photo's matted crop
and reports their mean distance at 512² (AKD, ``eval/photo_metrics.py``). A render can be in the
right place and still read elsewhere, because a detector places landmarks differently on a soft
image. This measures that part with no model at all: each photo's matted crop at R² (default
128², the bundled model's size) is blurred by a Gaussian of ``sigma`` crop pixels and read again.
Each line gives the AKD, the mean landmark shift (x, y; pixels at 512², y down), and whether a
face was found. ``benchmarks/input_view_ceiling.py`` gives the width of a model's Gaussians in
the same crop pixels; blurs of that order show the floor that blur alone sets under the AKD of
its renders.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--sigma", type=float, action="append", help="blur in crop pixels (repeatable)")
    parser.add_argument("--resolution", type=int, default=128, help="crop side (default 128, the bundled model's)")
    args = parser.parse_args()

    import cv2
    import torch

    from avat3r_cli.eval.photo_metrics import keypoint_distance, read_face
    from avat3r_cli.eval.photos import matted_crops
    from avat3r_cli.pipeline.preprocess import default_cache_dir
    from avat3r_cli.preprocess.face import FaceAnalyzer
    from avat3r_cli.preprocess.photos import prepare_photos

    views = prepare_photos(args.photos, args.resolution, cache_dir=default_cache_dir()).views
    sigmas = args.sigma or [0.75, 1.5, 2.5]
    with FaceAnalyzer() as analyzer:
        for view, crop in zip(views, matted_crops(views)):
            sharp = read_face(analyzer, crop)
            image = crop.permute(1, 2, 0).numpy()
            for sigma in sigmas:
                blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
                soft = read_face(analyzer, torch.from_numpy(blurred).permute(2, 0, 1).clamp(0, 1))
                found = sharp is not None and soft is not None
                shift = (soft.landmarks.mean(0) - sharp.landmarks.mean(0)) if found else None
                print(json.dumps({
                    "case": "akd_blur", "photo": view.name, "resolution": args.resolution, "sigma": sigma,
                    "akd_px512": round(keypoint_distance(soft, sharp), 2) if found else None,
                    "shift_px512": [round(float(s), 2) for s in shift] if found else None,
                    "face_found": soft is not None,
                }), flush=True)


if __name__ == "__main__":
    main()
