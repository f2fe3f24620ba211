"""``Dust3rConfig``: the hyper-parameters in a DUSt3R ``config.json`` (``docs/paper.md`` section 9).

The official ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt/config.json`` holds the constructor
arguments of ``AsymmetricCroCo3DStereo`` as written by ``huggingface_hub.PyTorchModelHubMixin``:
``output_mode, head_type, depth_mode, conf_mode, freeze, landscape_only, patch_embed_cls,
img_size, enc_embed_dim, enc_depth, enc_num_heads, dec_embed_dim, dec_depth, dec_num_heads,
pos_embed``. Any other CroCo constructor argument (``patch_size``, ``mlp_ratio``,
``norm_im2_in_dec``, ``mask_ratio``) may appear too. JSON has no infinity, so the mode tuples may
hold ``Infinity`` (Python's json) or the strings ``"inf"``/``"Infinity"``.

Keys outside those are refused (a config for another architecture should fail loudly), except
the bookkeeping fields hub tooling is known to add (``_IGNORED_KEYS``). Three fields are the
project's own (``dpt_layer_dims``, ``dpt_feature_dim``, ``dpt_last_dim``): DUSt3R hard-codes the
DPT widths, the official file lacks them and gets DUSt3R's values; tiny test configs shrink them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

INF = math.inf
# Written by hub tooling or by DUSt3R forks; they do not change the network.
_IGNORED_KEYS = frozenset(
    {"mask_ratio", "_name_or_path", "architectures", "model_type", "transformers_version", "library_name", "tags"}
)
_PATCH_EMBEDS = ("PatchEmbedDust3R", "ManyAR_PatchEmbed")  # same weights (`patch_embed.proj`)
_DEPTH_MODES = ("exp", "square", "linear")
_CONF_MODES = ("exp", "sigmoid")


def _number(value: Any) -> float:
    if isinstance(value, str):
        text = value.strip().lower().lstrip("+")
        if text in ("inf", "infinity", "-inf", "-infinity"):
            return -INF if text.startswith("-") else INF
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _mode(value: Any, name: str) -> tuple[str, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not isinstance(value[0], str):
        raise ValueError(f"{name} must be [mode, vmin, vmax], got {value!r}")
    return (value[0], _number(value[1]), _number(value[2]))


@dataclass(frozen=True)
class Dust3rConfig:
    """DUSt3R network hyper-parameters; the defaults are the official ViT-L / ViT-B / DPT 512 model.

    Attributes:
        img_size: (H, W) training resolution; the inference resolution is ``max(img_size)``
            (512 for the 512 models, 224 for the 224 one).
        patch_size: 16 (the patch embedding's kernel and stride).
        enc_embed_dim, enc_depth, enc_num_heads: the shared ViT encoder.
        dec_embed_dim, dec_depth, dec_num_heads: each of the two ViT decoders.
        mlp_ratio: MLP hidden width / embed dim.
        norm_im2_in_dec: LayerNorm on the other view's tokens before cross-attention (``norm_y``).
        pos_embed: ``RoPE<freq>``; only RoPE is implemented (all released DUSt3R models use RoPE100).
        output_mode: ``pts3d``.
        head_type: ``dpt`` (the ``_linear`` checkpoints are not supported).
        depth_mode: (mode, vmin, vmax) of the point post-processing; ``exp``: dir * expm1(|xyz|).
        conf_mode: (mode, vmin, vmax) of the confidence; ``exp``: vmin + exp(x), i.e. 1 + exp(x).
        landscape_only: recorded only; the head always runs at the image's own (H, W), which is
            what DUSt3R's own loader forces (``landscape_only=False``).
        patch_embed_cls: recorded only (both DUSt3R classes share the weights).
        freeze: recorded only (a training option).
        dpt_layer_dims: DPT widths after ``act_postprocess`` (DUSt3R: 96, 192, 384, 768).
        dpt_feature_dim: DPT fusion width (256).
        dpt_last_dim: width before the 1x1 output conv (128).
    """

    img_size: tuple[int, int] = (512, 512)
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    pos_embed: str = "RoPE100"
    output_mode: str = "pts3d"
    head_type: str = "dpt"
    depth_mode: tuple[str, float, float] = ("exp", -INF, INF)
    conf_mode: tuple[str, float, float] | None = ("exp", 1.0, INF)
    landscape_only: bool = False
    patch_embed_cls: str = "PatchEmbedDust3R"
    freeze: str = "none"
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128

    def __post_init__(self) -> None:
        if len(self.img_size) != 2 or any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"img_size {list(self.img_size)} must be two multiples of patch_size {self.patch_size}")
        encoder = ("enc", self.enc_embed_dim, self.enc_num_heads)
        for kind, dim, heads in (encoder, ("dec", self.dec_embed_dim, self.dec_num_heads)):
            if heads <= 0 or dim % heads or (dim // heads) % 4:
                # RoPE2D splits each head in two halves that rotate in pairs: head_dim % 4 == 0.
                raise ValueError(f"{kind}_embed_dim {dim} must split into {heads} heads of a multiple of 4")
        if self.enc_depth < 1 or self.dec_depth < 1:
            raise ValueError("enc_depth and dec_depth must be >= 1")
        if not self.pos_embed.startswith("RoPE"):
            raise ValueError(f"pos_embed {self.pos_embed!r}: only RoPE<freq> is implemented")
        _ = self.rope_freq  # raises for a malformed RoPE<freq>
        if self.head_type != "dpt":
            raise ValueError(f"head_type {self.head_type!r}: only the DPT head is implemented (not the _linear models)")
        if self.output_mode != "pts3d":
            raise ValueError(f"output_mode {self.output_mode!r}: only pts3d is implemented")
        if self.depth_mode[0] not in _DEPTH_MODES or (self.depth_mode[1], self.depth_mode[2]) != (-INF, INF):
            raise ValueError(f"depth_mode {self.depth_mode!r}: expected one of {_DEPTH_MODES} without bounds")
        if self.conf_mode is not None and self.conf_mode[0] not in _CONF_MODES:
            raise ValueError(f"conf_mode {self.conf_mode!r}: expected one of {_CONF_MODES}")
        if self.patch_embed_cls not in _PATCH_EMBEDS:
            raise ValueError(f"patch_embed_cls {self.patch_embed_cls!r}: expected one of {_PATCH_EMBEDS}")
        if len(self.dpt_layer_dims) != 4:
            raise ValueError("dpt_layer_dims must hold 4 widths")

    @property
    def rope_freq(self) -> float:
        """The RoPE base frequency (100 for ``RoPE100``)."""
        try:
            return float(self.pos_embed[len("RoPE") :])
        except ValueError:
            raise ValueError(f"pos_embed {self.pos_embed!r}: expected RoPE<number>") from None

    @property
    def hooks(self) -> tuple[int, int, int, int]:
        """Decoder outputs the DPT heads read: 0 is the encoder output, k the k-th decoder block."""
        depth = self.dec_depth
        return (0, depth * 2 // 4, depth * 3 // 4, depth)

    @property
    def out_channels(self) -> int:
        """xyz, plus one confidence channel when ``conf_mode`` is set."""
        return 3 + int(self.conf_mode is not None)

    @property
    def inference_size(self) -> int:
        """Long side (512) or, for the 224 model, square side (224) that images are resized to."""
        return max(self.img_size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dust3rConfig:
        """Build from a ``config.json`` dict; ValueError for unknown keys or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and k not in _IGNORED_KEYS)
        if unknown:
            raise ValueError(f"unknown DUSt3R config key(s): {', '.join(unknown)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            for key in ("img_size", "dpt_layer_dims"):
                if key in kwargs:
                    value = kwargs[key]
                    kwargs[key] = tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else (value, value)))
            if "depth_mode" in kwargs:
                kwargs["depth_mode"] = _mode(kwargs["depth_mode"], "depth_mode")
            if "conf_mode" in kwargs:
                kwargs["conf_mode"] = _mode(kwargs["conf_mode"], "conf_mode")
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists; infinities become JSON ``Infinity``)."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def tiny(cls) -> Dust3rConfig:
        """A few-hundred-thousand-parameter network with the official layout, for tests (64 x 64 images)."""
        return cls(
            img_size=(64, 64),
            enc_embed_dim=64,
            enc_depth=2,
            enc_num_heads=2,
            dec_embed_dim=48,
            dec_depth=2,
            dec_num_heads=2,
            dpt_layer_dims=(8, 16, 24, 32),
            dpt_feature_dim=16,
            dpt_last_dim=8,
        )
