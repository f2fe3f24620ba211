"""Which input photo's Gaussians a held-out view is made of: one JSON line per case.

    python benchmarks/view_blend.py --photos PHOTO... [--weights W] [--sharpness P ...] [--subsets]
    python benchmarks/view_blend.py --data DATA --subjects S ... [--weights W] [--sharpness P ...]

An avatar renders every input view's pixel Gaussians (and its anchors) at once. This measures
what each view brings to a view no photo was taken from, without refinement:

* ``--photos``: the leave-one-out of ``evaluate --photos`` (``eval/photos.py``) at the model's
  size. Per held-out photo: face PSNR of the whole avatar (``fused``), of each other photo's
  pixel Gaussians alone (``alone:NAME``, with the cosine between that photo's and the held-out
  camera's direction from the head), and of the camera-weighted blend at each sharpness P.
  With ``--subsets``, also the face PSNR of avatars made from every non-empty subset of the
  other photos (``subset:1+2``, the usable photos numbered from 1 in the order given), and in
  the summary line how many of the ways of adding one photo to a set lowered the held-out face
  (``additions_lowering``, with the mean drop of those): whether one more photo helps a view.
* ``--data``: the held-out samples of ``evaluate --data`` (``eval/evaluate.py``, four inputs at
  one timestep, four targets elsewhere, the same draws) at the model's size: whole-image and
  foreground PSNR and silhouette IoU of ``fused`` and of each blend.

The camera-weighted blend multiplies the opacities of input view j's Gaussians by
((1 + cos_j) / (1 + max_i cos_i))^P, cos_j the cosine between view j's and the render camera's
direction from the head centre: the nearest photo keeps its Gaussians, farther ones fade (P = 0
is the fused avatar). It depends on the render camera, so a static .ply cannot hold it; it is a
measurement of how the views overlap, not a way to render avatars.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace


def blend_weights(input_dirs, render_dir, sharpness: float):
    """``[V]`` opacity factors of the input views for a camera in direction ``render_dir [3]`` (module docstring)."""
    cos = input_dirs @ render_dir
    return ((1.0 + cos) / (1.0 + cos.max())) ** sharpness


def _weighted(maps, weights):
    """``maps`` with view v's opacities ``[1, V, H, W]`` multiplied by ``weights [V]``."""
    return replace(maps, opacities=maps.opacities * weights.view(1, -1, 1, 1))


