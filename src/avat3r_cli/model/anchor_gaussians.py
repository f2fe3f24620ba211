"""Anchor Gaussians: learned queries on the template head that place Gaussians where no pixel looks.

Every pixel-aligned Gaussian sits on a pixel of an input photo, so whatever no photo sees (the
back of the head behind a frontal photo) holds no Gaussian, and a turntable shows the face from
behind. Query-based reconstruction models fill such regions with Gaussians that belong to a
learned query instead of a pixel. Here Q queries are anchored on the template head surface
(``points`` ``[Q, 3]``, head frame, spread evenly by ``preprocess/anchor_points.py``), and each
predicts G Gaussians ("children") near its anchor:

    query_q = Linear(fourier(anchor_q)) + embedding_q
    L_a x [ query += CrossAttention(LN(query), LN([image tokens of all views, expression tokens]))
            query += MLP(LN(query)) ]
    child_{q,g} = Linear(LN(query_q)) split into G Gaussians.

The image tokens are the transformer's output (after the last block), which already carry the
expression through its cross-attention; the expression tokens are added to the context so the
anchors also read the code directly. The context is a set of any length, so the module runs on
any number of views and is invariant to their order. There is no self-attention between the
queries: at Q ~ 2048 it would cost Q^2 per layer, and neighbouring anchors already agree through
their shared position encoding.

Activations (fp32, like ``heads.py``):

* position = anchor + fixed child spread + tanh(raw) * ANCHOR_OFFSET_M: the children start a few
  millimetres apart on a small sphere around their anchor (so they do not coincide) and can move
  up to 4 cm off the proxy (hair, a head smaller than the proxy);
* colour = sigmoid(raw) as RGB, stored as the degree-0 SH like every other Gaussian (higher SH,
  when the model has them, linear and small as in ``heads.py``);
* log-scale = clamp(raw + log ANCHOR_SCALE_M, log 0.5 mm, log 5 cm) in metres: there is no pixel
  footprint to measure against, so the start is absolute (5 mm, about half the anchor spacing
  at Q = 1024..2048);
* rotation: raw 4-vector with an identity bias, normalised (wxyz);
* opacity = sigmoid(raw + opacity_offset), the pixel heads' offset.

The output head starts with small weights (std 0.005) so every child starts near these values
(not zero: gradients must reach the layers below). Nothing here changes the pixel Gaussians, so
weights trained without anchors compute the same pixel Gaussians when the module is added.

Letters: B avatars, Q anchors, G children per anchor, A = Q*G, M context tokens, D width, K SH
coefficients per channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avat3r_cli.core.gaussians import rgb_to_sh_dc
from avat3r_cli.model.config import ModelConfig
from avat3r_cli.model.expression_field import FOURIER_DIM, fourier_features
from avat3r_cli.model.inputs import AnchorGaussians
from avat3r_cli.model.transformer import Attention, Mlp

ANCHOR_OFFSET_M = 0.04
CHILD_SPREAD_M = 0.004
ANCHOR_SCALE_M = 0.005
ANCHOR_LOG_SCALE_RANGE = (math.log(0.0005), math.log(0.05))
ANCHOR_HEAD_INIT_STD = 0.005
# Until ``set_points`` (the trainer fills in the template head), anchors on a head-sized sphere.
PLACEHOLDER_RADIUS_M = 0.1


def fibonacci_sphere(count: int) -> torch.Tensor:
    """``[count, 3]`` unit vectors spread evenly over the sphere (deterministic)."""
    i = torch.arange(count, dtype=torch.float64) + 0.5
    polar = torch.arccos(1.0 - 2.0 * i / count)
    azimuth = math.pi * (1.0 + 5**0.5) * i
    return torch.stack(
        [polar.sin() * azimuth.cos(), polar.cos(), polar.sin() * azimuth.sin()], dim=1
    ).float()


class AnchorLayer(nn.Module):
    """Pre-norm cross-attention from the queries to the context, then an MLP (both residual)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``queries [B, Q, D]`` attend to ``context [B, M, D]`` -> ``[B, Q, D]``."""
        queries = queries + self.attn(self.norm_query(queries), self.norm_context(context))
        return queries + self.mlp(self.norm_mlp(queries))


class AnchorDecoder(nn.Module):
    """Image and expression tokens -> ``AnchorGaussians`` with A = Q*G Gaussians per avatar."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        q, g, d = config.anchor_gaussians, config.anchor_children, config.width
        outs = {"offset": 3, "color": 3, "scale": 3, "rotation": 4, "opacity": 1}
        if config.sh_degree > 0:
            outs["sh_rest"] = ((config.sh_degree + 1) ** 2 - 1) * 3
        self.slices: dict[str, slice] = {}
        start = 0
        for name, k in outs.items():
            self.slices[name] = slice(start, start + k)
            start += k
        self.raw_dim = start
        self.register_buffer("points", PLACEHOLDER_RADIUS_M * fibonacci_sphere(q))
        self.position = nn.Linear(FOURIER_DIM, d)
        self.embedding = nn.Parameter(torch.zeros(q, d))
        self.layers = nn.ModuleList(
            AnchorLayer(d, config.num_heads, config.mlp_ratio) for _ in range(config.anchor_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, g * start)
        self.reset_parameters()

    @property
    def num_gaussians(self) -> int:
        """A = Q*G."""
        return self.config.anchor_gaussians * self.config.anchor_children

    def child_offsets(self) -> torch.Tensor:
        """``[G, 3]`` fixed start offsets of the children from their anchor (metres)."""
        g = self.config.anchor_children
        if g == 1:
            return torch.zeros(1, 3, device=self.points.device)
        # A function of G alone (not a buffer): nothing to save, nothing left on the meta device.
        return fibonacci_sphere(g).to(self.points.device) * CHILD_SPREAD_M

    def reset_parameters(self) -> None:
        """Embedding std 0.02 (ViT), a small output head with identity rotations."""
        nn.init.trunc_normal_(self.embedding, std=0.02)
        nn.init.normal_(self.head.weight, std=ANCHOR_HEAD_INIT_STD)
        with torch.no_grad():
            bias = self.head.bias.view(self.config.anchor_children, self.raw_dim)
            bias.zero_()
            bias[:, self.slices["rotation"]] = torch.tensor([1.0, 0.0, 0.0, 0.0])

    @torch.no_grad()
    def set_points(self, points: torch.Tensor) -> None:
        """Anchor the queries at ``points [Q, 3]`` (head frame, metres)."""
        points = torch.as_tensor(points)
        if tuple(points.shape) != tuple(self.points.shape):
            raise ValueError(f"anchor points have shape {list(points.shape)}, expected {list(self.points.shape)}")
        if not bool(torch.isfinite(points).all()):
            raise ValueError("anchor points hold NaN or infinite values")
        self.points.copy_(points.to(self.points))

    def forward(self, tokens: torch.Tensor, expr_tokens: torch.Tensor) -> AnchorGaussians:
        """The anchors' Gaussians.

        Args:
            tokens: ``[B, V*T, D]`` the transformer's output tokens of all views.
            expr_tokens: ``[B, S, D]`` the expression tokens.

        Returns:
            ``AnchorGaussians`` with ``means [B, A, 3]`` etc., fp32, anchor-major (the G
            children of anchor 0 first).
        """
        b = tokens.shape[0]
        dtype = tokens.dtype
        # fp32 positions: the 1 cm band of the encoding needs them (see expression_field.py).
        encoded = fourier_features(self.points.float()).to(dtype)
        queries = (self.position(encoded) + self.embedding.to(dtype)).expand(b, -1, -1)
        context = torch.cat([tokens, expr_tokens.to(dtype)], dim=1)
        for layer in self.layers:
            queries = layer(queries, context)
        features = self.norm(queries)
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            flat = F.linear(features.float(), self.head.weight.float(), self.head.bias.float())
            return self._activate(flat.view(b, -1, self.raw_dim))

    def _activate(self, flat: torch.Tensor) -> AnchorGaussians:
        """Raw outputs ``[B, A, raw_dim]`` -> activated ``AnchorGaussians``."""
        raw = {name: flat[..., sl] for name, sl in self.slices.items()}
        centres = (self.points.float()[:, None, :] + self.child_offsets()[None]).reshape(-1, 3)  # [A, 3]
        log_scale = (raw["scale"] + math.log(ANCHOR_SCALE_M)).clamp(*ANCHOR_LOG_SCALE_RANGE)
        sh = rgb_to_sh_dc(torch.sigmoid(raw["color"])).unsqueeze(-2)  # [B, A, 1, 3]
        if "sh_rest" in raw:
            sh = torch.cat([sh, raw["sh_rest"].unflatten(-1, (-1, 3))], dim=-2)
        return AnchorGaussians(
            means=centres + torch.tanh(raw["offset"]) * ANCHOR_OFFSET_M,
            quats=F.normalize(raw["rotation"], dim=-1, eps=1e-8),
            scales=torch.exp(log_scale),
            opacities=torch.sigmoid(raw["opacity"].squeeze(-1) + self.config.opacity_offset),
            sh=sh,
        )
