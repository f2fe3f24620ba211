"""The ``dust3r`` position-map backend: DUSt3R point maps aligned to the known crop cameras.

Avat3r adds the position maps to its predicted Gaussian positions and renders with the given
cameras, so the maps must sit in the cameras' metric world frame (``docs/paper.md``
section 4.3): DUSt3R on all ordered pairs of crops, then global alignment with the cameras
fixed (``align.py``), then the depths are resampled to the crop resolution and back-projected
through the crop cameras, so every point lies on its own pixel's ray.

Letters: V views, R crop side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avat3r_cli.core.camera import Camera
from avat3r_cli.preprocess.dust3r.align import align_known_cameras, backproject
from avat3r_cli.preprocess.dust3r.inference import pairwise
from avat3r_cli.preprocess.dust3r.model import Dust3r

DUST3R_LICENCE_NOTICE = "DUSt3R (naver) is licensed CC BY-NC-SA 4.0: non-commercial use only."


def normalise_confidence(raw: torch.Tensor) -> torch.Tensor:
    """DUSt3R's raw confidence (``1 + exp(x) >= 1``) -> 0..1 as ``1 - 1 / raw``.

    [I] ``1 - 1 / (1 + exp(x))`` is exactly ``sigmoid(x)`` of the head's logit: monotone, the same
    for every image and scene (unlike a per-scene min-max or percentile normalisation), and it
    makes Avat3r's threshold tau = 0.5 mean "logit > 0", i.e. raw confidence > 2 (log-conf > 0.69).
    DUSt3R's own default mask ``conf > 3`` corresponds to 0.67.
    """
    return 1.0 - 1.0 / raw.clamp(min=1.0)


def _check_inputs(crops: np.ndarray | torch.Tensor, cameras: list[Camera]) -> int:
    shape = tuple(crops.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2]:
        raise ValueError(f"crops must be [V, R, R, 3] RGB, got shape {list(shape)}")
    if len(cameras) != shape[0]:
        raise ValueError(f"{shape[0]} crops but {len(cameras)} cameras")
    side = shape[1]
    for n, cam in enumerate(cameras):
        if (cam.height, cam.width) != (side, side):
            raise ValueError(f"camera {n} is for {cam.height}x{cam.width} images, the crops are {side}x{side}")
    return side


def dust3r_position_maps(
    crops: np.ndarray | torch.Tensor,
    cameras: list[Camera],
    model: Dust3r,
    iterations: int = 300,
    batch_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel world points and confidences of square head crops with known cameras.

    Args:
        crops: ``[V, R, R, 3]`` uint8 RGB crops.
        cameras: V crop cameras (K for R x R pixels; world = the head frame, metres).
        model: a loaded ``Dust3r`` (``load_dust3r``); its device runs inference and alignment.
        iterations: global-alignment steps (DUSt3R's default 300).
        batch_size: pairs per DUSt3R forward pass.

    Returns:
        positions ``[V, 3, R, R]`` float32 world points (each on its pixel's ray of the crop
        camera) and confidence ``[V, 1, R, R]`` float32 in 0..1 (``normalise_confidence``),
        both on the CPU.
    """
    side = _check_inputs(crops, cameras)
    result = pairwise(crops, model, batch_size=batch_size)
    device = result.pts_i.device
    K_crop = torch.stack([c.K.float() for c in cameras]).to(device)
    w2c = torch.stack([c.world_to_cam.float() for c in cameras]).to(device)
    K_net = result.pixel_transform.to(device) @ K_crop
    aligned = align_known_cameras(
        result.pairs, result.pts_i, result.pts_j, result.conf_i, result.conf_j, K_net, w2c, iterations=iterations
    )
    depth, conf = aligned.depth, aligned.confidence
    if tuple(depth.shape[-2:]) != (side, side):
        # The crop pixels cover the same field of view as the network's (square_ok, no crop), so
        # resampling with half-pixel centres matches K_net = pixel_transform @ K_crop.
        depth = F.interpolate(depth[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
        conf = F.interpolate(conf[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    points = backproject(depth, K_crop, w2c)
    positions = points.permute(0, 3, 1, 2).contiguous().float().cpu()
    confidence = normalise_confidence(conf)[:, None].float().cpu()
    return positions, confidence
