"""CroCo / DUSt3R transformer blocks with 2D RoPE, in pure PyTorch.

Module and parameter names match ``naver/croco`` ``models/blocks.py`` so the official state dict
loads as is (``attn.qkv``, ``cross_attn.projq`` ...). The RoPE tables are built once per forward
pass (``rope_tables``) and handed to every block instead of being recomputed in each attention.

Letters: B batch, N tokens, C channels, h heads, d head dim.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # CroCo: partial(nn.LayerNorm, eps=1e-6)


class RopeTables(NamedTuple):
    """Per-token rotations for RoPE2D: each ``[B, 1, N, d/2]`` (one half of a head per axis)."""

    cos_y: torch.Tensor
    sin_y: torch.Tensor
    cos_x: torch.Tensor
    sin_x: torch.Tensor


def patch_positions(batch: int, h: int, w: int, device: torch.device | str) -> torch.Tensor:
    """``[B, h*w, 2]`` int64 (y, x) grid positions in raster order, as CroCo's PositionGetter."""
    y = torch.arange(h, device=device)
    x = torch.arange(w, device=device)
    return torch.cartesian_prod(y, x).view(1, h * w, 2).expand(batch, -1, -1)


def rope_tables(positions: torch.Tensor, head_dim: int, freq: float, dtype: torch.dtype) -> RopeTables:
    """RoPE2D tables for ``positions [B, N, 2]`` (y, x), as CroCo's pure-PyTorch ``RoPE2D``.

    Each head is split in a y half and an x half of ``head_dim / 2`` channels; inside a half the
    channel ``k`` and ``k + d/4`` rotate together at frequency ``freq ** (-2k / (d/2))``.
    """
    half = head_dim // 2
    device = positions.device
    inv_freq = 1.0 / (freq ** (torch.arange(0, half, 2, device=device).float() / half))
    t = torch.arange(int(positions.max()) + 1, device=device, dtype=torch.float32)
    freqs = torch.einsum("i,j->ij", t, inv_freq).to(dtype)
    freqs = torch.cat((freqs, freqs), dim=-1)  # [seq, d/2]
    cos, sin = freqs.cos(), freqs.sin()
    out = []
    for axis in (0, 1):
        index = positions[:, :, axis]
        out += [F.embedding(index, cos)[:, None], F.embedding(index, sin)[:, None]]
    return RopeTables(*out)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(tokens: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate ``tokens [B, h, N, d]``: the first half by the y position, the second by x."""
    y, x = tokens.chunk(2, dim=-1)
    y = y * tables.cos_y + _rotate_half(y) * tables.sin_y
    x = x * tables.cos_x + _rotate_half(x) * tables.sin_x
    return torch.cat((y, x), dim=-1)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm's Mlp without dropout)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on q and k (fused ``qkv`` projection)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: RopeTables | None) -> torch.Tensor:
        """``x [B, N, C]`` -> ``[B, N, C]``."""
        b, n, c = x.shape
        # CroCo's layout: [B, N, 3, h, d] -> q, k, v each [B, h, N, d].
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Attention from one view's tokens (queries) to the other view's (keys, values), RoPE on q and k."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, qrope: RopeTables | None, krope: RopeTables | None
    ) -> torch.Tensor:
        """``query [B, N, C]``, ``memory [B, M, C]`` -> ``[B, N, C]``."""
        b, n, c = query.shape
        q, k, v = self._heads(self.projq(query)), self._heads(self.projk(memory)), self._heads(self.projv(memory))
        if qrope is not None and krope is not None:
            q, k = apply_rope(q, qrope), apply_rope(k, krope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm ViT encoder block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rope: RopeTables | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the other view, MLP (all pre-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_mem: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=LN_EPS) if norm_mem else nn.Identity()

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, xrope: RopeTables | None, yrope: RopeTables | None
    ) -> torch.Tensor:
        """This view's tokens ``x [B, N, C]`` after attending to the other view's ``y [B, M, C]``."""
        x = x + self.attn(self.norm1(x), xrope)
        y_ = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y_, xrope, yrope)
        return x + self.mlp(self.norm3(x))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` conv from RGB to tokens (``patch_embed.proj``; no norm)."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B, 3, H, W]`` (H, W multiples of the patch) -> tokens ``[B, N, C]``, positions ``[B, N, 2]``."""
        b, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        x = self.proj(images)
        positions = patch_positions(b, x.shape[2], x.shape[3], images.device)
        return x.flatten(2).transpose(1, 2), positions
