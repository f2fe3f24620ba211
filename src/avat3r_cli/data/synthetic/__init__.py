"""Synthetic multi-view heads: procedural identities on MediaPipe's canonical face, ARKit-named
deformers, 3D Gaussian heads with shoulders (and sometimes glasses), cameras all round the head,
and a generator writing the multi-view dataset layout."""

from __future__ import annotations

from avat3r_cli.data.synthetic.cameras import SynthCamera, head_camera, is_input_view, synth_cameras
from avat3r_cli.data.synthetic.deformers import DEFORMERS, deform, neutral_vertices
from avat3r_cli.data.synthetic.generate import (
    GENERATOR_VERSION,
    expression_noise,
    generate_dataset,
    generate_subject,
    random_expression,
)
from avat3r_cli.data.synthetic.head import HeadModel, HeadSamples, build_head, head_model
from avat3r_cli.data.synthetic.identity import DEFAULT_IDENTITY, Identity, sample_identity

__all__ = [
    "DEFAULT_IDENTITY", "DEFORMERS", "GENERATOR_VERSION", "HeadModel", "HeadSamples", "Identity", "SynthCamera",
    "build_head", "deform", "expression_noise", "generate_dataset", "generate_subject", "head_camera", "head_model",
    "is_input_view", "neutral_vertices", "random_expression", "sample_identity", "synth_cameras",
]
