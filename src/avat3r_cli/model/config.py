"""The model's hyper-parameters (``ModelConfig``) and the named presets.

What the paper fixes and what is a default here (tags as in ``docs/paper.md``): the data
flow, 8 blocks of [self-attention -> cross-attention to 4 expression tokens -> MLP], 512^2 crops,
position and colour skips and a confidence threshold of 0.5 are the paper's ([P]/[S]). Patch 16,
width 1024, 16 heads, the GRM-style upsampler and every activation constant are [I] defaults.

A config travels with its weights as ``config.json``; unknown keys there are an error, so a typo
or a file for another model never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from avat3r_cli.core.expressions import EXPRESSION_DIM

MAX_ANCHOR_CHILDREN = 16


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of ``Avat3r``; see ``PRESETS`` for the named sizes.

    Attributes:
        image_size: side of the square grid the network reads (H = W). Other sizes that are
            multiples of ``patch_size`` also run (the positional embedding is resampled).
        gaussian_upsample: f, Gaussians per network pixel along each side. The crops (and the
            position maps, confidences and training targets) are f x ``image_size``
            (``input_size``); the network reads them area-downsampled, and its per-pixel outputs
            are upsampled bilinearly before the activations, so each crop pixel gets its own
            Gaussian with its own colour and position skip and a scale in its own footprint
            (``docs/model.md``). 1 = the paper's one Gaussian per network pixel.
        patch_size: patchify kernel = stride (a power of two).
        width: transformer width D.
        depth: number of transformer blocks L.
        num_heads: attention heads (D must divide by it).
        mlp_ratio: hidden width of the block MLPs, as a multiple of D.
        expression_dim: E, the length of the expression code (52 MediaPipe blendshapes).
        expression_tokens: S, how many tokens the expression MLP makes (paper: 4).
        expression_hidden: hidden width of the expression MLP (FlexAvatar: 256).
        expression_activation: ``gelu`` or ``relu`` (FlexAvatar's) between the expression MLP's
            layers. GELU by default: with ReLU our first CPU model lost 83-94 % of the expression
            MLP's units to dead ReLUs during training and then ignored the code.
        expression_modulation: also scale and shift the heads' full-resolution features by the
            code (``modulation.py``; not in the paper, whose only path is cross-attention).
        expression_mixing: with the modulation, also mix the features' channels by a
            code-dependent matrix (``f + f A(code)``), so one code can change different pixels
            differently; off in every preset so far (an experiment for small expressions).
        expression_field: add learned blendshapes over the head-centred frame to the heads'
            outputs (``expression_field.py``): a change linear in the code, local by position.
            On in ``small`` and ``base``: it is what made the bundled model's smiles readable.
        expression_field_rank: R, the blendshape basis size of the field.
        expression_field_hidden: width of the field's per-pixel MLP.
        feature_dim: C_f, channels of optional image features (Sapiens-2B: 1920); 0 = none.
        upsample_stages: x2 pixel-shuffle stages with windowed attention after the transformer;
            the rest of the patch factor is a single pixel shuffle into the full-resolution head.
        upsample_min_channels: channels halve per stage down to this floor (GRM: 64).
        upsample_layers: windowed-attention layers per stage (GRM: 2; 0 = pixel shuffle only).
        upsample_window: attention window side in tokens (alternate layers shift by half).
        head_channels: channels of the full-resolution feature map the heads read.
        sh_degree: SH degree of the colour (0 = RGB only, as FlexAvatar).
        position_offset_scale: metres per unit of the raw position-offset head.
        scale_offset, scale_min, scale_max: log-scale = clamp(raw + offset, min, max) + log(pixel
            footprint); see ``heads.py`` for why the footprint.
        opacity_offset: opacity = sigmoid(raw + opacity_offset) (GRM: -2).
        confidence_threshold: pixels with position-map confidence below this give no Gaussian.
        anchor_gaussians: Q, learned queries anchored on the template head that add Gaussians
            where no pixel looks (``anchor_gaussians.py``); 0 = none (the paper's pixel-aligned
            model, and every config file written before the option existed).
        anchor_children: G, Gaussians each anchor predicts (the model adds Q*G Gaussians).
        anchor_layers: cross-attention + MLP layers the anchor queries run.
        geometry_backend: which position-map backend the weights expect (e.g. ``dust3r``).
        feature_backend: which image-feature backend the weights expect (``none`` when C_f = 0).
    """

    image_size: int = 64
    gaussian_upsample: int = 1
    patch_size: int = 8
    width: int = 192
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0
    expression_dim: int = EXPRESSION_DIM
    expression_tokens: int = 4
    expression_hidden: int = 256
    expression_activation: str = "gelu"
    expression_modulation: bool = False
    expression_mixing: bool = False
    expression_field: bool = False
    expression_field_rank: int = 16
    expression_field_hidden: int = 64
    feature_dim: int = 0
    upsample_stages: int = 2
    upsample_min_channels: int = 32
    upsample_layers: int = 1
    upsample_window: int = 8
    head_channels: int = 32
    sh_degree: int = 0
    position_offset_scale: float = 0.05
    scale_offset: float = -0.7
    scale_min: float = -4.0
    scale_max: float = 3.0
    opacity_offset: float = -2.0
    confidence_threshold: float = 0.5
    anchor_gaussians: int = 0
    anchor_children: int = 2
    anchor_layers: int = 2
    # The offline CPU default; the paper preset expects DUSt3R position maps.
    geometry_backend: str = "template"
    feature_backend: str = "none"

    def __post_init__(self) -> None:
        problems = []
        p = self.patch_size
        if p < 1 or p & (p - 1):
            problems.append(f"patch_size {p} is not a power of two")
        if self.image_size <= 0 or self.image_size % max(p, 1):
            problems.append(f"image_size {self.image_size} is not a positive multiple of patch_size {p}")
        if self.gaussian_upsample not in (1, 2, 4):
            problems.append(f"gaussian_upsample {self.gaussian_upsample} is not 1, 2 or 4")
        if self.num_heads <= 0 or self.width % self.num_heads:
            problems.append(f"width {self.width} does not divide into {self.num_heads} heads")
        if self.depth < 1:
            problems.append("depth must be at least 1")
        if not 0 <= self.upsample_stages <= int(math.log2(max(p, 1))):
            problems.append(f"upsample_stages must be in 0..log2(patch_size) = {int(math.log2(max(p, 1)))}")
        if self.upsample_layers > 0 and any(c % 16 for c in self.stage_channels()):
            problems.append(f"upsampler channels {self.stage_channels()} must be multiples of 16 (heads of 16)")
        if not 0 <= self.sh_degree <= 3:
            problems.append("sh_degree must be 0..3")
        if self.scale_min > self.scale_max:
            problems.append("scale_min is above scale_max")
        if self.feature_dim < 0 or (self.feature_dim == 0) != (self.feature_backend == "none"):
            problems.append("feature_backend must be 'none' exactly when feature_dim is 0")
        for name in ("expression_dim", "expression_tokens", "expression_hidden", "head_channels", "upsample_window",
                     "expression_field_rank", "expression_field_hidden"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        if self.anchor_gaussians < 0:
            problems.append("anchor_gaussians must be 0 (none) or positive")
        if not 1 <= self.anchor_children <= MAX_ANCHOR_CHILDREN:
            problems.append(f"anchor_children must be in 1..{MAX_ANCHOR_CHILDREN}")
        if self.anchor_layers < 1:
            problems.append("anchor_layers must be at least 1")
        if self.expression_activation not in ("gelu", "relu"):
            problems.append(f"expression_activation {self.expression_activation!r} is not gelu or relu")
        if self.expression_mixing and not self.expression_modulation:
            problems.append("expression_mixing needs expression_modulation")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    @property
    def input_size(self) -> int:
        """Side of the crops (and position maps and training targets) the model reads."""
        return self.image_size * self.gaussian_upsample

    @property
    def grid_size(self) -> int:
        """Token grid side at ``image_size``."""
        return self.image_size // self.patch_size

    @property
    def tokens_per_view(self) -> int:
        return self.grid_size**2

    @property
    def in_channels(self) -> int:
        """RGB (3) + position map (3) + Plücker rays (6)."""
        return 12

    def stage_channels(self) -> list[int]:
        """Channels after each upsampler stage (halving from D, floored at the minimum)."""
        chans, c = [], self.width
        for _ in range(self.upsample_stages):
            c = max(c // 2, self.upsample_min_channels)
            chans.append(c)
        return chans

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what ``config.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys raise ValueError naming them and the known ones.

        Missing keys take their defaults, so older files keep loading when a field is added.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied (validated like ``from_dict``)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class Preset:
    """A named size with a one-line note on what it is for."""

    name: str
    config: ModelConfig
    note: str = field(default="")


# Presets. Token count, not width, sets the cost on a CPU (docs/background.md §2), so
# the CPU presets keep about 64 tokens per view (256 for 4 views).
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "tiny",
            # The prototype measured at 3.26 M parameters / 0.155 s per training step here.
            ModelConfig(expression_modulation=True),
            "CPU model for tests and quick training: 64^2, patch 8, 64 tokens per view",
        ),
        Preset(
            "small",
            # 128^2 with patch 16 keeps 64 tokens per view. Rendering the 128^2 targets dominates a
            # CPU training step, so the network stays tiny-sized (D 192, 4 blocks, 3.5 M
            # parameters before the anchors' 1.1 M): more steps per hour beat width here, and the
            # weights ship in a few MB.
            # 1024 anchors x 4 children (about 11 mm apart on the head) close the back of the head.
            ModelConfig(
                image_size=128, patch_size=16, width=192, depth=4, num_heads=3,
                upsample_stages=2, upsample_min_channels=64, upsample_layers=1, head_channels=32,
                expression_modulation=True, expression_field=True,
                anchor_gaussians=1024, anchor_children=4,
            ),
            "CPU model: 128^2, patch 16, 64 tokens per view",
        ),
        Preset(
            "base",
            ModelConfig(
                image_size=256, patch_size=16, width=768, depth=8, num_heads=12,
                upsample_stages=3, upsample_min_channels=64, upsample_layers=2, head_channels=32,
                expression_modulation=True, expression_field=True,
                anchor_gaussians=2048, anchor_children=4,
            ),
            "single-GPU model: 256^2, patch 16, 256 tokens per view",
        ),
        Preset(
            "paper",
            # Paper: 512^2 crops, 8 blocks, Sapiens-2B features (1920 channels), DUSt3R geometry.
            # Patch 16, D 1024, 16 heads and GRM's 64-channel floor are [I]. Pixel-aligned only,
            # as in the paper (``train --anchor-gaussians Q`` adds anchors).
            ModelConfig(
                image_size=512, patch_size=16, width=1024, depth=8, num_heads=16,
                feature_dim=1920, feature_backend="sapiens-2b", geometry_backend="dust3r",
                upsample_stages=3, upsample_min_channels=64, upsample_layers=2, head_channels=32,
            ),
            "GPU model as in the paper: 512^2, patch 16, 1024 tokens per view, Sapiens-2B features",
        ),
    )
}


def get_preset(name: str) -> ModelConfig:
    """The config of preset ``name``; ValueError lists the presets when it is unknown."""
    try:
        return PRESETS[name].config
    except KeyError:
        raise ValueError(f"unknown model preset {name!r} (presets: {', '.join(PRESETS)})") from None
