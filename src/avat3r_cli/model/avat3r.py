"""The Avat3r animatable large reconstruction model (``docs/paper.md`` §2, §3, §11, §12).

Forward in named stages, as DUSt3R / VGGT do: tokenize -> transformer -> upsample -> heads ->
skips. It is split for animation:

* ``encode_views(inputs)`` runs everything that does not depend on the expression: Plücker rays,
  patchify, feature sampling, projection, positional embedding, the full-resolution input skip,
  the first block's self-attention, and the skip inputs (position map, colours, confidence,
  pixel footprints). Cache it per avatar.
* ``decode(encoded, expression)`` runs the rest. The expression enters by cross-attention inside
  every block (and, with ``expression_modulation``, scales the heads' features; with
  ``expression_field``, adds learned blendshapes to the heads' outputs), so the remaining
  transformer, the upsampler and the heads all depend on it and must run for each new expression
  (this is why the paper drives at ~8 fps, not at raster speed). With ``anchor_gaussians``, the
  anchor queries (``anchor_gaussians.py``) read the transformer's output and the expression
  tokens and add Gaussians that belong to no pixel.

``forward(inputs, expression)`` is exactly ``decode(encode_views(inputs), expression)``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from avat3r_cli.core.gaussians import Gaussians, rgb_to_sh_dc
from avat3r_cli.model.anchor_gaussians import AnchorDecoder
from avat3r_cli.model.config import ModelConfig
from avat3r_cli.model.expression_field import ExpressionField
from avat3r_cli.model.heads import GaussianHeads
from avat3r_cli.model.inputs import EncodedViews, GaussianMaps, ViewInputs
from avat3r_cli.model.modulation import ExpressionModulation
from avat3r_cli.model.plucker import pixel_footprint, plucker_rays
from avat3r_cli.model.tokenizer import PerViewEncoder
from avat3r_cli.model.transformer import CrossViewTransformer
from avat3r_cli.model.upsampler import Upsampler


class Avat3r(nn.Module):
    """Views + expression -> per-pixel Gaussian maps. Works for any number of views V >= 1."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = PerViewEncoder(config)
        self.transformer = CrossViewTransformer(config)
        self.upsampler = Upsampler(config)
        self.heads = GaussianHeads(config)
        self.modulation = ExpressionModulation(config) if config.expression_modulation else None
        self.expression_field = ExpressionField(config, self.heads.raw_dim) if config.expression_field else None
        self.anchors = AnchorDecoder(config) if config.anchor_gaussians else None
        # Per-channel statistics of the training codes: the code is standardised before use, so a
        # rare, decisive channel (jawOpen: mostly 0) is not drowned by channels that carry a
        # per-person offset (eyeSquint ~0.5). Identity until ``set_expression_stats``.
        self.register_buffer("expression_mean", torch.zeros(config.expression_dim))
        self.register_buffer("expression_std", torch.ones(config.expression_dim))
        # The raw code ``[E]`` of a neutral face in the training data (what avatar.ply and the
        # expression tour start from). MediaPipe reads neutral faces with per-person offsets
        # (eyeSquint ~0.5), so the all-zero code is not neutral for the model: set by training
        # (``set_neutral_expression``).
        self.register_buffer("neutral_expression", torch.zeros(config.expression_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal (std 0.02) linear/conv weights, zero biases, unit norms (ViT/GRM)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.encoder.pos_embed, std=0.02)
        self.heads.reset_parameters()
        if self.modulation is not None:
            self.modulation.reset_parameters()
        if self.expression_field is not None:
            self.expression_field.reset_parameters()
        if self.anchors is not None:
            self.anchors.reset_parameters()

    def state_defaults(self) -> dict[str, torch.Tensor]:
        """Values of tensors that older weights lack, chosen so those weights behave as before.

        Identity code statistics (raw codes), and the all-zero neutral code: what every avatar
        made with such weights was exported at, so their ``avatar.ply`` files stay reproducible.
        Nothing in those files says where their training data's neutral lay (the code mean is not
        it: it averages the expressions in); ``python -m avat3r_cli.train.neutral`` records one.
        """
        e = self.config.expression_dim
        return {"expression_mean": torch.zeros(e), "expression_std": torch.ones(e), "neutral_expression": torch.zeros(e)}

    @torch.no_grad()
    def set_neutral_expression(self, code: torch.Tensor) -> None:
        """Record ``code`` ``[E]`` (raw, as codes are given to ``decode``) as the neutral expression."""
        code = code.to(self.neutral_expression).reshape(-1)
        if code.shape != self.neutral_expression.shape or not bool(torch.isfinite(code).all()):
            raise ValueError(f"a neutral code must be {self.config.expression_dim} finite values, got {list(code.shape)}")
        self.neutral_expression.copy_(code)

    @torch.no_grad()
    def set_expression_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise codes with ``mean``/``std`` ``[E]`` from now on, without changing the outputs.

        The first layer of every code-reading MLP absorbs the change (``W' = W diag(std / s0)``,
        ``b' = b + W (mean - m0) / s0`` for the old statistics m0, s0), so a trained model
        computes the same function while its optimiser now steps in standardised coordinates.
        """
        mean = mean.to(self.expression_mean).reshape(-1)
        std = std.to(self.expression_std).reshape(-1)
        layers = [self.transformer.expression.mlp[0]]
        if self.modulation is not None:
            layers.append(self.modulation.mlp[0])
        if self.expression_field is not None:
            layers.append(self.expression_field.code)
        for layer in layers:
            # y = W (c - m0) / s0 + b  ==  W' (c - m1) / s1 + b'
            scale = std / self.expression_std
            layer.bias += layer.weight @ ((mean - self.expression_mean) / self.expression_std)
            layer.weight *= scale[None, :]
        self.expression_mean.copy_(mean)
        self.expression_std.copy_(std)

    def set_anchor_points(self, points: torch.Tensor) -> None:
        """Anchor the anchor queries at ``points [Q, 3]`` (head frame, metres; saved with the weights).

        Raises:
            ValueError: the model has no anchors, or ``points`` is not ``[Q, 3]`` and finite.
        """
        if self.anchors is None:
            raise ValueError("this model has no anchor Gaussians (anchor_gaussians = 0)")
        self.anchors.set_points(points)

    @classmethod
    def from_config_dict(cls, data: dict) -> Avat3r:
        """Build from a ``config.json`` dict (unknown keys raise ValueError); the weights builder."""
        return cls(ModelConfig.from_dict(data))

    @property
    def gradient_checkpointing(self) -> bool:
        return self.transformer.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        self.transformer.gradient_checkpointing = bool(enabled)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- stage 1: tokenize (+ block 0 self-attention), expression independent ------------------
    def encode_views(self, inputs: ViewInputs) -> EncodedViews:
        """Encode the views once per avatar.

        Args:
            inputs: images/positions ``[B, V, 3, H, W]``, confidence ``[B, V, 1, H, W]``, cameras,
                optional features ``[B, V, C_f, h, w]``. H and W must be multiples of the patch
                times ``gaussian_upsample``.

        Returns:
            ``EncodedViews`` with tokens ``[B, V*T, D]`` and the skip inputs.
        """
        b, v = inputs.batch_size, inputs.num_views
        h, w = inputs.image_size
        f = self.config.gaussian_upsample
        p = self.config.patch_size * f
        if h % p or w % p:
            raise ValueError(f"image size (H, W) = ({h}, {w}) is not a multiple of {p} (patch x gaussian_upsample)")
        dtype = self.encoder.patch_embed.weight.dtype
        images, positions, K = inputs.images.to(dtype), inputs.positions.to(dtype), inputs.K
        if f > 1:
            # The network reads the crops at its own grid: f x f pixel means, and the intrinsics of
            # that grid (pixel coordinates divided by f, pixel centres staying centres).
            images, positions = (_area_downsample(t, f) for t in (images, positions))
            K = torch.cat([K[..., :2, :] / f, K[..., 2:, :]], dim=-2)
        rays = plucker_rays(K, inputs.world_to_cam, h // f, w // f).to(dtype)
        pixels = torch.cat([images, positions, rays], dim=2).flatten(0, 1)  # [BV, 12, H, W]
        features = None if inputs.features is None else inputs.features.flatten(0, 1)
        tokens, (gh, gw), skip = self.encoder(pixels, features)
        tokens = self.transformer.prefix(tokens.reshape(b, v * gh * gw, -1))
        footprint = pixel_footprint(inputs.positions.float(), inputs.K.float(), inputs.world_to_cam.float())
        return EncodedViews(
            tokens=tokens,
            grid=(v, gh, gw),
            skip_features=skip.permute(0, 2, 3, 1),
            positions=inputs.positions,
            colors=inputs.images,
            confidence=inputs.confidence,
            log_footprint=footprint.log(),
            network_positions=positions if f > 1 else None,
        )

    # -- stages 2-5: transformer -> upsample -> heads -> skips, per expression ----------------
    def decode(self, encoded: EncodedViews, expression: torch.Tensor) -> GaussianMaps:
        """Gaussian maps of the encoded views at ``expression``.

        Args:
            encoded: from ``encode_views`` (batch B, V views of H x W).
            expression: ``[B, E]`` expression codes.

        Returns:
            ``GaussianMaps`` with ``[B, V, H, W, ...]`` fp32 attributes (and ``anchors``
            ``[B, A, ...]`` when the model has anchor Gaussians).
        """
        v, gh, gw = encoded.grid
        b = encoded.tokens.shape[0]
        h, w = encoded.positions.shape[-2:]
        if expression.ndim != 2 or expression.shape != (b, self.config.expression_dim):
            raise ValueError(
                f"expression has shape {list(expression.shape)}, expected [{b}, {self.config.expression_dim}]"
            )
        expression = (expression - self.expression_mean) / self.expression_std
        tokens = encoded.tokens
        if not torch.is_autocast_enabled(tokens.device.type):
            # A cache made under bf16 autocast must still decode in full precision.
            tokens = tokens.to(self.encoder.pos_embed.dtype)
        expr_tokens = self.transformer.expression(expression.to(tokens.dtype))  # [B, S, D]
        x = self.transformer.finish(tokens, expr_tokens)  # [B, V*T, D]
        anchors = None if self.anchors is None else self.anchors(x, expr_tokens)
        x = x.reshape(b * v, gh, gw, -1)
        feats = self.upsampler(x, encoded.skip_features)  # [BV, H, W, C]
        if self.modulation is not None:
            feats = self.modulation(feats, expression)
        log_footprint = encoded.log_footprint.flatten(0, 1).permute(0, 2, 3, 1)
        raw_delta = None
        if self.expression_field is not None:
            net_positions = encoded.positions if encoded.network_positions is None else encoded.network_positions
            raw_delta = self.expression_field(feats, net_positions.flatten(0, 1).permute(0, 2, 3, 1), expression)
        raw = self.heads.raw_outputs(feats, raw_delta)  # [BV, h', w', raw_dim]
        if raw.shape[1:3] != (h, w):
            # One Gaussian per crop pixel: raw outputs upsampled before the activations, so scales
            # follow each crop pixel's own footprint and the skips bring full-resolution detail.
            raw = F.interpolate(raw.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
            raw = raw.permute(0, 2, 3, 1)
        attrs = self.heads.activate(raw, log_footprint)
        return replace(self._apply_skips(attrs, encoded, b, v, h, w), anchors=anchors)

    @staticmethod
    def _apply_skips(attrs: dict[str, torch.Tensor], enc: EncodedViews, b: int, v: int, h: int, w: int) -> GaussianMaps:
        """Position = position map + offset; colour = input colour + residual (fp32)."""
        device_type = attrs["offset"].device.type

        def last(t: torch.Tensor) -> torch.Tensor:  # [B, V, C, H, W] -> [B, V, H, W, C]
            return t.float().permute(0, 1, 3, 4, 2)

        def split(t: torch.Tensor) -> torch.Tensor:  # [BV, ...] -> [B, V, ...]
            return t.reshape(b, v, *t.shape[1:])

        with torch.autocast(device_type=device_type, enabled=False):
            means = last(enc.positions) + split(attrs["offset"])
            rgb = last(enc.colors) + split(attrs["color"])
            sh = rgb_to_sh_dc(rgb).unsqueeze(-2)  # [B, V, H, W, 1, 3]
            if "sh_rest" in attrs:
                sh = torch.cat([sh, split(attrs["sh_rest"])], dim=-2)
            return GaussianMaps(
                means=means,
                quats=split(attrs["quats"]),
                scales=split(attrs["scales"]),
                opacities=split(attrs["opacities"]),
                sh=sh,
                confidence=enc.confidence.float().reshape(b, v, h, w),
            )

    def forward(self, inputs: ViewInputs, expression: torch.Tensor) -> GaussianMaps:
        """``decode(encode_views(inputs), expression)``; shapes as there."""
        return self.decode(self.encode_views(inputs), expression)


def _area_downsample(t: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B, V, C, H, W]`` -> ``[B, V, C, H / factor, W / factor]`` by means over factor^2 blocks."""
    b, v = t.shape[:2]
    return F.avg_pool2d(t.flatten(0, 1), factor).unflatten(0, (b, v))


def maps_to_gaussians(maps: GaussianMaps, confidence_threshold: float = 0.5, index: int = 0) -> Gaussians:
    """The Gaussians of batch element ``index``: pixels at or above the confidence threshold, then the anchors.

    N = number of pixels with confidence >= threshold over all views, in view-major then
    row-major order (so permuting the input views permutes these in per-view blocks), plus the
    A anchor Gaussians after them, anchor-major, whatever the confidences.

    Args:
        maps: per-pixel maps ``[B, V, H, W, ...]`` (and anchors ``[B, A, ...]`` or None).
        confidence_threshold: tau; pixels with confidence < tau give no Gaussian.
        index: which batch element.

    Returns:
        ``Gaussians`` with ``means [N, 3]`` etc.
    """
    keep = (maps.confidence[index] >= confidence_threshold).reshape(-1)  # [V*H*W]
    anchors = maps.anchors

    def pick(name: str) -> torch.Tensor:
        pixels = getattr(maps, name)[index].flatten(0, 2)[keep]
        if anchors is None:
            return pixels
        return torch.cat([pixels, getattr(anchors, name)[index]])

    return Gaussians(
        means=pick("means"),
        quats=pick("quats"),
        scales=pick("scales"),
        opacities=pick("opacities"),
        sh=pick("sh"),
    )
