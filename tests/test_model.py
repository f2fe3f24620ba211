"""Tests for the Avat3r model (model/): tiny preset, CPU, seeded."""

from __future__ import annotations

import math

import pytest
import torch

from avat3r_cli.core.camera import intrinsics_from_fov, look_at
from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
from avat3r_cli.model.config import PRESETS, ModelConfig, get_preset
from avat3r_cli.model.inputs import GaussianMaps, ViewInputs
from avat3r_cli.model.plucker import pixel_footprint, plucker_rays
from avat3r_cli.model.upsampler import WindowLayer

TINY = get_preset("tiny")
MAP_FIELDS = ("means", "quats", "scales", "opacities", "sh", "confidence")


def make_inputs(
    config: ModelConfig, views: int, batch: int = 1, seed: int = 0, size: tuple[int, int] | None = None
) -> ViewInputs:
    """Cameras on a circle 0.6 m around a head-sized cloud of points; random confidence."""
    g = torch.Generator().manual_seed(seed)
    h, w = size or (config.image_size, config.image_size)
    K = intrinsics_from_fov(30.0, h, w)
    w2c = []
    for i in range(views):
        a = 2 * math.pi * i / max(views, 1) + 0.3
        eye = torch.tensor([0.6 * math.sin(a), 0.05 * i, -0.6 * math.cos(a)])
        w2c.append(look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])))
    w2c = torch.stack(w2c)[None].repeat(batch, 1, 1, 1)
    Ks = K.expand(batch, views, 3, 3).clone()
    features = None
    if config.feature_dim:
        features = torch.randn(batch, views, config.feature_dim, 12, 12, generator=g)
    return ViewInputs(
        images=torch.rand(batch, views, 3, h, w, generator=g),
        positions=0.1 * torch.randn(batch, views, 3, h, w, generator=g),
        confidence=torch.rand(batch, views, 1, h, w, generator=g),
        K=Ks,
        world_to_cam=w2c,
        features=features,
    )


def build(config: ModelConfig = TINY, seed: int = 0) -> Avat3r:
    torch.manual_seed(seed)
    return Avat3r(config).eval()


@pytest.fixture(scope="module")
def tiny() -> Avat3r:
    return build()


