"""Synthetic identities' own face shapes (``data/synthetic/face_shape.py``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avat3r_cli.data.synthetic import DEFAULT_IDENTITY, head_model, sample_identity
from avat3r_cli.data.synthetic.deformers import FACE_OVAL, neutral_vertices
from avat3r_cli.data.synthetic.face_shape import CHIN, FACE_MODES, FACE_SHAPE_SPREAD, NOSE_TIP, reshape_face
from avat3r_cli.io.mediapipe_assets import load_canonical_face


@pytest.fixture(scope="module")
def rest() -> np.ndarray:
    return neutral_vertices(load_canonical_face().vertices)


def test_each_mode_moves_the_face_by_millimetres_and_keeps_its_edge(rest):
    fade = np.zeros(len(rest))
    fade[list(FACE_OVAL)] = 1.0
    for i, name in enumerate(FACE_MODES):
        coefficients = tuple(1.0 if j == i else 0.0 for j in range(len(FACE_MODES)))
        moved = np.linalg.norm(reshape_face(rest, coefficients, fade) - rest, axis=1)
        # Each mode's own size is millimetres; the generator draws them FACE_SHAPE_SPREAD times as wide.
        assert 0.001 < moved.max() / FACE_SHAPE_SPREAD < 0.01, (name, moved.max())
        assert moved[list(FACE_OVAL)].max() == 0.0, name  # the edge still meets the skull


def test_canonical_face_and_wrong_length(rest):
    assert np.array_equal(reshape_face(rest, (), np.zeros(len(rest))), rest)
    with pytest.raises(ValueError, match="coefficients"):
        reshape_face(rest, (1.0, 2.0), np.zeros(len(rest)))


def test_people_get_their_own_faces(rest):
    """Sampled identities carry a shape each; their heads differ from the canonical face at the
    nose and chin by millimetres to centimetres (wider than real faces, by FACE_SHAPE_SPREAD), and
    the default stays canonical."""
    ids = [sample_identity(np.random.default_rng(s)) for s in range(8)]
    assert all(len(i.face_shape) == len(FACE_MODES) for i in ids) and len({i.face_shape for i in ids}) == 8
    assert DEFAULT_IDENTITY.face_shape == ()
    assert np.allclose(head_model(DEFAULT_IDENTITY).rest, rest)
    offsets = []
    for identity in ids[:3]:
        flat = dataclasses.replace(identity, face_shape=())
        shaped, canonical = head_model(identity).rest, head_model(flat).rest
        offsets.append(np.linalg.norm(shaped[[NOSE_TIP, CHIN]] - canonical[[NOSE_TIP, CHIN]], axis=1).max())
    assert 0.002 < max(offsets) / FACE_SHAPE_SPREAD < 0.02, offsets
