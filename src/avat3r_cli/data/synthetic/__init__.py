"""Synthetic multi-view heads: procedural identities on MediaPipe's canonical face, ARKit-named
deformers, 3D Gaussian heads and a generator writing the multi-view dataset layout."""

from __future__ import annotations

from avat3r_cli.data.synthetic.deformers import DEFORMERS, deform, neutral_vertices
from avat3r_cli.data.synthetic.generate import (
    generate_dataset,
    generate_subject,
    head_camera,
    random_expression,
    synth_cameras,
)
from avat3r_cli.data.synthetic.head import HeadModel, HeadSamples, build_head, head_model
from avat3r_cli.data.synthetic.identity import DEFAULT_IDENTITY, Identity, sample_identity

__all__ = [
    "DEFAULT_IDENTITY", "DEFORMERS", "HeadModel", "HeadSamples", "Identity", "build_head", "deform",
    "generate_dataset", "generate_subject", "head_camera", "head_model", "neutral_vertices",
    "random_expression", "sample_identity", "synth_cameras",
]
