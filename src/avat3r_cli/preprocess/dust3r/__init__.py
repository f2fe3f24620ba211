"""DUSt3R (naver, CC BY-NC-SA 4.0) in the project: network, weights, pairwise inference, alignment.

``--geometry dust3r``: ``load_dust3r()`` fetches ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``
(2.28 GB) into the hub cache and loads it strictly; ``dust3r_position_maps(crops, cameras,
model)`` returns per-pixel world points and 0..1 confidences aligned to the given cameras.
Whoever selects this backend prints ``DUST3R_LICENCE_NOTICE``.

Names resolve lazily, so importing this package (or ``.load`` / ``.config``) does not import
torch: the CLI may read ``DUST3R_REPO`` while ``avat3r --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DUST3R_LICENCE_NOTICE": "backend",
    "Alignment": "align",
    "align_known_cameras": "align",
    "dust3r_position_maps": "backend",
    "normalise_confidence": "backend",
    "Dust3rConfig": "config",
    "PairwiseResult": "inference",
    "make_pairs": "inference",
    "pairwise": "inference",
    "preprocess": "inference",
    "DUST3R_REPO": "load",
    "download_dust3r": "load",
    "load_dust3r": "load",
    "resolve_dust3r": "load",
    "Dust3r": "model",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
