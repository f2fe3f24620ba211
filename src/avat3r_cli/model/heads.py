"""Per-pixel Gaussian attribute heads and their activations (always fp32).

The paper gives none of the activations; these are [I] defaults from GRM and FlexAvatar
(``docs/paper.md`` §2.3), with one deliberate change for scales:

* scale: log-scale = clamp(raw + scale_offset, scale_min, scale_max) + log(pixel footprint).
  FlexAvatar uses an absolute offset (exp(-5) = 6.7 mm). A pixel of a 512^2 head crop covers
  about 0.6 mm and one of a 64^2 crop about 5 mm, so an absolute offset starts either blurry or
  full of holes depending on resolution. Measuring the offset and the clamp in units of the
  pixel's own footprint (depth / focal, from the position map) makes the initial splats about
  half a pixel wide (offset -0.7 = log 0.5) at every resolution and camera distance, and the
  clamp spans 1/50 to 20 pixels.
* rotation: raw 4-vector (bias initialised to the identity quaternion), normalised; wxyz.
* opacity: sigmoid(raw + opacity_offset), offset -2 as GRM.
* position offset: raw * position_offset_scale (metres), added to the position map by the model.
* colour residual: linear, added to the input colour (no sigmoid, so the skip stays exact).
* higher SH (optional): linear, small.

All heads start with weights of std 0.02 (GRM). Not zero: a zero head would cut every gradient
to the layers below it at the first step.
"""

from __future__ import annotations

import torch
from torch import nn

from avat3r_cli.model.config import ModelConfig

HEAD_INIT_STD = 0.02


class GaussianHeads(nn.Module):
    """Per-pixel linear heads: features ``[N, H, W, C]`` -> activated attributes."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        outs = {"offset": 3, "color": 3, "scale": 3, "rotation": 4, "opacity": 1}
        if config.sh_degree > 0:
            outs["sh_rest"] = ((config.sh_degree + 1) ** 2 - 1) * 3
        self.slices: dict[str, slice] = {}
        start = 0
        for name, k in outs.items():
            self.slices[name] = slice(start, start + k)
            start += k
        # One fused linear = one 1x1 conv per attribute, but one pass over the full-resolution
        # features instead of five (measurably cheaper on the CPU at 16k+ pixels per decode).
        self.raw_dim = start
        self.proj = nn.Linear(config.head_channels, start)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # trunc_normal_, not normal_: on the meta device (how weights are loaded) normal_ takes a
        # reference path that imports torch._dynamo, 1.7 s of start-up. At std 0.02 the bounds
        # (+-2) truncate nothing.
        nn.init.trunc_normal_(self.proj.weight, std=HEAD_INIT_STD)
        with torch.no_grad():
            self.proj.bias.zero_()
            self.proj.bias[self.slices["rotation"]] = torch.tensor([1.0, 0.0, 0.0, 0.0])

    def raw_outputs(self, features: torch.Tensor, raw_delta: torch.Tensor | None = None) -> torch.Tensor:
        """The linear outputs before activation, ``[N, H, W, raw_dim]`` fp32.

        Args:
            features: ``[N, H, W, C]``.
            raw_delta: optional ``[N, H, W, raw_dim]`` added to them (the expression field's
                blendshapes).
        """
        with torch.autocast(device_type=features.device.type, enabled=False):
            flat = nn.functional.linear(features.float(), self.proj.weight.float(), self.proj.bias.float())
            return flat if raw_delta is None else flat + raw_delta.float()

    def activate(self, flat: torch.Tensor, log_footprint: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attributes from raw outputs ``flat [N, H, W, raw_dim]`` (fp32, whatever autocast says).

        Args:
            log_footprint: ``[N, H, W, 1]`` log world size of each pixel.

        Returns:
            ``offset [N, H, W, 3]`` (metres), ``color [N, H, W, 3]`` (residual), ``scales
            [N, H, W, 3]``, ``quats [N, H, W, 4]``, ``opacities [N, H, W]`` and, for sh_degree > 0,
            ``sh_rest [N, H, W, K-1, 3]``.
        """
        cfg = self.config
        with torch.autocast(device_type=flat.device.type, enabled=False):
            raw = {name: flat[..., sl] for name, sl in self.slices.items()}
            log_scale = (raw["scale"] + cfg.scale_offset).clamp(cfg.scale_min, cfg.scale_max)
            out = {
                "offset": raw["offset"] * cfg.position_offset_scale,
                "color": raw["color"],
                "scales": torch.exp(log_scale + log_footprint.float()),
                "quats": nn.functional.normalize(raw["rotation"], dim=-1, eps=1e-8),
                "opacities": torch.sigmoid(raw["opacity"].squeeze(-1) + cfg.opacity_offset),
            }
            if "sh_rest" in raw:
                out["sh_rest"] = raw["sh_rest"].unflatten(-1, (-1, 3))
        return out

    def forward(
        self, features: torch.Tensor, log_footprint: torch.Tensor, raw_delta: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``activate(raw_outputs(features, raw_delta), log_footprint)``; shapes as there."""
        return self.activate(self.raw_outputs(features, raw_delta), log_footprint)
