"""Evaluation building blocks, against hand values: image metrics, view groups, bootstrap intervals."""

from __future__ import annotations

import importlib.machinery
import math
import sys
import types

import numpy as np
import pytest
import torch

from avat3r_cli.core.camera import orbit_cameras
from avat3r_cli.eval import metrics
from avat3r_cli.eval.bootstrap import bootstrap_correlation, pearson
from avat3r_cli.eval.metrics import changed_pixel_mask, lpips_metric, psnr, silhouette_iou, ssim
from avat3r_cli.eval.view_groups import camera_yaw_deg, group_results, view_group
from avat3r_cli.train.losses import ssim as loss_ssim

# -- image metrics -------------------------------------------------------------------------------


def test_psnr_whole_and_masked_match_hand_values():
    target = torch.zeros(1, 3, 4, 4)
    pred = target.clone()
    pred[..., :2, :] = 0.1  # error 0.1 on the top half only
    assert float(psnr(pred, target)[0]) == pytest.approx(-10 * math.log10(0.01 / 2), rel=1e-5)
    top = torch.zeros(1, 1, 4, 4)
    top[..., :2, :] = 1
    assert float(psnr(pred, target, top)[0]) == pytest.approx(20.0, rel=1e-5)
    assert float(psnr(pred, target, 1 - top)[0]) == pytest.approx(100.0)  # exact: capped, not inf
    assert math.isnan(float(psnr(pred, target, torch.zeros(1, 1, 4, 4))[0]))
    assert float(psnr(pred + 5.0, target)[0]) == pytest.approx(0.0, abs=1e-5)  # clamped to 1 first


def test_changed_mask_uses_the_max_channel_difference():
    a = torch.zeros(1, 3, 2, 2)
    b = a.clone()
    b[0, 1, 0, 0] = 0.2  # one channel of one pixel changes a lot
    b[0, :, 1, 1] = 0.04  # below the threshold everywhere
    mask = changed_pixel_mask(a, b)
    assert mask.shape == (1, 1, 2, 2) and mask.sum() == 1 and mask[0, 0, 0, 0] == 1


def test_masked_ssim_is_the_mean_of_the_ssim_map_inside_the_mask():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    torch.testing.assert_close(ssim(x, y), loss_ssim(x, y, reduction="none"))
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:10, 2:12] = 1
    full = loss_ssim(x, y, reduction="map")
    assert full.shape == (2, 3, 16, 16)
    expected = full[:, :, 4:10, 2:12].flatten(1).mean(dim=1)
    torch.testing.assert_close(ssim(x, y, mask), expected, rtol=0, atol=1e-6)
    assert math.isnan(float(ssim(x, y, torch.zeros(2, 1, 16, 16))[0]))


def test_silhouette_iou_matches_hand_counts():
    alpha = torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    alpha[0, 0, :2, :] = 0.9  # 8 pixels
    mask[0, 0, 1:3, :] = 1.0  # 8 pixels, 4 shared
    alpha[1, 0, 0, 0] = 0.4  # below 0.5: not part of the silhouette; image 1 is empty on both sides
    iou = silhouette_iou(alpha, mask)
    assert float(iou[0]) == pytest.approx(4 / 12) and math.isnan(float(iou[1]))


class _FakeLpips(torch.nn.Module):
    """Stands in for ``lpips.LPIPS``: records that it was built (building the real one downloads AlexNet)."""

    built: list[str] = []

    def __init__(self, net: str, verbose: bool) -> None:
        super().__init__()
        _FakeLpips.built.append(net)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).mean(dim=(1, 2, 3), keepdim=True)


def test_lpips_needs_its_backbone_on_disk_and_never_builds_without_it(tmp_path, monkeypatch):
    fake = types.ModuleType("lpips")
    fake.__spec__ = importlib.machinery.ModuleSpec("lpips", None)
    fake.LPIPS = _FakeLpips
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    _FakeLpips.built.clear()
    assert lpips_metric() is None and _FakeLpips.built == []  # no backbone: nothing built, nothing fetched
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / metrics._ALEXNET_FILE).write_bytes(b"")
    scorer = lpips_metric()
    assert _FakeLpips.built == ["alex"]
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    # LPIPS takes images in -1..1: the scorer maps 0..1 there, so the fake's MSE is 4x the plain one.
    torch.testing.assert_close(scorer(x, y), 4 * ((x - y) ** 2).mean(dim=(1, 2, 3)))
    assert scorer(x, y).shape == (2,)


