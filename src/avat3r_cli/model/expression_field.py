"""Expression field: learned blendshapes over the head-centred frame, added to the heads' outputs.

The cross-attention and the FiLM modulation change every pixel through per-channel factors; a
model trained with them on the CPU learnt to open the jaw (a large change) but not to smile or
blink: those move a few pixels at the mouth corners and eyelids, and the features did not single
those pixels out (the bundled model card, ``src/avat3r_cli/assets/avat3r-small/README.md``). This module gives the code a path that is
local by construction, the way a blendshape rig is: every Gaussian gets a change that is linear in
the code, with a basis that is a function of where the Gaussian sits on the head,

    delta(pixel) = [h(pixel), 1] @ W(c),   h = MLP(fourier(position), features),
    W(c) = sum_r c_r W_r,                  c = Linear(standardised code)  (R coefficients),

added to the raw head outputs (position offset, colour, scale, rotation, opacity) before their
activations. Positions are in the world frame, which is head-centred and in the canonical face's
metric units for every source (cameras are solved against MediaPipe's canonical face, so every
face is brought to its size), so a mouth corner sits at nearly the same coordinates on every
subject and one basis serves them all; the features let it adapt to the person. ``W`` starts at
zero, so the module starts as the identity and can be added to trained weights.

Letters: B avatars, V views, H/W pixels, C feature channels, E code length, R rank, A raw head outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avat3r_cli.model.config import ModelConfig

# Wavelengths of the position encoding: 32 cm (the whole head) halving down to 1 cm (a lip, a lid).
FIELD_WAVELENGTHS_M = tuple(0.32 / 2**k for k in range(6))
FOURIER_DIM = 3 + 6 * len(FIELD_WAVELENGTHS_M)  # position, then sin and cos per axis and band


def fourier_features(positions: torch.Tensor) -> torch.Tensor:
    """``positions [..., 3]`` (metres) -> ``[..., FOURIER_DIM]`` (p, sin, cos)."""
    freqs = torch.tensor([2 * math.pi / w for w in FIELD_WAVELENGTHS_M], device=positions.device, dtype=positions.dtype)
    angles = (positions[..., :, None] * freqs).flatten(-2)  # [..., 3F]
    return torch.cat([positions, angles.sin(), angles.cos()], dim=-1)


class ExpressionField(nn.Module):
    """Code ``[B, E]`` + positions/features per pixel -> raw head deltas ``[B*V, H, W, A]``."""

    def __init__(self, config: ModelConfig, raw_dim: int) -> None:
        super().__init__()
        hidden, rank = config.expression_field_hidden, config.expression_field_rank
        self.raw_dim = raw_dim
        in_dim = FOURIER_DIM + config.head_channels
        self.point = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU())
        self.code = nn.Linear(config.expression_dim, rank)
        # Row r holds W_r ([hidden + 1, A], the last row a bias), so W(c) = c @ basis.weight.T.
        self.basis = nn.Linear(rank, (hidden + 1) * raw_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for the point MLP and the code layer (gradients must reach W), zero W."""
        self.point[0].reset_parameters()
        self.code.reset_parameters()
        nn.init.zeros_(self.basis.weight)

    def forward(self, features: torch.Tensor, positions: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Raw deltas for ``features [B*V, H, W, C]`` at ``positions [B*V, H, W, 3]``, code ``[B, E]``.

        Views of avatar b are contiguous. Returns ``[B*V, H, W, A]`` in the features' dtype.
        """
        views = features.shape[0] // expression.shape[0]
        # The 1 cm band needs fp32 positions: in bf16 a coordinate of 8 cm is off by up to 0.3 mm.
        encoded = fourier_features(positions.float()).to(features.dtype)
        # The point MLP's first layer on [encoded, features], applied by parts: concatenating the
        # full-resolution maps on every decode took about a third of the field's CPU time.
        first = self.point[0]
        pre = F.linear(encoded, first.weight[:, :FOURIER_DIM])
        pre = pre + F.linear(features, first.weight[:, FOURIER_DIM:], first.bias)
        h = self.point[1](pre)  # [BV, H, W, hidden]
        coeffs = self.code(expression.to(features.dtype))  # [B, R]
        weight = self.basis(coeffs).view(-1, h.shape[-1] + 1, self.raw_dim)  # [B, hidden + 1, A]
        weight = weight.repeat_interleave(views, dim=0)  # [BV, hidden + 1, A]
        # [h, 1] @ W, with the last row of W as the bias.
        return torch.einsum("nhwk,nka->nhwa", h, weight[:, :-1]) + weight[:, None, None, -1]