def _proper_subsets(ids: list[int]) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``ids`` but the whole (which is ``fused``), smallest first."""
    from itertools import combinations

    return [c for n in range(1, len(ids)) for c in combinations(ids, n)]


def _addition_changes(by_set: dict[frozenset, float]) -> list[float]:
    """Score change of every (set, one more photo) pair whose both ends are in ``by_set``."""
    return [by_set[bigger] - score for small, score in by_set.items() for bigger in by_set
            if len(bigger) == len(small) + 1 and small < bigger]


def photos_cases(args) -> None:
    """``--photos``: one line per held-out photo (fused, each other photo alone, each blend), then their means."""
    import torch

    from avat3r_cli.core.camera import Camera
    from avat3r_cli.eval.metrics import psnr
    from avat3r_cli.eval.photo_metrics import face_mask
    from avat3r_cli.eval.photos import BACKGROUND, make_avatar, matted_crops, view_directions
    from avat3r_cli.model.avat3r import maps_to_gaussians
    from avat3r_cli.pipeline.avatar import resolve_weights_spec
    from avat3r_cli.pipeline.models import load_avat3r
    from avat3r_cli.pipeline.preprocess import default_cache_dir
    from avat3r_cli.preprocess.photos import prepare_photos
    from avat3r_cli.render.api import render

    model, info = load_avat3r(resolve_weights_spec(args.weights), torch.device("cpu"))
    size, cache = model.config.input_size, default_cache_dir()
    base = prepare_photos(args.photos, size, geometry=model.config.geometry_backend, cache_dir=cache)
    views, used = base.views, [p for p in args.photos if p not in {s for s, _ in base.skipped}]
    crops = matted_crops(views)
    dirs = view_directions(torch.stack([v.world_to_cam for v in views]).float())
    totals: dict[str, list[float]] = {}
    drops: list[float] = []
    additions = 0

    def avatar_from(ids):
        """The unrefined avatar of the photos ``ids``, prepared as ``evaluate --photos`` prepares a subset."""
        subset = prepare_photos([used[i] for i in ids], size, geometry=model.config.geometry_backend, cache_dir=cache)
        return make_avatar(model, info, subset, torch.device("cpu"), 0)

    for k, held_out in enumerate(views):
        others = [i for i in range(len(views)) if i != k]
        avatar = avatar_from(others)
        maps = avatar.maps_at(held_out.blendshapes)
        cam, mask = Camera(held_out.K, held_out.world_to_cam, size, size), face_mask(held_out.landmarks, size)

        def face_psnr(m) -> float:
            with torch.no_grad():
                image = render(maps_to_gaussians(m, avatar.confidence_threshold), cam, BACKGROUND).image
            return round(float(psnr(image, crops[k], mask[None])[0]), 2)

        cases = {"fused": face_psnr(maps)}
        for slot, i in enumerate(others):
            alone = torch.zeros_like(maps.confidence)
            alone[:, slot] = maps.confidence[:, slot]
            cases[f"alone:{views[i].name}"] = face_psnr(replace(maps, confidence=alone, anchors=None))
        for p in args.sharpness:
            cases[f"blend:{p:g}"] = face_psnr(_weighted(maps, blend_weights(dirs[others], dirs[k], p)))
        by_set = {frozenset(others): cases["fused"]}
        for ids in _proper_subsets(others) if args.subsets else []:
            by_set[frozenset(ids)] = face_psnr(avatar_from(ids).maps_at(held_out.blendshapes))
            cases["subset:" + "+".join(str(i + 1) for i in ids)] = by_set[frozenset(ids)]
        if args.subsets:
            changes = _addition_changes(by_set)
            additions += len(changes)
            drops += [c for c in changes if c < 0]
        for name, value in cases.items():
            if not name.startswith(("alone:", "subset:")):
                totals.setdefault(name, []).append(value)
        cosines = {views[i].name: round(float(dirs[i] @ dirs[k]), 3) for i in others}
        print(json.dumps({"case": "view_blend_photo", "photo": held_out.name, "model": info.name,
                          "psnr_face": cases, "cos_to_held_out": cosines}), flush=True)
    summary = {"case": "view_blend_photo", "photo": "all", "model": info.name,
               "psnr_face": {name: round(sum(v) / len(v), 2) for name, v in totals.items()}}
    if args.subsets:
        summary["additions_lowering"] = f"{len(drops)}/{additions}"
        summary["mean_drop_db"] = round(sum(drops) / len(drops), 2) if drops else 0.0
    print(json.dumps(summary), flush=True)


def data_cases(args) -> None:
    """``--data``: one line per case (fused, each blend) over every target of every sample: PSNR, foreground PSNR, IoU."""
    from pathlib import Path

    import numpy as np
    import torch

    from avat3r_cli.data.prepared import PreparedSubject, prepared_name
    from avat3r_cli.eval.evaluate import held_out_samples, render_with_alpha
    from avat3r_cli.eval.metrics import psnr, silhouette_iou
    from avat3r_cli.eval.photos import view_directions
    from avat3r_cli.io.weights import load_model
    from avat3r_cli.model.avat3r import Avat3r
    from avat3r_cli.pipeline.avatar import resolve_weights_spec
    from avat3r_cli.train.step import composite_targets

    model, info = load_model(resolve_weights_spec(args.weights), Avat3r.from_config_dict, device="cpu")
    model.eval()
    cfg, bg = model.config, torch.ones(3)
    size = (cfg.input_size, cfg.input_size)
    sharpness = [0.0, *args.sharpness]
    rows: dict[float, list[tuple[float, float, float]]] = {p: [] for p in sharpness}
    for k, name in enumerate(args.subjects):
        subject = PreparedSubject(Path(args.data) / name / prepared_name(cfg.input_size, cfg.geometry_backend))
        # evaluate --data's draws at its defaults (seed 0, four inputs at one timestep, four targets)
        for _, sample in held_out_samples(subject, k, 0, args.samples, 4, 4, True):
            with torch.no_grad():
                maps = model(sample.inputs, sample.expression)
            in_dirs = view_directions(sample.inputs.world_to_cam[0].float())
            targets = composite_targets(sample.target_images, sample.target_masks, bg)
            for K, w2c, target, fg in zip(sample.target_K, sample.target_world_to_cam, targets, sample.target_masks):
                render_dir = view_directions(w2c[None].float())[0]
                for p in sharpness:
                    weighted = _weighted(maps, blend_weights(in_dirs, render_dir, p))
                    image, alpha = render_with_alpha(weighted, K[None], w2c[None], size, bg, cfg.confidence_threshold)
                    rows[p].append((float(psnr(image, target[None])[0]), float(psnr(image, target[None], fg[None])[0]),
                                    float(silhouette_iou(alpha, fg[None])[0])))
    for p, values in rows.items():
        a = np.array(values)
        print(json.dumps({"case": "view_blend_data", "method": "fused" if p == 0 else f"blend:{p:g}",
                          "model": info.name, "targets": len(values), "psnr": round(float(a[:, 0].mean()), 2),
                          "psnr_fg": round(float(a[:, 1].mean()), 2), "iou": round(float(a[:, 2].mean()), 3)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", help="leave-one-out on these photos of one person")
    parser.add_argument("--data", help="a dataset folder prepared at the model's size")
    parser.add_argument("--subjects", nargs="+", default=[], help="with --data: the held-out subjects")
    parser.add_argument("--samples", type=int, default=4, help="with --data: samples per subject (default 4)")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--sharpness", type=float, action="append", default=None, help="blend sharpness P (default 4)")
    parser.add_argument("--subsets", action="store_true", help="with --photos: also avatars from each subset of the others")
    args = parser.parse_args()
    args.sharpness = args.sharpness or [4.0]
    if bool(args.photos) == bool(args.data):
        parser.error("give --photos or --data")
    photos_cases(args) if args.photos else data_cases(args)


if __name__ == "__main__":
    main()