def test_lpips_scores_identical_images_zero_when_available():
    if metrics.importlib.util.find_spec("lpips") is None or metrics._alexnet_weights() is None:
        pytest.skip("needs the lpips package and its AlexNet weights in the torch hub cache")
    scorer = lpips_metric()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(scorer(x, x)[0]) == pytest.approx(0.0, abs=1e-4) and float(scorer(x, 1 - x)[0]) > 0.05


# -- view groups ---------------------------------------------------------------------------------


def test_yaw_of_a_ring_of_cameras_and_its_groups():
    # orbit_cameras starts in front of the face (-z) and turns towards +x (the subject's left).
    cams = orbit_cameras(torch.zeros(3), 0.6, 8, 32, 32, elevation_deg=20.0)
    yaws = camera_yaw_deg(torch.stack([c.world_to_cam for c in cams]))
    expected = [0, 45, 90, 135, 180, -135, -90, -45]
    for got, want in zip(yaws, expected):
        assert abs((got - want + 180) % 360 - 180) < 1e-3  # ±180 are the same direction
    assert [view_group(y) for y in (0, 44.9, -44.9, 45, 90, -135, 135.1, -179, 180)] == [
        "front", "front", "front", "side", "side", "side", "back", "back", "back"]


def test_group_results_average_within_each_group():
    rows = [
        {"view_group": "front", "psnr": 20.0, "iou": 0.9},
        {"view_group": "front", "psnr": 22.0, "iou": float("nan")},
        {"view_group": "back", "psnr": 10.0, "iou": 0.5},
    ]
    groups = group_results(rows)
    assert list(groups) == ["front", "side", "back", "all"]
    assert (groups["front"].num_images, groups["front"].psnr, groups["front"].iou) == (2, 21.0, 0.9)
    assert (groups["side"].num_images, groups["side"].psnr, groups["side"].iou) == (0, None, None)
    assert groups["all"].num_images == 3 and groups["all"].psnr == pytest.approx(52 / 3)
    assert groups["all"].iou == pytest.approx(0.7)


# -- bootstrap -----------------------------------------------------------------------------------


def test_pearson_matches_numpy_and_is_undefined_for_constants():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(size=20)
    assert pearson(a, b) == pytest.approx(float(np.corrcoef(a, b)[0, 1]), abs=1e-12)
    assert pearson(a, np.ones(20)) is None and pearson(a[:2], b[:2]) is None


def test_bootstrap_interval_equals_a_plain_resampling_loop():
    rng = np.random.default_rng(1)
    a = rng.normal(size=40)
    b = a + rng.normal(size=40)
    low, high = bootstrap_correlation(a, b, resamples=200, seed=5)
    idx = np.random.default_rng(5).integers(0, 40, size=(200, 40))
    values = [np.corrcoef(a[i], b[i])[0, 1] for i in idx]
    assert low == pytest.approx(np.percentile(values, 2.5), abs=1e-9)
    assert high == pytest.approx(np.percentile(values, 97.5), abs=1e-9)
    assert low < pearson(a, b) < high
    assert bootstrap_correlation(a, b, resamples=200, seed=5) == (low, high)  # seeded
    assert bootstrap_correlation(a, b, resamples=200, seed=6) != (low, high)


def test_bootstrap_of_exact_and_undefined_correlations():
    a = np.linspace(0, 1, 30)
    low, high = bootstrap_correlation(a, 2 * a + 1, resamples=100)
    assert low == pytest.approx(1.0, abs=1e-9) and high == pytest.approx(1.0, abs=1e-9)
    assert bootstrap_correlation(a, np.zeros(30)) is None
    assert bootstrap_correlation(a, a, resamples=0) is None
