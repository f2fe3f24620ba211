"""Typed tensors that go into and come out of the model.

Letters: B batch, V views, H/W pixels, C_f feature channels, h/w feature-map size, T tokens per
view, D width, K SH coefficients per channel, A anchor Gaussians per avatar.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace

import torch


def _to(obj, device: torch.device | str | None, dtype: torch.dtype | None):
    """Copy every tensor field of a dataclass (and of nested ones); ``dtype`` applies to floating tensors only."""
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            cast = dtype if (dtype is not None and value.is_floating_point()) else None
            changes[f.name] = value.to(device=device, dtype=cast)
        elif is_dataclass(value):
            changes[f.name] = _to(value, device, dtype)
    return replace(obj, **changes)


@dataclass
class ViewInputs:
    """The preprocessed input views of one batch.

    Attributes:
        images: ``[B, V, 3, H, W]`` RGB in 0..1.
        positions: ``[B, V, 3, H, W]`` per-pixel 3D points in the world frame (metres).
        confidence: ``[B, V, 1, H, W]`` position-map confidence (the geometry backend's scale;
            the model's ``confidence_threshold`` is compared against it).
        K: ``[B, V, 3, 3]`` intrinsics in pixels for the (H, W) crops.
        world_to_cam: ``[B, V, 4, 4]``.
        features: optional ``[B, V, C_f, h, w]`` image features (e.g. Sapiens), any h, w.
    """

    images: torch.Tensor
    positions: torch.Tensor
    confidence: torch.Tensor
    K: torch.Tensor
    world_to_cam: torch.Tensor
    features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 5 or self.images.shape[2] != 3:
            raise ValueError(f"ViewInputs.images has shape {list(self.images.shape)}, expected [B, V, 3, H, W]")
        b, v, _, h, w = self.images.shape
        expected = {
            "positions": (b, v, 3, h, w),
            "confidence": (b, v, 1, h, w),
            "K": (b, v, 3, 3),
            "world_to_cam": (b, v, 4, 4),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"ViewInputs.{name} has shape {list(got)}, expected {list(shape)}")
        if self.features is not None and (self.features.ndim != 5 or tuple(self.features.shape[:2]) != (b, v)):
            raise ValueError(
                f"ViewInputs.features has shape {list(self.features.shape)}, expected [{b}, {v}, C_f, h, w]"
            )

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[3]), int(self.images.shape[4])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ViewInputs:
        return _to(self, device, dtype)

    def select_views(self, index: torch.Tensor | list[int]) -> ViewInputs:
        """The views picked by ``index`` (a permutation, a subset), in that order."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.images.device)
        return replace(
            self,
            **{
                f.name: getattr(self, f.name).index_select(1, index)
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )


@dataclass
class EncodedViews:
    """Everything the model computes from the views alone (cacheable per avatar).

    Attributes:
        tokens: ``[B, V*T, D]`` tokens after the first block's self-attention (the last point
            before the expression enters).
        grid: (V, h, w) the token grid, T = h*w.
        skip_features: ``[B*V, h', w', head_channels]`` features of the raw inputs at the
            network's resolution (channels last, as the upsampler and heads use them).
        positions: ``[B, V, 3, H, W]`` position maps at the crops' resolution (the position skip).
        colors: ``[B, V, 3, H, W]`` input RGB (for the colour skip).
        confidence: ``[B, V, 1, H, W]``.
        log_footprint: ``[B, V, 1, H, W]`` log of each pixel's world-space size (scale reference).
        network_positions: ``[B, V, 3, h', w']`` the position maps the network read, where the
            crops are ``gaussian_upsample`` times larger than its grid; None when they are not.
    """

    tokens: torch.Tensor
    grid: tuple[int, int, int]
    skip_features: torch.Tensor
    positions: torch.Tensor
    colors: torch.Tensor
    confidence: torch.Tensor
    log_footprint: torch.Tensor
    network_positions: torch.Tensor | None = None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> EncodedViews:
        return _to(self, device, dtype)


@dataclass
class AnchorGaussians:
    """Gaussians that belong to an anchor query, not to a pixel (activated, fp32).

    Attributes:
        means: ``[B, A, 3]`` world positions.
        quats: ``[B, A, 4]`` unit quaternions, wxyz.
        scales: ``[B, A, 3]`` metres (> 0).
        opacities: ``[B, A]`` in (0, 1).
        sh: ``[B, A, K, 3]`` SH coefficients (degree 0 first).
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor

    @property
    def count(self) -> int:
        """A, Gaussians per avatar."""
        return int(self.means.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AnchorGaussians:
        return _to(self, device, dtype)


@dataclass
class GaussianMaps:
    """Per-pixel Gaussian attributes for every input view (activated, fp32, channels last).

    Attributes:
        means: ``[B, V, H, W, 3]`` world positions.
        quats: ``[B, V, H, W, 4]`` unit quaternions, wxyz.
        scales: ``[B, V, H, W, 3]`` metres (> 0).
        opacities: ``[B, V, H, W]`` in (0, 1).
        sh: ``[B, V, H, W, K, 3]`` SH coefficients (degree 0 first; colour = 0.5 + C0 * sh_dc).
        confidence: ``[B, V, H, W]`` the input confidence (for filtering).
        anchors: the anchor Gaussians ``[B, A, ...]`` of a model with anchors, else None. They
            belong to no pixel: no confidence filters them and per-pixel residuals skip them.
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    confidence: torch.Tensor
    anchors: AnchorGaussians | None = None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianMaps:
        return _to(self, device, dtype)
