"""``gaussian_upsample``: one Gaussian per crop pixel from a network that reads a coarser grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.model.avat3r import Avat3r, maps_to_gaussians
from avat3r_cli.model.config import get_preset
from avat3r_cli.model.inputs import ViewInputs

from test_model import expression, make_inputs

TINY = get_preset("tiny")
TINY2 = TINY.replace(gaussian_upsample=2)


def doubled(x: ViewInputs) -> ViewInputs:
    """The same views at twice the resolution: each pixel repeated 2x2, intrinsics scaled."""
    def up(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)

    K = torch.cat([x.K[..., :2, :] * 2, x.K[..., 2:, :]], dim=-2)
    return ViewInputs(images=up(x.images), positions=up(x.positions), confidence=up(x.confidence), K=K,
                      world_to_cam=x.world_to_cam)


@pytest.fixture(scope="module")
def pair() -> tuple[Avat3r, Avat3r]:
    torch.manual_seed(0)
    one = Avat3r(TINY).eval()
    two = Avat3r(TINY2).eval()
    two.load_state_dict(one.state_dict())  # the option adds no parameters
    return one, two


def test_config_input_size_and_validation() -> None:
    assert TINY2.input_size == 2 * TINY2.image_size and TINY.input_size == TINY.image_size
    with pytest.raises(ValueError, match="gaussian_upsample 3"):
        TINY.replace(gaussian_upsample=3)


def test_one_gaussian_per_crop_pixel(pair: tuple[Avat3r, Avat3r]) -> None:
    _, two = pair
    r = TINY2.input_size
    x = make_inputs(TINY2, 2, size=(r, r))
    with torch.no_grad():
        maps = two(x, expression(0))
    assert maps.means.shape == (1, 2, r, r, 3) and maps.scales.shape == (1, 2, r, r, 3)
    assert maps_to_gaussians(maps, 0.5).count == int((x.confidence >= 0.5).sum())
    with pytest.raises(ValueError, match="multiple of 16"):
        two(make_inputs(TINY2, 1, size=(72, 72)), expression(0))


def test_network_sees_the_area_downsampled_crops(pair: tuple[Avat3r, Avat3r]) -> None:
    """Crops that are 2x2 copies of 64^2 views: the network sees exactly those views, so the
    position offsets and colour residuals are the 64^2 model's, upsampled bilinearly."""
    one, two = pair
    x = make_inputs(TINY, 3, seed=4)
    big = doubled(x)
    code = expression(1)
    with torch.no_grad():
        small_maps, big_maps = one(x, code), two(big, code)

    def up(t: torch.Tensor) -> torch.Tensor:  # [1, V, h, w, C] -> [1, V, 2h, 2w, C]
        flat = t[0].permute(0, 3, 1, 2)
        return F.interpolate(flat, scale_factor=2, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)[None]

    offset = small_maps.means - x.positions.permute(0, 1, 3, 4, 2)
    expected = big.positions.permute(0, 1, 3, 4, 2) + up(offset)
    torch.testing.assert_close(big_maps.means, expected, atol=1e-5, rtol=1e-5)
    residual = small_maps.sh[..., 0, :] - (x.images.permute(0, 1, 3, 4, 2) - 0.5) / 0.28209479177387814
    expected_sh = (big.images.permute(0, 1, 3, 4, 2) - 0.5) / 0.28209479177387814 + up(residual)
    torch.testing.assert_close(big_maps.sh[..., 0, :], expected_sh, atol=1e-4, rtol=1e-4)


def test_scales_follow_the_crop_pixels_footprint() -> None:
    """Where the raw scale is flat, a crop pixel's Gaussian is half as wide as a network pixel's."""
    torch.manual_seed(1)
    one, two = Avat3r(TINY).eval(), Avat3r(TINY2).eval()
    two.load_state_dict(one.state_dict())
    x = make_inputs(TINY, 1, seed=2)
    with torch.no_grad():
        for model in (one, two):
            model.heads.proj.weight[model.heads.slices["scale"]] = 0.0  # raw scale = the bias
        a = one(x, expression(0)).scales
        b = two(doubled(x), expression(0)).scales
    # Same depth at every 2x2 copy, half the focal length per pixel at 2x: half the footprint.
    torch.testing.assert_close(b[:, :, ::2, ::2], 0.5 * a, atol=1e-6, rtol=1e-4)


def test_train_with_upsampled_gaussians_from_one_per_pixel_weights(tmp_path) -> None:
    """``--gaussian-upsample 2`` trains on 2x crops, and weights trained with one Gaussian per
    network pixel start such a run (the option adds no tensors)."""
    from test_train import config, make_tiny_dataset, read_log

    from avat3r_cli.pipeline.models import load_avat3r
    from avat3r_cli.train.trainer import train

    data = make_tiny_dataset(tmp_path / "data", num_subjects=2, r=TINY2.input_size)
    base = make_tiny_dataset(tmp_path / "data64", num_subjects=2)
    train(config(base, tmp_path / "base", steps=1))
    run = tmp_path / "run"
    train(config(data, run, steps=2, init_from=str(tmp_path / "base" / "model"), gaussian_upsample=2))
    model, info = load_avat3r(str(run / "model"))
    assert info.config["gaussian_upsample"] == 2 and model.config.input_size == 128
    assert [r["step"] for r in read_log(run)] == [1, 2]
    with pytest.raises(Avat3rError, match="prepared_r128"):
        train(config(base, tmp_path / "wrong", steps=1, gaussian_upsample=2))  # 64^2 data for a 128^2 model
