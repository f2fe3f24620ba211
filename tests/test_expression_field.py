"""The expression field: learned blendshapes over head positions (``model/expression_field.py``)."""

from __future__ import annotations

import pytest
import torch

from test_model import TINY, build, check_zero_started_option, expression, make_inputs
from avat3r_cli.model.config import ModelConfig
from avat3r_cli.model.expression_field import FIELD_WAVELENGTHS_M, ExpressionField, fourier_features

FIELD = TINY.replace(expression_field=True)


def test_fourier_features_keep_the_position_and_add_sines_and_cosines():
    p = torch.tensor([[0.0, 0.0, 0.0], [0.08, -0.01, 0.02]])
    f = fourier_features(p)
    k = len(FIELD_WAVELENGTHS_M)
    assert f.shape == (2, 3 + 6 * k)
    torch.testing.assert_close(f[:, :3], p)
    assert torch.equal(f[0, 3 : 3 + 3 * k], torch.zeros(3 * k)) and torch.equal(f[0, 3 + 3 * k :], torch.ones(3 * k))
    # The finest band turns a full period over its wavelength: 1 cm apart reads the same, 5 mm opposite.
    fine = FIELD_WAVELENGTHS_M[-1]
    a, b, c = fourier_features(torch.tensor([[0.03, 0, 0], [0.03 + fine, 0, 0], [0.03 + fine / 2, 0, 0]]))
    sin_fine = 3 + 3 * (k - 1)  # x's sine at the finest band
    assert float(a[sin_fine]) == pytest.approx(float(b[sin_fine]), abs=1e-5)
    assert float(a[sin_fine]) == pytest.approx(-float(c[sin_fine]), abs=1e-5)


def test_field_starts_as_the_identity_loads_older_weights_and_folds_statistics():
    check_zero_started_option(
        FIELD, lambda m: m.expression_field.basis.weight,
        [f"expression_field.{n}" for n in ("point.0.weight", "point.0.bias", "code.weight", "code.bias", "basis.weight")],
    )


def test_field_is_affine_in_the_code_like_a_blendshape_rig():
    torch.manual_seed(0)
    module = ExpressionField(FIELD, raw_dim=14)
    torch.nn.init.normal_(module.basis.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    feats, pos = torch.randn(2, 8, 8, FIELD.head_channels, generator=g), 0.1 * torch.randn(2, 8, 8, 3, generator=g)
    e1, e2 = torch.rand(1, 52, generator=g), torch.rand(1, 52, generator=g)
    with torch.no_grad():
        d1, d2, mid = module(feats, pos, e1), module(feats, pos, e2), module(feats, pos, (e1 + e2) / 2)
    assert d1.shape == (2, 8, 8, 14)
    torch.testing.assert_close(d1 + d2, 2 * mid, atol=1e-5, rtol=1e-5)
    assert float((d1 - d2).abs().max()) > 1e-3
    # Where a pixel sits decides its change: the same features elsewhere change differently.
    with torch.no_grad():
        shifted = module(feats, pos + torch.tensor([0.02, 0.0, 0.0]), e1)
    assert float((shifted - d1).abs().max()) > 1e-3


def test_field_basis_gets_the_first_gradient():
    model = build(FIELD).train()
    x, code = make_inputs(FIELD, 2), expression(3)
    model(x, code).means.square().sum().backward()
    f = model.expression_field
    assert f.basis.weight.grad.abs().sum() > 0
    # The basis starts at zero, so the layers before it learn once it has moved.
    assert not f.code.weight.grad.any() and not f.point[0].weight.grad.any()


def test_field_size_options_are_checked():
    with pytest.raises(ValueError, match="expression_field_rank must be positive"):
        ModelConfig(expression_field=True, expression_field_rank=0)
    model = build(FIELD.replace(expression_field_rank=4, expression_field_hidden=8))
    assert model.expression_field.basis.weight.shape == (9 * model.heads.raw_dim, 4)
