"""Per-view encoding: [RGB, position map, Plücker rays] -> patch tokens (+ image features).

Nothing here knows how many views there are: every view goes through the same weights and the
positional embedding is per patch position only. There is deliberately no per-view embedding
(GRM has one, [I]): camera identity already comes from the Plücker rays, and without it the model
is exactly equivariant to the order of the views and runs on any number of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avat3r_cli.model.config import ModelConfig


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, height: int, width: int) -> torch.Tensor:
    """Bilinearly resample a learned ``[1, grid*grid, D]`` embedding to ``[1, height*width, D]``."""
    if (height, width) == (grid, grid):
        return pos_embed
    d = pos_embed.shape[-1]
    square = pos_embed.reshape(1, grid, grid, d).permute(0, 3, 1, 2)
    square = F.interpolate(square, size=(height, width), mode="bilinear", align_corners=False)
    return square.permute(0, 2, 3, 1).reshape(1, height * width, d)


class PerViewEncoder(nn.Module):
    """Patchify each view and encode its raw pixels for the full-resolution skip."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c_in, d, p = config.in_channels, config.width, config.patch_size
        self.patch_embed = nn.Conv2d(c_in, d, kernel_size=p, stride=p)
        if config.feature_dim > 0:
            # Foundation-model features have their own (large) scale: normalise before the concat.
            self.feature_norm = nn.LayerNorm(config.feature_dim)
            # The paper's "concat -> Linear" (poster). Without features that Linear would follow
            # the patch conv with nothing in between, i.e. be redundant, so it exists only here.
            self.feature_proj = nn.Linear(d + config.feature_dim, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.tokens_per_view, d))
        # A 3x3 conv over the raw inputs at full resolution, added before the heads: patch tokens
        # lose sub-patch detail, and the CPU prototype (cpu-performance.md §2) used such a skip. [I]
        self.skip_conv = nn.Conv2d(c_in, config.head_channels, kernel_size=3, padding=1)

    def forward(
        self, pixels: torch.Tensor, features: torch.Tensor | None
    ) -> tuple[torch.Tensor, tuple[int, int], torch.Tensor]:
        """Encode views stacked along the batch.

        Args:
            pixels: ``[B*V, 12, H, W]`` RGB, position map and Plücker rays.
            features: ``[B*V, C_f, h, w]`` or None.

        Returns:
            tokens ``[B*V, T, D]``, the token grid (gh, gw), skip features ``[B*V, C_head, H, W]``.
        """
        cfg = self.config
        x = self.patch_embed(pixels)  # [BV, D, gh, gw]
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [BV, T, D]
        if cfg.feature_dim > 0:
            if features is None:
                raise ValueError(
                    f"this model expects {cfg.feature_dim}-channel image features "
                    f"({cfg.feature_backend}) and none were given"
                )
            if features.shape[1] != cfg.feature_dim:
                raise ValueError(f"image features have {features.shape[1]} channels, expected {cfg.feature_dim}")
            # Bilinear "sample" to the token grid; antialias so a finer map is averaged, not aliased. [I]
            downsampling = features.shape[-2] > gh or features.shape[-1] > gw
            # In fp32: the antialiased kernel has no bf16 version, and raw features can be large.
            f = F.interpolate(
                features.float(), size=(gh, gw), mode="bilinear", align_corners=False, antialias=downsampling
            )
            f = self.feature_norm(f.flatten(2).transpose(1, 2)).to(x.dtype)
            x = self.feature_proj(torch.cat([x, f], dim=-1))
        x = x + resample_pos_embed(self.pos_embed, cfg.grid_size, gh, gw).to(x.dtype)
        return x, (int(gh), int(gw)), self.skip_conv(pixels)
