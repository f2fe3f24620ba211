"""The cross-view transformer: blocks of [self-attention -> cross-attention to expression -> MLP].

Pre-norm blocks with ``scaled_dot_product_attention``. The expression code becomes S tokens by an
MLP (FlexAvatar: ``MLP(E, [256, 256, D*S], ReLU)``, [I]; GELU here by default, see ``ModelConfig``);
every image token cross-attends to them.
Each block is split into ``self_attend`` and ``condition`` so the model can run the first block's
self-attention once per avatar (it does not depend on the expression).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avat3r_cli.model.config import ModelConfig


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [N, L, D]`` attends to ``context [N, M, D]`` (or itself) -> ``[N, L, D]``.

        ``mask`` (bool, True = may attend) broadcasts to ``[N, heads, L, M]``.
        """
        n, length, d = x.shape
        context = x if context is None else context
        h = self.num_heads
        q = self.q(x).view(n, length, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(n, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., D] -> [..., D]``."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Self-attention over all tokens of all views, cross-attention to expression tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.norm_expr = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def self_attend(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, V*T, D] -> [B, V*T, D]``: the expression-independent half."""
        return x + self.self_attn(self.norm1(x))

    def condition(self, x: torch.Tensor, expr_tokens: torch.Tensor) -> torch.Tensor:
        """``x [B, V*T, D]``, ``expr_tokens [B, S, D]`` -> ``[B, V*T, D]``."""
        x = x + self.cross_attn(self.norm2(x), self.norm_expr(expr_tokens))
        return x + self.mlp(self.norm3(x))

    def forward(self, x: torch.Tensor, expr_tokens: torch.Tensor) -> torch.Tensor:
        return self.condition(self.self_attend(x), expr_tokens)


class ExpressionEncoder(nn.Module):
    """Expression code ``[B, E]`` -> ``[B, S, D]`` tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_tokens, self.dim = config.expression_tokens, config.width
        hidden = config.expression_hidden
        act = nn.GELU if config.expression_activation == "gelu" else nn.ReLU
        self.mlp = nn.Sequential(
            nn.Linear(config.expression_dim, hidden),
            act(),
            nn.Linear(hidden, hidden),
            act(),
            nn.Linear(hidden, config.width * config.expression_tokens),
        )

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        return self.mlp(expression).view(expression.shape[0], self.num_tokens, self.dim)


class CrossViewTransformer(nn.Module):
    """L blocks and a final LayerNorm; ``gradient_checkpointing`` trades compute for memory."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.expression = ExpressionEncoder(config)
        self.blocks = nn.ModuleList(
            Block(config.width, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.width)
        self.gradient_checkpointing = False

    def prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """The expression-independent start: block 0's self-attention. ``[B, V*T, D]``."""
        return self.blocks[0].self_attend(tokens)

    def forward(self, prefixed: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Finish the transformer from ``prefix``'s output.

        Args:
            prefixed: ``[B, V*T, D]`` from ``prefix``.
            expression: ``[B, E]``.

        Returns:
            ``[B, V*T, D]``.
        """
        return self.finish(prefixed, self.expression(expression.to(prefixed.dtype)))

    def finish(self, prefixed: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        """``forward`` with the expression tokens ``[B, S, D]`` already made -> ``[B, V*T, D]``."""
        use_ckpt = self.gradient_checkpointing and torch.is_grad_enabled()
        x = self.blocks[0].condition(prefixed, expr)
        for block in self.blocks[1:]:
            x = checkpoint(block, x, expr, use_reentrant=False) if use_ckpt else block(x, expr)
        return self.norm(x)
