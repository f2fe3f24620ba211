"""DUSt3R preprocessing and pairwise inference over all ordered pairs of views.

Preprocessing is ``dust3r.utils.image.load_images`` on arrays (``docs/paper.md`` section 9):
resize the long side to 512 (LANCZOS when shrinking, BICUBIC otherwise; the 224 model resizes
the short side to 224 and centre-crops a square), centre-crop to multiples of 16, scale to
[-1, 1]. DUSt3R crops square images to 4:3 unless ``square_ok``; our inputs are square head
crops and the whole crop needs a point map, so ``square_ok`` is on by default (512 x 512,
off DUSt3R's training aspect ratios, as its own ``square_ok`` option allows).

Letters: V views, P pairs, R input side, H x W network resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from avat3r_cli.preprocess.dust3r.model import Dust3r


@dataclass
class Preprocessed:
    """Network inputs and where their pixels come from.

    Attributes:
        images: ``[V, 3, H, W]`` float32 in [-1, 1].
        pixel_transform: ``[3, 3]`` affine map from input pixel coordinates to network pixel
            coordinates (continuous, pixel centres at +0.5), so ``K_net = pixel_transform @ K``.
    """

    images: torch.Tensor
    pixel_transform: torch.Tensor


@dataclass
class PairwiseResult:
    """DUSt3R's predictions for ordered pairs (i, j), both views in view i's camera frame.

    Attributes:
        pairs: the P ordered pairs (i, j); one view gives the single pair (0, 0).
        pts_i: ``[P, H, W, 3]`` view i's points in view i's frame (``pts3d``).
        pts_j: ``[P, H, W, 3]`` view j's points in view i's frame (``pts3d_in_other_view``).
        conf_i: ``[P, H, W]`` confidence of ``pts_i`` (raw, >= 1).
        conf_j: ``[P, H, W]`` confidence of ``pts_j``.
        pixel_transform: ``[3, 3]`` input pixels -> network pixels (see ``Preprocessed``).
    """

    pairs: list[tuple[int, int]]
    pts_i: torch.Tensor
    pts_j: torch.Tensor
    conf_i: torch.Tensor
    conf_j: torch.Tensor
    pixel_transform: torch.Tensor


def _as_uint8_array(images: np.ndarray | torch.Tensor) -> np.ndarray:
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must be [V, H, W, 3] RGB, got shape {list(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (0..255), got {array.dtype}")
    return array


def _resize_long_side(img: Image.Image, long_edge: int) -> Image.Image:
    side = max(img.size)
    interp = Image.Resampling.LANCZOS if side > long_edge else Image.Resampling.BICUBIC
    return img.resize(tuple(int(round(x * long_edge / side)) for x in img.size), interp)


def preprocess(images: np.ndarray | torch.Tensor, size: int = 512, square_ok: bool = True) -> Preprocessed:
    """RGB images -> DUSt3R input, as ``load_images(..., size, square_ok)`` prepares files.

    Args:
        images: ``[V, R_h, R_w, 3]`` uint8 RGB, all the same size.
        size: 512 for the 512 models (long side), 224 for the 224 model (short side, square crop).
        square_ok: keep square images square (otherwise they are cropped to 4:3).

    Returns:
        ``Preprocessed`` with ``[V, 3, H, W]`` images, H and W multiples of 16.
    """
    array = _as_uint8_array(images)
    h1, w1 = array.shape[1:3]
    out, box, new_size = [], (0, 0, 0, 0), (w1, h1)
    for frame in array:
        img = Image.fromarray(frame)
        img = _resize_long_side(img, round(size * max(w1 / h1, h1 / w1)) if size == 224 else size)
        w, h = new_size = img.size
        cx, cy = w // 2, h // 2
        if size == 224:
            half = min(cx, cy)
            halfw, halfh = half, half
        else:
            halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
            if not square_ok and w == h:
                halfh = 3 * halfw / 4
        box = tuple(int(round(v)) for v in (cx - halfw, cy - halfh, cx + halfw, cy + halfh))
        img = img.crop(box)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32).copy()))
    x = torch.stack(out).permute(0, 3, 1, 2) / 255.0
    sx, sy = new_size[0] / w1, new_size[1] / h1
    transform = torch.tensor([[sx, 0.0, -box[0]], [0.0, sy, -box[1]], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return Preprocessed(images=(x - 0.5) / 0.5, pixel_transform=transform)


def make_pairs(num_views: int) -> list[tuple[int, int]]:
    """All V(V-1) ordered pairs (DUSt3R's complete, symmetrised scene graph); V = 1 -> [(0, 0)].

    One view is paired with itself, DUSt3R's own way of running on a single image.
    """
    if num_views < 1:
        raise ValueError("need at least one view")
    if num_views == 1:
        return [(0, 0)]
    return [(i, j) for i in range(num_views) for j in range(num_views) if i != j]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def pairwise(
    images: np.ndarray | torch.Tensor, model: Dust3r, batch_size: int = 8, square_ok: bool = True
) -> PairwiseResult:
    """Run DUSt3R on all ordered pairs of ``images``.

    Each image is encoded once (the encoder is shared by both views, so this equals DUSt3R's
    per-pair encoding); the decoders and heads then run on ``batch_size`` pairs at a time.

    Args:
        images: ``[V, R, R, 3]`` uint8 RGB crops.
        model: a loaded ``Dust3r`` (any device).
        batch_size: pairs (and images) per forward pass.
        square_ok: see ``preprocess``.

    Returns:
        ``PairwiseResult`` on the model's device, float32.
    """
    device = _device(model)
    pre = preprocess(images, model.config.inference_size, square_ok)
    x = pre.images.to(device)
    size = (x.shape[-2], x.shape[-1])
    pairs = make_pairs(x.shape[0])
    outputs: dict[str, list[torch.Tensor]] = {"pts_i": [], "pts_j": [], "conf_i": [], "conf_j": []}
    with torch.no_grad():
        encoded = [model.encode(chunk) for chunk in x.split(batch_size)]
        tokens = torch.cat([t for t, _ in encoded])
        positions = torch.cat([p for _, p in encoded])
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            ii = torch.tensor([i for i, _ in chunk], device=device)
            jj = torch.tensor([j for _, j in chunk], device=device)
            dec1, dec2 = model.decode(tokens[ii], positions[ii], tokens[jj], positions[jj])
            res1, res2 = model.heads(dec1, dec2, size)
            outputs["pts_i"].append(res1["pts3d"])
            outputs["pts_j"].append(res2["pts3d_in_other_view"])
            if "conf" not in res1:
                raise ValueError("this DUSt3R model has no confidence head (conf_mode is None)")
            outputs["conf_i"].append(res1["conf"])
            outputs["conf_j"].append(res2["conf"])
    stacked = {k: torch.cat(v).float() for k, v in outputs.items()}
    return PairwiseResult(pairs=pairs, pixel_transform=pre.pixel_transform, **stacked)