def expression(seed: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 52, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("views", [1, 2, 4, 6])
def test_shapes_and_gaussian_counts(tiny: Avat3r, views: int) -> None:
    x = make_inputs(TINY, views, seed=views)
    with torch.no_grad():
        maps = tiny(x, expression(0))
    r = TINY.image_size
    assert maps.means.shape == (1, views, r, r, 3)
    assert maps.quats.shape == (1, views, r, r, 4)
    assert maps.scales.shape == (1, views, r, r, 3)
    assert maps.opacities.shape == (1, views, r, r)
    assert maps.sh.shape == (1, views, r, r, 1, 3)
    assert all(getattr(maps, f).dtype == torch.float32 for f in MAP_FIELDS)
    gaussians = maps_to_gaussians(maps, 0.5)
    expected = int((x.confidence >= 0.5).sum())
    assert 0 < expected < views * r * r
    assert gaussians.count == expected
    assert maps_to_gaussians(maps, 0.0).count == views * r * r


def test_batch_non_square_and_activations(tiny: Avat3r) -> None:
    x = make_inputs(TINY, 3, batch=2, size=(48, 80))  # token grid 6x10 differs from the config's 8x8
    with torch.no_grad():
        maps = tiny(x, expression(1, batch=2))
    assert maps.means.shape == (2, 3, 48, 80, 3)
    for field in MAP_FIELDS:
        assert torch.isfinite(getattr(maps, field)).all(), field
    torch.testing.assert_close(maps.quats.norm(dim=-1), torch.ones(2, 3, 48, 80), atol=1e-6, rtol=0)
    assert (maps.scales > 0).all()
    assert ((maps.opacities > 0) & (maps.opacities < 1)).all()
    # Skips: an untrained model stays near its inputs (small heads), i.e. the skips are wired.
    assert (maps.means - x.positions.permute(0, 1, 3, 4, 2)).abs().max() < 0.05
    colour = maps.sh[..., 0, :] * 0.28209479177387814 + 0.5
    assert (colour - x.images.permute(0, 1, 3, 4, 2)).abs().mean() < 0.1
    # Scales are measured in pixel footprints: about half a pixel at initialisation.
    footprint = pixel_footprint(x.positions, x.K, x.world_to_cam).squeeze(2)
    ratio = maps.scales.mean(-1) / footprint
    assert 0.3 < float(ratio.median()) < 0.8


def test_expression_changes_gaussians_and_repeats_exactly(tiny: Avat3r) -> None:
    x = make_inputs(TINY, 2)
    with torch.no_grad():
        a = tiny(x, expression(0))
        b = tiny(x, expression(0))
        c = tiny(x, expression(1))
    for field in ("means", "quats", "scales", "opacities", "sh"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
        assert not torch.allclose(getattr(a, field), getattr(c, field), atol=1e-7, rtol=0), field
    assert torch.equal(a.confidence, c.confidence)


def test_decode_of_encode_equals_forward(tiny: Avat3r) -> None:
    x = make_inputs(TINY, 4)
    e = expression(3)
    with torch.no_grad():
        encoded = tiny.encode_views(x)
        split = tiny.decode(encoded, e)
        again = tiny.decode(encoded, e)  # the cache is not consumed by a decode
        whole = tiny(x, e)
    for field in MAP_FIELDS:
        assert torch.equal(getattr(split, field), getattr(whole, field)), field
        assert torch.equal(getattr(again, field), getattr(whole, field)), field


def test_view_permutation_permutes_gaussians_only(tiny: Avat3r) -> None:
    x = make_inputs(TINY, 4, seed=5)
    perm = [2, 0, 3, 1]
    e = expression(2)
    with torch.no_grad():
        a = tiny(x, e)
        b = tiny(x.select_views(perm), e)
    for field in MAP_FIELDS:
        torch.testing.assert_close(getattr(b, field), getattr(a, field)[:, perm], atol=2e-5, rtol=1e-5)
    ga, gb = maps_to_gaussians(a), maps_to_gaussians(b)
    assert ga.count == gb.count
    # Gaussians come in view-major blocks: rebuild a's order from b's blocks.
    per_view = [int((x.confidence[0, v] >= 0.5).sum()) for v in range(4)]
    starts_b = torch.tensor([0] + [per_view[p] for p in perm]).cumsum(0)
    blocks = {p: slice(int(starts_b[i]), int(starts_b[i + 1])) for i, p in enumerate(perm)}
    reordered = torch.cat([gb.means[blocks[v]] for v in range(4)])
    torch.testing.assert_close(reordered, ga.means, atol=2e-5, rtol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    # Features and SH degree 1 switch on the optional parameters too.
    config = TINY.replace(feature_dim=8, feature_backend="test", sh_degree=1)
    model = build(config).train()
    x = make_inputs(config, 2)
    maps = model(x, expression(0))
    g = torch.Generator().manual_seed(1)
    loss = sum((getattr(maps, f) * torch.randn(getattr(maps, f).shape, generator=g)).sum() for f in MAP_FIELDS[:5])
    loss.backward()
    dead = [
        n
        for n, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    # The modulation's zero last layer gates its first layer's gradient until it has moved.
    assert dead == ["modulation.mlp.0.weight", "modulation.mlp.0.bias"]
    assert model.modulation.mlp[2].weight.grad.abs().sum() > 0


def test_gradient_checkpointing_matches() -> None:
    x, e = make_inputs(TINY, 2), expression(0)
    grads = []
    for ckpt in (False, True):
        model = build().train()
        model.gradient_checkpointing = ckpt
        maps = model(x, e)
        (maps.means.sum() + maps.opacities.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_heads_are_fp32_under_autocast(tiny: Avat3r) -> None:
    x, e = make_inputs(TINY, 2), expression(0)
    with torch.no_grad():
        ref = tiny(x, e)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = tiny(x, e)
    for field in MAP_FIELDS:
        assert getattr(low, field).dtype == torch.float32
    torch.testing.assert_close(low.means, ref.means, atol=5e-3, rtol=0)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            encoded = tiny.encode_views(x)
        mixed = tiny.decode(encoded, e)  # a bf16 cache decoded without autocast
    torch.testing.assert_close(mixed.means, ref.means, atol=5e-3, rtol=0)


def test_paper_preset_on_meta_device() -> None:
    config = get_preset("paper")
    with torch.device("meta"):
        model = Avat3r(config)
    assert all(p.is_meta for p in model.parameters())
    assert model.num_parameters() == expected_parameters(config)
    assert 140e6 < model.num_parameters() < 160e6


def test_every_preset_parameter_count() -> None:
    for preset in PRESETS.values():
        with torch.device("meta"):
            assert Avat3r(preset.config).num_parameters() == expected_parameters(preset.config), preset.name
    with torch.device("meta"):
        assert 2.8e6 < Avat3r(TINY).num_parameters() < 3.5e6


def expected_parameters(c: ModelConfig) -> int:
    """Parameter count from the architecture as documented (an independent tally)."""
    d, hc, cf = c.width, c.head_channels, c.feature_dim
    linear = lambda i, o: i * o + o  # noqa: E731
    norm = lambda n: 2 * n  # noqa: E731
    total = 12 * d * c.patch_size**2 + d + c.tokens_per_view * d + 12 * hc * 9 + hc  # patchify, pos, skip conv
    if cf:
        total += norm(cf) + linear(d + cf, d)
    total += linear(c.expression_dim, c.expression_hidden) + linear(c.expression_hidden, c.expression_hidden)
    total += linear(c.expression_hidden, d * c.expression_tokens)
    attn = lambda n: linear(n, n) + linear(n, 2 * n) + linear(n, n)  # noqa: E731
    hidden = int(d * c.mlp_ratio)
    total += c.depth * (4 * norm(d) + 2 * attn(d) + linear(d, hidden) + linear(hidden, d)) + norm(d)
    prev = d
    for ch in c.stage_channels():
        total += linear(prev, 4 * ch)
        total += c.upsample_layers * (2 * norm(ch) + attn(ch) + linear(ch, 2 * ch) + linear(2 * ch, ch))
        prev = ch
    ratio = c.patch_size // 2**c.upsample_stages
    total += norm(prev) + linear(prev, hc * ratio**2)
    raw = 14 + ((c.sh_degree + 1) ** 2 - 1) * 3  # the heads' outputs
    total += linear(hc, raw)
    if c.expression_modulation:
        total += linear(c.expression_dim, c.expression_hidden) + linear(c.expression_hidden, 2 * hc)
    if c.expression_field:  # point MLP on (position, 6 Fourier bands x sin/cos x 3 axes, features), code, basis
        h, r = c.expression_field_hidden, c.expression_field_rank
        total += linear(3 + 36 + hc, h) + linear(c.expression_dim, r) + r * (h + 1) * raw
    if c.anchor_gaussians:  # position encoding, per-anchor embedding, L_a x [cross-attention, MLP], head
        q, g = c.anchor_gaussians, c.anchor_children
        total += linear(3 + 36, d) + q * d
        total += c.anchor_layers * (3 * norm(d) + attn(d) + linear(d, hidden) + linear(hidden, d))
        total += norm(d) + linear(d, g * raw)
    return total


def test_plucker_rays_pass_through_pixel_centres() -> None:
    x = make_inputs(TINY, 2, size=(6, 10))
    rays = plucker_rays(x.K, x.world_to_cam, 6, 10)  # [1, 2, 6, H, W]
    assert rays.shape == (1, 2, 6, 6, 10)
    moment, d = rays[0, 1, :3], rays[0, 1, 3:]
    torch.testing.assert_close(d.norm(dim=0), torch.ones(6, 10))
    w2c = x.world_to_cam[0, 1]
    origin = -w2c[:3, :3].T @ w2c[:3, 3]
    expected_moment = torch.linalg.cross(origin[:, None, None].expand_as(d), d, dim=0)
    torch.testing.assert_close(moment, expected_moment, atol=1e-6, rtol=0)
    point = origin[:, None, None] + 0.7 * d  # a point along each ray, projected back
    cam = torch.einsum("ij,jhw->ihw", w2c[:3, :3], point) + w2c[:3, 3, None, None]
    assert (cam[2] > 0).all()  # in front of the camera
    pix = torch.einsum("ij,jhw->ihw", x.K[0, 1], cam)
    u, v = pix[0] / pix[2], pix[1] / pix[2]
    torch.testing.assert_close(u, torch.arange(10.0)[None].expand(6, 10) + 0.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(v, torch.arange(6.0)[:, None].expand(6, 10) + 0.5, atol=1e-4, rtol=0)


def test_shifted_windows_do_not_wrap_around() -> None:
    torch.manual_seed(0)
    layer = WindowLayer(32, window=4, shifted=True).eval()
    x = torch.randn(1, 8, 8, 32)
    y = x.clone()
    y[0, 7, 7] = torch.randn(32)  # the far corner; a roll without the mask would share a window with (0, 0)
    with torch.no_grad():
        a, b = layer(x), layer(y)
    torch.testing.assert_close(a[0, 0, 0], b[0, 0, 0], atol=0, rtol=0)
    assert not torch.allclose(a[0, 7, 6], b[0, 7, 6])  # its true neighbour does see it


def test_config_round_trip_and_unknown_keys() -> None:
    for preset in PRESETS.values():
        assert ModelConfig.from_dict(preset.config.to_dict()) == preset.config
    with pytest.raises(ValueError, match="unknown model config key.*bogus_key"):
        ModelConfig.from_dict({**TINY.to_dict(), "bogus_key": 1})
    with pytest.raises(ValueError, match="heads"):
        TINY.replace(num_heads=5)
    with pytest.raises(ValueError, match="feature_backend"):
        TINY.replace(feature_dim=16)
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("huge")


def test_missing_features_and_bad_expression_are_clear_errors() -> None:
    config = TINY.replace(feature_dim=8, feature_backend="test")
    model = build(config)
    x = make_inputs(TINY, 1)
    with pytest.raises(ValueError, match="image features"):
        model(x, expression(0))
    with pytest.raises(ValueError, match="expression has shape"):
        build()(x, torch.zeros(1, 50))


def test_gaussian_maps_is_pure_tensors(tiny: Avat3r) -> None:
    with torch.no_grad():
        maps = tiny(make_inputs(TINY, 1), expression(0))
    assert isinstance(maps, GaussianMaps)
    assert maps.to("cpu", torch.float64).means.dtype == torch.float64


def test_expression_mlp_activation_is_configurable_and_gelu_by_default():
    from avat3r_cli.model.config import ModelConfig

    gelu = Avat3r(get_preset("tiny"))
    assert any(isinstance(m, torch.nn.GELU) for m in gelu.transformer.expression.mlp)
    relu = Avat3r(get_preset("tiny").replace(expression_activation="relu"))
    assert any(isinstance(m, torch.nn.ReLU) for m in relu.transformer.expression.mlp)
    assert relu.state_dict().keys() == gelu.state_dict().keys()  # same weights, another nonlinearity
    with pytest.raises(ValueError, match="expression_activation"):
        ModelConfig(expression_activation="tanh")


def test_expression_modulation_starts_as_the_identity_and_then_follows_the_code() -> None:
    with_mod = build(TINY)
    without = Avat3r(TINY.replace(expression_modulation=False))
    without.load_state_dict({k: v for k, v in with_mod.state_dict().items() if not k.startswith("modulation.")})
    x = make_inputs(TINY, 1)
    with torch.no_grad():
        _modulation_checks(with_mod, without, x)
    assert PRESETS["small"].config.expression_modulation and not PRESETS["paper"].config.expression_modulation


def test_expression_mixing_starts_as_the_identity_loads_older_weights_and_folds_statistics() -> None:
    check_zero_started_option(
        TINY.replace(expression_mixing=True), lambda m: m.modulation.mixing.weight,
        ["modulation.mixing.bias", "modulation.mixing.weight"],
    )
    with pytest.raises(ValueError, match="expression_mixing needs expression_modulation"):
        ModelConfig(expression_mixing=True)


def check_zero_started_option(config: ModelConfig, zero_weight, missing_keys: list[str]) -> None:
    """An expression option that starts at zero: TINY's weights load (only ``missing_keys`` missing),
    the outputs are unchanged, once ``zero_weight(model)`` moves they follow the code, and code
    statistics still fold in without changing them."""
    with_option, plain = build(config), build(TINY)
    # Weights without the option (every older model) load; its layers keep their zero init.
    missing = with_option.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(missing_keys)
    x, code = make_inputs(config, 2), expression(3)
    with torch.no_grad():
        a, b = with_option(x, code), plain(x, code)
        for f in MAP_FIELDS[:5]:
            torch.testing.assert_close(getattr(a, f), getattr(b, f))
        torch.nn.init.normal_(zero_weight(with_option), std=0.05)
        moved = with_option(x, code)
        assert float((moved.means - a.means).abs().max()) > 1e-4
        assert float((moved.means - with_option(x, expression(4)).means).abs().max()) > 1e-4
        g = torch.Generator().manual_seed(5)
        with_option.set_expression_stats(torch.rand(52, generator=g), 0.05 + torch.rand(52, generator=g))
        for f in MAP_FIELDS[:5]:
            torch.testing.assert_close(getattr(with_option(x, code), f), getattr(moved, f), atol=2e-5, rtol=1e-4)


def _modulation_checks(with_mod: Avat3r, without: Avat3r, x: ViewInputs) -> None:
    a, b = with_mod(x, expression(0)), without(x, expression(0))
    for f in MAP_FIELDS[:5]:
        torch.testing.assert_close(getattr(a, f), getattr(b, f))
    torch.nn.init.normal_(with_mod.modulation.mlp[2].weight, std=0.1)
    assert float((with_mod(x, expression(0)).means - a.means).abs().max()) > 1e-4
    assert float((with_mod(x, expression(0)).means - with_mod(x, expression(1)).means).abs().max()) > 1e-4


def test_expression_statistics_standardise_the_code_without_changing_the_outputs() -> None:
    model = build(TINY)
    torch.nn.init.normal_(model.modulation.mlp[2].weight, std=0.1)  # let the modulation act too
    x, code = make_inputs(TINY, 2), expression(3)
    with torch.no_grad():
        before = model(x, code)
        g = torch.Generator().manual_seed(4)
        model.set_expression_stats(torch.rand(52, generator=g), 0.05 + torch.rand(52, generator=g))
        model.set_expression_stats(torch.rand(52, generator=g), 0.05 + torch.rand(52, generator=g))  # twice
        after = model(x, code)
    for f in MAP_FIELDS[:5]:
        torch.testing.assert_close(getattr(after, f), getattr(before, f), atol=2e-5, rtol=1e-4)
    assert "expression_mean" in model.state_dict() and "expression_std" in model.state_dict()
