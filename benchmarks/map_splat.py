"""Do the photos' position maps agree? Held-out faces from the maps and the crops alone, no network.

    python benchmarks/map_splat.py PHOTO... [--geometry template|dust3r] [--focal-35mm F] [--sigma 0.7] [--opacity 0.9]
                                   [--resolution R] [--sheet DIR]

The leave-one-out of ``evaluate --photos`` (``eval/photos.py``), with the model replaced by the
plainest avatar the inputs allow: one small round Gaussian per pixel of each other photo's person
mask, at that pixel's position-map point, in that pixel's colour (standard deviation ``--sigma``
pixel footprints, opacity ``--opacity``). Rendered at the held-out photo's camera and scored as
``evaluate`` scores (face PSNR and SSIM, head crop PSNR, AKD at 512²), two ways:

* ``fused``: every other photo's Gaussians at once, as an avatar holds them;
* ``nearest``: only the photo whose camera is nearest in direction (``nearest-view``'s photo,
  moved to the held-out camera by its map instead of shown unchanged).

With maps that put every photo's pixels on the person's surface, ``fused`` sees more of the face
than ``nearest`` and should score at least as high. Where the maps disagree, the photos'
features land in different places and the fused face shows them twice (``--sheet`` writes photo
| fused | nearest per held-out photo). This measures the geometry a model is given, before any
network; no expression is transferred, so a held-out photo whose expression differs from the
others' (a smile) scores lower for that alone. With ``--geometry dust3r`` each leave-one-out set
gets DUSt3R's maps made from that set, as ``create`` would (weights: ``avat3r weights download
dust3r``). One JSON line per (photo, method), then one mean line per method.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def splat_view(view, mask, sigma_px: float, opacity: float):
    """One round Gaussian per masked pixel of ``view`` (a ``PhotoView``) with a map point; ``mask`` ``[1, R, R]``."""
    import torch

    from avat3r_cli.core.gaussians import Gaussians, rgb_to_sh_dc

    points = torch.as_tensor(view.positions).float().reshape(3, -1).T  # [R*R, 3]
    keep = (mask.reshape(-1) > 0.5) & (torch.as_tensor(view.confidence).float().reshape(-1) > 0.0)
    colours = torch.as_tensor(view.image).float().reshape(-1, 3) / 255.0
    w2c = torch.as_tensor(view.world_to_cam).float()
    depth = (points @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    footprint = depth / float(torch.as_tensor(view.K)[0, 0])  # metres per pixel at that depth
    n = int(keep.sum())
    return Gaussians(
        means=points[keep], quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n, 4).clone(),
        scales=(sigma_px * footprint[keep])[:, None].expand(n, 3).clone(), opacities=torch.full((n,), opacity),
        sh=rgb_to_sh_dc(colours[keep])[:, None, :],
    )


def merge(parts):
    """One ``Gaussians`` of several (concatenated in order)."""
    import torch

    from avat3r_cli.core.gaussians import Gaussians

    return Gaussians(**{f: torch.cat([getattr(p, f) for p in parts]) for f in ("means", "quats", "scales", "opacities", "sh")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--geometry", default="template", choices=["template", "dust3r"])
    parser.add_argument("--sigma", type=float, default=0.7, help="Gaussian size in pixel footprints (default 0.7)")
    parser.add_argument("--opacity", type=float, default=0.9)
    parser.add_argument("--resolution", type=int, default=128, help="crop side (default 128, the bundled model's)")
    parser.add_argument("--sheet", type=Path, help="write photo | fused | nearest PNGs here")
    parser.add_argument("--focal-35mm", type=float, help="assume this 35 mm-equivalent focal length for every photo "
                        "(default: each photo's EXIF, else preprocessing's default)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from avat3r_cli.core.camera import Camera
    from avat3r_cli.eval.metrics import mean_finite
    from avat3r_cli.eval.photo_metrics import face_mask, read_face, score_image, to_uint8
    from avat3r_cli.eval.photos import BACKGROUND, matted_crops, nearest_view, view_directions
    from avat3r_cli.pipeline.preprocess import default_cache_dir
    from avat3r_cli.preprocess.face import FaceAnalyzer
    from avat3r_cli.preprocess.head_pose import focal_from_exif_35mm
    from avat3r_cli.preprocess.person_mask import person_masks
    from avat3r_cli.preprocess.photos import prepare_photos
    from avat3r_cli.render.api import render

    r, cache = args.resolution, default_cache_dir()
    paths = [Path(p) for p in args.photos]
    focal = None
    if args.focal_35mm:
        with Image.open(paths[0]) as first:  # the photos of one capture share a size
            focal = focal_from_exif_35mm(args.focal_35mm, first.height, first.width)
    base = prepare_photos(paths, r, cache_dir=cache, focal_px=focal)
    used = [p for p in paths if str(p) not in {s for s, _ in base.skipped}]
    views = base.views
    crops = matted_crops(views)
    directions = view_directions(torch.stack([torch.as_tensor(v.world_to_cam).float() for v in views]))
    if args.sheet:
        args.sheet.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {"fused": [], "nearest": []}
    with FaceAnalyzer() as analyzer:
        for k, held_out in enumerate(views):
            others = [i for i in range(len(views)) if i != k]
            subset = prepare_photos([used[i] for i in others], r, geometry=args.geometry, cache_dir=cache,
                                    focal_px=focal).views
            masks = torch.from_numpy(person_masks(np.stack([v.image for v in subset])))
            parts = [splat_view(v, m, args.sigma, args.opacity) for v, m in zip(subset, masks)]
            j = nearest_view(k, directions)
            camera = Camera(held_out.K, held_out.world_to_cam, r, r)
            mask, photo_read = face_mask(held_out.landmarks, r), read_face(analyzer, crops[k])
            images = {"fused": merge(parts), "nearest": parts[others.index(j)]}
            for method, gaussians in images.items():
                image = render(gaussians, camera, BACKGROUND).image.clamp(0, 1).cpu()
                images[method] = image
                score = score_image(image, crops[k], mask, read_face(analyzer, image), photo_read)
                rows[method].append(score)
                print(json.dumps({"photo": held_out.name, "method": method, "geometry": args.geometry,
                                  "nearest": views[j].name if method == "nearest" else None,
                                  "psnr_face": score.psnr_face, "ssim_face": score.ssim_face,
                                  "psnr_crop": score.psnr_crop, "akd_px512": score.akd_px512}), flush=True)
            if args.sheet:
                strip = torch.cat([crops[k], images["fused"], images["nearest"]], dim=2)
                Image.fromarray(to_uint8(strip)).save(args.sheet / f"{k + 1:02d}-{Path(held_out.name).stem}.png")
    for method, scores in rows.items():
        print(json.dumps({"photo": "all", "method": method, "geometry": args.geometry, "sigma": args.sigma,
                          "opacity": args.opacity, "resolution": r, "focal_35mm": args.focal_35mm,
                          **{key: mean_finite([getattr(s, key) for s in scores])
                             for key in ("psnr_face", "ssim_face", "psnr_crop", "akd_px512")}}), flush=True)


if __name__ == "__main__":
    main()
