"""DUSt3R's DPT head (``downstream_head{1,2}.dpt.*``) and its output post-processing.

Follows ``naver/croco`` ``models/dpt_block.py`` with DUSt3R's ``DPTOutputAdapter_fix`` (the
``act_{k}_postprocess`` duplicates are gone, the coarsest path is cropped to the next one's size).
``scratch.layer{1..4}_rn`` are also registered as ``scratch.layer_rn.{0..3}``, exactly as in
CroCo, so ``state_dict()`` holds both names; a safetensors file may keep only one of them
(``load.py`` fills in the other).

Letters: B batch, N tokens, C channels, H x W image, h x w = (H/16, W/16) token grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avat3r_cli.preprocess.dust3r.config import Dust3rConfig


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))) (``resConfUnit``; no batch norm in DUSt3R)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Adds the skip path, refines, doubles the resolution and projects (``refinenet{k}``)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Interpolate(nn.Module):
    """Parameter-free x2 bilinear upsampling (index 1 of ``head``, so the convs keep indices 0, 2, 4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DPTAdapter(nn.Module):
    """Four decoder layers -> a dense ``[B, out_channels, H, W]`` map (``downstream_head{k}.dpt``)."""

    def __init__(self, config: Dust3rConfig) -> None:
        super().__init__()
        dims = config.dpt_layer_dims
        tokens = (config.enc_embed_dim, config.dec_embed_dim, config.dec_embed_dim, config.dec_embed_dim)
        feat, last = config.dpt_feature_dim, config.dpt_last_dim
        self.hooks = config.hooks
        self.patch_size = config.patch_size
        self.act_postprocess = nn.ModuleList(
            [
                # token grid h x w -> x4, x2, x1, /2: the four DPT scales.
                nn.Sequential(nn.Conv2d(tokens[0], dims[0], 1), nn.ConvTranspose2d(dims[0], dims[0], 4, stride=4)),
                nn.Sequential(nn.Conv2d(tokens[1], dims[1], 1), nn.ConvTranspose2d(dims[1], dims[1], 2, stride=2)),
                nn.Sequential(nn.Conv2d(tokens[2], dims[2], 1)),
                nn.Sequential(nn.Conv2d(tokens[3], dims[3], 1), nn.Conv2d(dims[3], dims[3], 3, stride=2, padding=1)),
            ]
        )
        scratch = nn.Module()
        for k in range(4):
            setattr(scratch, f"layer{k + 1}_rn", nn.Conv2d(dims[k], feat, 3, padding=1, bias=False))
        # The alias CroCo registers; the same modules, so the same parameters.
        scratch.layer_rn = nn.ModuleList([getattr(scratch, f"layer{k + 1}_rn") for k in range(4)])
        for k in range(4):
            setattr(scratch, f"refinenet{k + 1}", FeatureFusionBlock(feat))
        self.scratch = scratch
        self.head = nn.Sequential(
            nn.Conv2d(feat, feat // 2, 3, padding=1),
            Interpolate(),
            nn.Conv2d(feat // 2, last, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last, config.out_channels, 1),
        )

    def forward(self, layers: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """``layers``: all decoder outputs ``[B, N, C_k]`` (index 0 = encoder); -> ``[B, out, H, W]``."""
        h, w = image_size[0] // self.patch_size, image_size[1] // self.patch_size
        maps = []
        for k, hook in enumerate(self.hooks):
            tokens = layers[hook]
            grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
            maps.append(self.scratch.layer_rn[k](self.act_postprocess[k](grid)))
        path = self.scratch.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        path = self.scratch.refinenet3(path, maps[2])
        path = self.scratch.refinenet2(path, maps[1])
        path = self.scratch.refinenet1(path, maps[0])
        return self.head(path)


def postprocess(out: torch.Tensor, config: Dust3rConfig) -> dict[str, torch.Tensor]:
    """Raw head output ``[B, 4, H, W]`` -> ``pts3d [B, H, W, 3]`` and ``conf [B, H, W]``.

    ``exp`` depth: the direction of xyz times ``expm1(|xyz|)``; ``exp`` confidence:
    ``vmin + exp(x)`` (clipped at vmax), so 1 + exp(x) >= 1 for the official model.
    """
    fmap = out.permute(0, 2, 3, 1)
    xyz = fmap[..., :3]
    mode = config.depth_mode[0]
    if mode == "linear":
        pts = xyz
    else:
        dist = xyz.norm(dim=-1, keepdim=True)
        direction = xyz / dist.clip(min=1e-8)
        pts = direction * (torch.expm1(dist) if mode == "exp" else dist.square())
    result = {"pts3d": pts}
    if config.conf_mode is not None:
        cmode, vmin, vmax = config.conf_mode
        x = fmap[..., 3]
        if cmode == "exp":
            result["conf"] = vmin + x.exp().clip(max=vmax - vmin)
        else:
            result["conf"] = (vmax - vmin) * torch.sigmoid(x) + vmin
    return result


class DPTHead(nn.Module):
    """``downstream_head{k}``: the DPT adapter plus post-processing (no parameters of its own)."""

    def __init__(self, config: Dust3rConfig) -> None:
        super().__init__()
        self.config = config
        self.dpt = DPTAdapter(config)

    def forward(self, layers: Sequence[torch.Tensor], image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Decoder outputs -> ``pts3d [B, H, W, 3]`` (+ ``conf [B, H, W]``), in fp32."""
        return postprocess(self.dpt(layers, image_size), self.config)
