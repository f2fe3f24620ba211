"""The DUSt3R network (``AsymmetricCroCo3DStereo``): ViT encoder, two cross-attending ViT decoders, DPT heads.

A pure ``nn.Module`` whose ``state_dict()`` has exactly the key names of the official
checkpoint (``docs/paper.md`` section 9), so ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``
loads strictly. Unlike the original, encoding and decoding are separate methods: ``pairwise``
encodes each image once and decodes all ordered pairs from the cached tokens (the encoder is
siamese, so this gives the same numbers as encoding every pair).

Letters: B batch (pairs), N tokens, C channels, H x W image (multiples of 16).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avat3r_cli.preprocess.dust3r.blocks import LN_EPS, Block, DecoderBlock, PatchEmbed, RopeTables, rope_tables
from avat3r_cli.preprocess.dust3r.config import Dust3rConfig
from avat3r_cli.preprocess.dust3r.dpt import DPTHead

# (canonical, alias) pairs of state-dict names that CroCo registers twice (one tensor each).
ALIAS_SUFFIXES = tuple((f"dpt.scratch.layer{k + 1}_rn.weight", f"dpt.scratch.layer_rn.{k}.weight") for k in range(4))
HEAD_PREFIXES = ("downstream_head1.", "downstream_head2.")


def state_dict_aliases() -> list[tuple[str, str]]:
    """All ``(canonical, alias)`` key pairs of one tensor (``scratch.layer{k}_rn`` / ``scratch.layer_rn.{k-1}``)."""
    return [(p + a, p + b) for p in HEAD_PREFIXES for a, b in ALIAS_SUFFIXES]


class Dust3r(nn.Module):
    """DUSt3R: two images in, both views' 3D points in the first view's camera frame out.

    Attributes:
        config: the ``Dust3rConfig`` it was built from.
    """

    def __init__(self, config: Dust3rConfig | None = None) -> None:
        super().__init__()
        config = config or Dust3rConfig()
        self.config = config
        enc, dec = config.enc_embed_dim, config.dec_embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, enc)
        # Unused at inference (CroCo's masked pre-training), but part of the checkpoint.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.enc_blocks = nn.ModuleList(
            [Block(enc, config.enc_num_heads, config.mlp_ratio) for _ in range(config.enc_depth)]
        )
        self.enc_norm = nn.LayerNorm(enc, eps=LN_EPS)
        self.decoder_embed = nn.Linear(enc, dec)
        def decoder() -> nn.ModuleList:
            args = (dec, config.dec_num_heads, config.mlp_ratio, config.norm_im2_in_dec)
            return nn.ModuleList([DecoderBlock(*args) for _ in range(config.dec_depth)])

        self.dec_blocks = decoder()  # view 1
        self.dec_blocks2 = decoder()  # view 2
        self.dec_norm = nn.LayerNorm(dec, eps=LN_EPS)
        self.downstream_head1 = DPTHead(config)
        self.downstream_head2 = DPTHead(config)
        self._init_weights()

    @classmethod
    def from_config_dict(cls, data: dict[str, Any]) -> Dust3r:
        """Build from a ``config.json`` dict (ValueError for an unusable config)."""
        return cls(Dust3rConfig.from_dict(data))

    def _init_weights(self) -> None:
        # CroCo's initialisation; only random test models see it (real weights replace it).
        nn.init.normal_(self.mask_token, std=0.02)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _rope(self, positions: torch.Tensor, dim: int, heads: int, dtype: torch.dtype) -> RopeTables:
        return rope_tables(positions, dim // heads, self.config.rope_freq, dtype)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode images independently (the siamese encoder).

        Args:
            images: ``[B, 3, H, W]`` normalised to [-1, 1] (``inference.preprocess``).

        Returns:
            tokens ``[B, N, C_enc]`` (after ``enc_norm``) and patch positions ``[B, N, 2]`` (y, x).
        """
        x, positions = self.patch_embed(images)
        rope = self._rope(positions, self.config.enc_embed_dim, self.config.enc_num_heads, x.dtype)
        for block in self.enc_blocks:
            x = block(x, rope)
        return self.enc_norm(x), positions

    def decode(
        self, feat1: torch.Tensor, pos1: torch.Tensor, feat2: torch.Tensor, pos2: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run both decoders; each block of one view attends to the other view's previous layer.

        Args:
            feat1, feat2: encoder tokens ``[B, N, C_enc]`` of the first and second view.
            pos1, pos2: their positions ``[B, N, 2]``.

        Returns:
            per view, ``dec_depth + 1`` layers: the encoder tokens ``[B, N, C_enc]``, then every
            decoder block's output ``[B, N, C_dec]`` (the last one after ``dec_norm``).
        """
        cfg = self.config
        rope1 = self._rope(pos1, cfg.dec_embed_dim, cfg.dec_num_heads, feat1.dtype)
        rope2 = self._rope(pos2, cfg.dec_embed_dim, cfg.dec_num_heads, feat2.dtype)
        out1, out2 = [feat1], [feat2]
        f1, f2 = self.decoder_embed(feat1), self.decoder_embed(feat2)
        for block1, block2 in zip(self.dec_blocks, self.dec_blocks2):
            # Both sides read the previous layer of the other view, not the one just updated.
            f1, f2 = block1(f1, f2, rope1, rope2), block2(f2, f1, rope2, rope1)
            out1.append(f1)
            out2.append(f2)
        out1[-1], out2[-1] = self.dec_norm(out1[-1]), self.dec_norm(out2[-1])
        return out1, out2

    def heads(
        self, dec1: list[torch.Tensor], dec2: list[torch.Tensor], image_size: tuple[int, int]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """DPT heads in fp32 (autocast off, as DUSt3R) -> ``(res1, res2)`` like ``model(view1, view2)``.

        Returns:
            ``res1``: ``pts3d [B, H, W, 3]`` (view 1 in its own camera frame), ``conf [B, H, W]``;
            ``res2``: ``pts3d_in_other_view [B, H, W, 3]`` (view 2 in view 1's frame), ``conf``.
        """
        device_type = dec1[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            res1 = self.downstream_head1([t.float() for t in dec1], image_size)
            res2 = self.downstream_head2([t.float() for t in dec2], image_size)
        res2["pts3d_in_other_view"] = res2.pop("pts3d")
        return res1, res2

    def forward(
        self, img1: torch.Tensor, img2: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``img1, img2 [B, 3, H, W]`` in [-1, 1] (same size) -> ``(res1, res2)`` (see ``heads``)."""
        if img1.shape != img2.shape:
            raise ValueError(f"both views must have the same shape, got {list(img1.shape)} and {list(img2.shape)}")
        tokens, positions = self.encode(torch.cat((img1, img2)))
        (feat1, feat2), (pos1, pos2) = tokens.chunk(2), positions.chunk(2)
        dec1, dec2 = self.decode(feat1, pos1, feat2, pos2)
        return self.heads(dec1, dec2, (img1.shape[-2], img1.shape[-1]))
