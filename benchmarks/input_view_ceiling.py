"""How well an avatar shows the photos it was made from: one JSON line per input photo.

    python benchmarks/input_view_ceiling.py PHOTO... [--weights W] [--refine N] [--resolution R]

The avatar is the one ``create`` makes from all the photos. For each photo, rendered at that
photo's own camera and expression and compared inside the face hull (as ``evaluate --photos``
compares, ``eval/photos.py``) with the photo's matted crop at R²:

* ``psnr_face_all``: the whole avatar (every view's Gaussians and the anchors);
* ``psnr_face_own``: that view's own pixel Gaussians alone;
* ``psnr_face_grid``: no model at all: the photo's crop at the model's size, upsampled to R²
  (what a per-pixel grid of exact colours could show; the ceiling the grid sets);
* ``akd_all_px512``: the whole avatar's AKD against the photo (as ``evaluate --photos`` reads
  it), so a held-out photo's AKD can be set against what the photos themselves read back
  (``benchmarks/akd_blur.py`` gives the part that blur alone costs);
* the view's Gaussians: median and 90th percentile of their largest axis in grid pixels
  (scale x focal / depth at the model's crop size), and their median opacity.

A held-out photo cannot score above what the photos themselves render back, so the gap between
``psnr_face_grid`` and ``psnr_face_own`` is blur that the model adds where it is not guessing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--refine", type=int, default=0, help="refinement steps, as create --refine (default 0)")
    parser.add_argument("--resolution", type=int, default=256, help="comparison crop side (default 256)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from avat3r_cli.core.camera import Camera
    from avat3r_cli.eval.metrics import psnr
    from avat3r_cli.eval.photo_metrics import face_mask, keypoint_distance, read_face
    from avat3r_cli.eval.photos import BACKGROUND, make_avatar, matted_crops
    from avat3r_cli.model.avat3r import maps_to_gaussians
    from avat3r_cli.pipeline.avatar import resolve_weights_spec
    from avat3r_cli.pipeline.models import load_avat3r
    from avat3r_cli.pipeline.preprocess import default_cache_dir
    from avat3r_cli.preprocess.face import FaceAnalyzer
    from avat3r_cli.preprocess.photos import prepare_photos
    from avat3r_cli.render.api import render

    device = torch.device("cpu")
    model, info = load_avat3r(resolve_weights_spec(args.weights), device)
    size, r = model.config.input_size, args.resolution
    cache = default_cache_dir()
    prepared = prepare_photos(args.photos, size, geometry=model.config.geometry_backend, cache_dir=cache)
    views = prepared.views
    skipped = {path for path, _ in prepared.skipped}
    for path, reason in prepared.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    targets = prepare_photos([p for p in args.photos if p not in skipped], r, cache_dir=cache).views
    crops, small = matted_crops(targets), matted_crops(views)
    avatar = make_avatar(model, info, prepared, device, args.refine)
    tau = avatar.confidence_threshold
    with FaceAnalyzer() as analyzer:
        for i, view in enumerate(views):
            maps = avatar.maps_at(view.blendshapes)
            own_only = torch.zeros_like(maps.confidence)
            own_only[:, i] = maps.confidence[:, i]
            own = maps_to_gaussians(replace(maps, confidence=own_only, anchors=None), tau)
            cam = Camera(targets[i].K, targets[i].world_to_cam, r, r)
            mask = face_mask(targets[i].landmarks, r)
            with torch.no_grad():
                whole = render(avatar.gaussians_at(view.blendshapes), cam, BACKGROUND).image
                alone = render(own, cam, BACKGROUND).image
            grid = F.interpolate(small[i][None], size=(r, r), mode="bilinear", align_corners=False)[0]
            w2c = torch.as_tensor(view.world_to_cam, dtype=torch.float32)
            depth = (own.means @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
            footprint = own.scales.max(dim=1).values * float(view.K[0][0]) / depth  # grid pixels
            face = lambda image: round(float(psnr(image, crops[i], mask[None])[0]), 2)  # noqa: E731
            read, photo_read = read_face(analyzer, whole.clamp(0, 1)), read_face(analyzer, crops[i])
            akd = None if read is None or photo_read is None else round(keypoint_distance(read, photo_read), 2)
            print(json.dumps({
                "case": "input_view_ceiling", "photo": view.name, "model": info.name, "refine": args.refine,
                "resolution": r, "psnr_face_all": face(whole), "psnr_face_own": face(alone),
                "psnr_face_grid": face(grid), "akd_all_px512": akd,
                "gaussians_own": int(own.means.shape[0]),
                "footprint_px_median": round(float(footprint.median()), 2),
                "footprint_px_p90": round(float(footprint.quantile(0.9)), 2),
                "opacity_median": round(float(own.opacities.median()), 3),
            }), flush=True)


if __name__ == "__main__":
    main()
