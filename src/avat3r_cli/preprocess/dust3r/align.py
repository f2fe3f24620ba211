"""Global alignment of DUSt3R's pairwise point maps with the cameras fixed to known ones.

The reference's recipe (``docs/paper.md`` sections 4.3 and 9): DUSt3R's
``PointCloudOptimizer`` with ``preset_pose`` / ``preset_focal``, ``niter=300``, cosine schedule,
``lr=0.01``; re-implemented compactly. The unknowns are

- one log-depth map per view; its world points are the depths along the *known* camera rays,
  so the result is pixel-aligned with the given cameras by construction;
- one similarity per pair (i, j): scale s, and a rotation / translation that start at camera
  i's pose (the pair's points are in camera i's frame) and may drift a little to absorb what
  DUSt3R's prediction disagrees with the given camera about (as ``pw_poses`` do in DUSt3R).

Loss (DUSt3R's, with its defaults ``conf='log'`` and L1): for every pair and both of its views,
the log-confidence-weighted Euclidean distance between the view's back-projected world points
and the pair's aligned prediction, averaged over pixels and pairs. Adam, betas (0.9, 0.9).

Initialisation (closed form instead of DUSt3R's PnP): the pair scale is where view j's points,
moved into camera j, best lie on camera j's pixel rays (a weighted median of per-pixel
solutions); each view's depth starts from its most confident pair. One view alone (the pair
(0, 0)) has no baseline, so its metric scale is unobservable; [I] it is then set so that the
median depth equals the camera's distance to the world origin (the head centre) and frozen.

Letters: V views, P pairs, H x W network resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Alignment:
    """Aligned geometry at the network resolution.

    Attributes:
        depth: ``[V, H, W]`` z-depth along each known camera (metres of the cameras' world).
        points: ``[V, H, W, 3]`` world points (the depths back-projected).
        confidence: ``[V, H, W]`` raw DUSt3R confidence (>= 1): per pixel, the maximum over the
            pairs that predict it (DUSt3R's ``im_conf``).
        pair_scales: ``[P]`` scale of each pair's prediction.
        loss: final value of the alignment loss.
    """

    depth: torch.Tensor
    points: torch.Tensor
    confidence: torch.Tensor
    pair_scales: torch.Tensor
    loss: float


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[V, H, W, 3]`` camera-frame rays with z = 1 through pixel centres (+0.5) of ``K [V, 3, 3]``."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=K.dtype, device=K.device) + 0.5,
        torch.arange(width, dtype=K.dtype, device=K.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack((u, v, torch.ones_like(u)), dim=-1)  # [H, W, 3]
    return torch.einsum("vab,hwb->vhwa", torch.linalg.inv(K), pix)


def backproject(depth: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """World points ``[V, H, W, 3]`` of z-depths ``[V, H, W]`` seen by ``K [V, 3, 3]``, ``world_to_cam [V, 4, 4]``."""
    rays = pixel_rays(K, depth.shape[1], depth.shape[2])
    rot, trans = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    cam = rays * depth[..., None]
    return torch.einsum("vba,vhwb->vhwa", rot, cam - trans[:, None, None, :])  # R^T (x - t)


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(values)
    cum = torch.cumsum(weights[order], dim=0)
    index = torch.searchsorted(cum, cum[-1] * 0.5).clamp(max=values.numel() - 1)
    return values[order][index]


def _skew(w: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(w[..., 0])
    return torch.stack(
        (zero, -w[..., 2], w[..., 1], w[..., 2], zero, -w[..., 0], -w[..., 1], w[..., 0], zero), dim=-1
    ).view(*w.shape[:-1], 3, 3)


def _initial_scales(
    pairs: list[tuple[int, int]], pts_i: torch.Tensor, pts_j: torch.Tensor, w_i: torch.Tensor, w_j: torch.Tensor,
    rays: torch.Tensor, c2w: torch.Tensor, w2c: torch.Tensor,
) -> tuple[torch.Tensor, bool]:
    """Per-pair scales ``[P]`` and whether any pair had a baseline to measure it."""
    scales, measured = [], False
    for e, (i, j) in enumerate(pairs):
        centre_i = c2w[i, :3, 3]
        baseline = float(torch.linalg.norm(centre_i - c2w[j, :3, 3]))
        if i != j and baseline > 1e-6 * max(1.0, float(torch.linalg.norm(centre_i))):
            # In camera j: s * R_ji X + t_ji must be parallel to the pixel ray d, i.e. s a + b = 0
            # with a = (R_ji X) x d, b = t_ji x d; each pixel's solution weighted by w |a|^2.
            rot = w2c[j, :3, :3] @ c2w[i, :3, :3]
            trans = w2c[j, :3, :3] @ centre_i + w2c[j, :3, 3]
            d = torch.nn.functional.normalize(rays[j], dim=-1).reshape(-1, 3)
            a = torch.linalg.cross(pts_j[e].reshape(-1, 3) @ rot.T, d)
            b = torch.linalg.cross(trans.expand_as(d), d)
            aa = (a * a).sum(-1)
            s = -(a * b).sum(-1) / aa.clamp(min=1e-20)
            weight = w_j[e].reshape(-1) * aa
            ok = torch.isfinite(s) & (s > 0) & (weight > 0)
            if bool(ok.any()):
                scales.append(_weighted_median(s[ok], weight[ok]))
                measured = True
                continue
        # No baseline: the median depth goes to the camera's distance from the world origin.
        z = pts_i[e, ..., 2].reshape(-1)
        ok = z > 0
        median = _weighted_median(z[ok], w_i[e].reshape(-1)[ok] + 1e-6) if bool(ok.any()) else z.new_tensor(1.0)
        distance = float(torch.linalg.norm(centre_i)) or 1.0
        scales.append(z.new_tensor(distance) / median.clamp(min=1e-8))
    return torch.stack(scales), measured


def align_known_cameras(
    pairs: list[tuple[int, int]],
    pts_i: torch.Tensor,
    pts_j: torch.Tensor,
    conf_i: torch.Tensor,
    conf_j: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    iterations: int = 300,
    lr: float = 0.01,
    lr_min: float = 1e-6,
) -> Alignment:
    """Fuse pairwise point maps into one depth map per known camera.

    Args:
        pairs: P ordered pairs (i, j) of view indices.
        pts_i: ``[P, H, W, 3]`` view i's points in camera i's frame (any scale per pair).
        pts_j: ``[P, H, W, 3]`` view j's points in camera i's frame (the same scale).
        conf_i, conf_j: ``[P, H, W]`` raw confidences (>= 1); the loss weighs by their log.
        K: ``[V, 3, 3]`` intrinsics at the H x W resolution (pixel centres at +0.5).
        world_to_cam: ``[V, 4, 4]`` known extrinsics (OpenCV).
        iterations: Adam steps (DUSt3R: 300; 0 returns the initialisation).
        lr: peak learning rate of the cosine schedule (down to ``lr_min``).

    Returns:
        ``Alignment`` (detached, float32, on the inputs' device).
    """
    with torch.inference_mode(False), torch.enable_grad():
        # Clones: the inputs may be inference tensors, which autograd cannot save.
        pts_i, pts_j = pts_i.detach().float().clone(), pts_j.detach().float().clone()
        conf_i, conf_j = conf_i.detach().float().clone(), conf_j.detach().float().clone()
        device = pts_i.device
        K = K.detach().to(device, torch.float32).clone()
        w2c = world_to_cam.detach().to(device, torch.float32).clone()
        num_views, (height, width) = K.shape[0], pts_i.shape[1:3]
        c2w = torch.linalg.inv(w2c)
        ei = torch.tensor([i for i, _ in pairs], device=device)
        ej = torch.tensor([j for _, j in pairs], device=device)
        w_i, w_j = conf_i.clamp(min=1.0).log(), conf_j.clamp(min=1.0).log()  # DUSt3R's conf='log'
        rays = pixel_rays(K, height, width)

        scales, measured = _initial_scales(pairs, pts_i, pts_j, w_i, w_j, rays, c2w, w2c)
        depth0 = []
        for v in range(num_views):
            candidates = [e for e, (i, _) in enumerate(pairs) if i == v]
            if not candidates:
                raise ValueError(f"view {v} is never the first view of a pair")
            best = max(candidates, key=lambda e: float(conf_i[e].mean()))
            z = scales[best] * pts_i[best, ..., 2]
            floor = 1e-3 * float(z[z > 0].median()) if bool((z > 0).any()) else 1e-3
            depth0.append(z.clamp(min=floor))
        log_depth = torch.stack(depth0).log().requires_grad_(True)
        log_scale = scales.log().clone().requires_grad_(measured)
        # Scale and pose of a pair without baseline would only trade off against its depth.
        omega = torch.zeros(len(pairs), 3, device=device, requires_grad=measured)
        shift = torch.zeros(len(pairs), 3, device=device, requires_grad=measured)
        rot_i, centre_i = c2w[ei, :3, :3], c2w[ei, :3, 3]

        def loss_fn() -> torch.Tensor:
            world = backproject(log_depth.exp(), K, w2c)
            rot = rot_i @ torch.linalg.matrix_exp(_skew(omega))
            scale = log_scale.exp()[:, None, None, None]
            offset = (centre_i + shift)[:, None, None, :]
            aligned_i = torch.einsum("pab,phwb->phwa", rot, scale * pts_i) + offset
            aligned_j = torch.einsum("pab,phwb->phwa", rot, scale * pts_j) + offset
            li = (w_i * (world[ei] - aligned_i).norm(dim=-1)).mean(dim=(1, 2))
            lj = (w_j * (world[ej] - aligned_j).norm(dim=-1)).mean(dim=(1, 2))
            return (li + lj).mean()

        params = [p for p in (log_depth, log_scale, omega, shift) if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
        for step in range(iterations):
            t = step / iterations
            for group in optimizer.param_groups:
                group["lr"] = lr_min + (lr - lr_min) * (1.0 + math.cos(math.pi * t)) / 2.0
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            final = float(loss_fn())
            depth = log_depth.exp()
            points = backproject(depth, K, w2c)
            confidence = torch.ones(num_views, height, width, device=device)
            for e, (i, j) in enumerate(pairs):
                confidence[i] = torch.maximum(confidence[i], conf_i[e])
                confidence[j] = torch.maximum(confidence[j], conf_j[e])
        return Alignment(
            depth=depth.detach(), points=points.detach(), confidence=confidence,
            pair_scales=log_scale.detach().exp(), loss=final,
        )
