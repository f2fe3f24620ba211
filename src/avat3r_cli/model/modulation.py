"""Expression modulation of the full-resolution features (FiLM), next to the cross-attention.

The paper's only expression path is cross-attention from every image token to a few expression
tokens. Trained on two CPU cores for an hour, that path stayed unused: the expression-dependent
pixels (mouth, eyelids) are a few percent of each image, their gradient reaches the code through
the whole transformer and upsampler, and the model settled on an average face for every code
(its rendered change was under 0.1 % of the real one; see the bundled model card,
``src/avat3r_cli/assets/avat3r-small/README.md``). This module gives the code a short path as well: the code scales and shifts each channel of the
per-pixel features the Gaussian heads read, ``f * (1 + gamma(e)) + beta(e)``. The features already
say where a pixel sits on the face, so a per-channel change acts locally (lips, lids). The last
layer starts at zero, so the module starts as the identity and can be added to trained weights.

With ``expression_mixing`` the code also gives a ``[C, C]`` matrix that mixes the channels,
``f + f A(e)``: a per-channel scale moves every pixel that has a channel the same way, a mixing
matrix lets a mouth-corner feature drive a position channel and an eyelid feature a colour one.
In one CPU overfit of the bundled model on a single subject's smile it separated the smile and
neutral codes sooner than the per-channel scale alone, but 2,000 steps of fine-tuning the bundled
model with it on the full data left smile and blink accuracy near zero (-0.03, -0.02), where the
expression field (``expression_field.py``) reached 0.42 / 0.11 in 1,000 steps; it stays off in
every preset, an option for experiments.

Letters: B avatars, V views, H/W pixels, C feature channels, E code length.
"""

from __future__ import annotations

import torch
from torch import nn

from avat3r_cli.model.config import ModelConfig


class ExpressionModulation(nn.Module):
    """Code ``[B, E]`` -> per-channel ``(gamma, beta)`` (and a ``[C, C]`` mixing) on ``[B*V, H, W, C]``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.channels = config.head_channels
        self.mlp = nn.Sequential(
            nn.Linear(config.expression_dim, config.expression_hidden),
            nn.GELU(),
            nn.Linear(config.expression_hidden, 2 * config.head_channels),
        )
        # Reads the same hidden layer, so code statistics fold into mlp[0] alone.
        self.mixing = (nn.Linear(config.expression_hidden, config.head_channels**2)
                       if config.expression_mixing else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init for the first layer (a code must move its output), zeros last."""
        self.mlp[0].reset_parameters()
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        if self.mixing is not None:
            nn.init.zeros_(self.mixing.weight)
            nn.init.zeros_(self.mixing.bias)

    def forward(self, features: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Modulate ``features [B*V, H, W, C]`` (views of avatar b contiguous) by ``expression [B, E]``."""
        views = features.shape[0] // expression.shape[0]
        hidden = self.mlp[1](self.mlp[0](expression.to(features.dtype)))  # [B, hidden]
        film = self.mlp[2](hidden).repeat_interleave(views, dim=0)[:, None, None, :]  # [B*V, 1, 1, 2C]
        gamma, beta = film[..., : self.channels], film[..., self.channels :]
        out = features * (1.0 + gamma) + beta
        if self.mixing is not None:
            mix = self.mixing(hidden).view(-1, self.channels, self.channels).repeat_interleave(views, dim=0)
            out = out + torch.einsum("nhwc,ncd->nhwd", features, mix)  # [B*V, H, W, C]
        return out
