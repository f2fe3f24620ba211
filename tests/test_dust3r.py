"""Tests for the DUSt3R backend (preprocess/dust3r/): network layout, weights, inference, alignment.

The real checkpoint (2.28 GB) is never needed: a tiny random configuration exercises the code,
the full configuration is built on the meta device and compared with the key list of
``docs/paper.md`` section 9, and hub loading runs against a hand-made offline cache.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.preprocess.dust3r import backend as backend_module
from avat3r_cli.preprocess.dust3r.align import align_known_cameras, backproject
from avat3r_cli.preprocess.dust3r.backend import DUST3R_LICENCE_NOTICE, dust3r_position_maps, normalise_confidence
from avat3r_cli.preprocess.dust3r.config import Dust3rConfig
from avat3r_cli.preprocess.dust3r.inference import PairwiseResult, make_pairs, pairwise, preprocess
from avat3r_cli.preprocess.dust3r.load import download_dust3r, load_dust3r, shared_free_state_dict
from avat3r_cli.preprocess.dust3r.model import Dust3r

from hub_cache import add_hub_repo
REPO = "naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt"
# The official config.json as PyTorchModelHubMixin writes it (json: Infinity).
OFFICIAL_CONFIG = {
    "output_mode": "pts3d", "head_type": "dpt", "depth_mode": ["exp", -math.inf, math.inf],
    "conf_mode": ["exp", 1, math.inf], "freeze": "none", "landscape_only": False,
    "patch_embed_cls": "PatchEmbedDust3R", "img_size": [512, 512], "enc_embed_dim": 1024, "enc_depth": 24,
    "enc_num_heads": 16, "dec_embed_dim": 768, "dec_depth": 12, "dec_num_heads": 12, "pos_embed": "RoPE100",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny() -> Dust3r:
    torch.manual_seed(0)
    return Dust3r(Dust3rConfig.tiny()).eval()


def random_images(count: int, side: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)


# --- network -------------------------------------------------------------------------------------


def test_tiny_forward_shapes_and_confidence(tiny: Dust3r) -> None:
    x = preprocess(random_images(2), size=64).images
    with torch.no_grad():
        res1, res2 = tiny(x[:1], x[1:])
    assert res1["pts3d"].shape == (1, 64, 64, 3) and res2["pts3d_in_other_view"].shape == (1, 64, 64, 3)
    assert res1["conf"].shape == res2["conf"].shape == (1, 64, 64)
    assert float(res1["conf"].min()) >= 1.0 and float(res2["conf"].min()) >= 1.0
    assert torch.isfinite(res1["pts3d"]).all() and torch.isfinite(res2["pts3d_in_other_view"]).all()


def test_pairwise_matches_forward_for_both_orders(tiny: Dust3r) -> None:
    images = random_images(3, seed=1)
    result = pairwise(images, tiny, batch_size=4)
    assert result.pairs == make_pairs(3) and len(result.pairs) == 6
    assert result.pts_i.shape == result.pts_j.shape == (6, 64, 64, 3)
    assert result.conf_i.shape == result.conf_j.shape == (6, 64, 64)
    x = preprocess(images, size=64).images
    for i, j in [(0, 1), (1, 0), (2, 1)]:
        e = result.pairs.index((i, j))
        with torch.no_grad():
            res1, res2 = tiny(x[i : i + 1], x[j : j + 1])
        # Encoding each image once must equal DUSt3R's per-pair encoding.
        torch.testing.assert_close(result.pts_i[e], res1["pts3d"][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.pts_j[e], res2["pts3d_in_other_view"][0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.conf_j[e], res2["conf"][0], atol=1e-5, rtol=1e-4)
    # (i, j) and (j, i) are different predictions (different frames, asymmetric decoders).
    assert not torch.allclose(result.pts_i[result.pairs.index((0, 1))], result.pts_j[result.pairs.index((1, 0))])


def test_single_view_is_paired_with_itself(tiny: Dust3r) -> None:
    result = pairwise(random_images(1), tiny)
    assert result.pairs == [(0, 0)] and result.pts_i.shape == (1, 64, 64, 3)


def expected_reference_keys() -> set[str]:
    """The state-dict keys of docs/paper.md section 9, generated."""
    wb = (".weight", ".bias")
    keys = {"patch_embed.proj.weight", "patch_embed.proj.bias", "mask_token"}
    keys |= {f"enc_norm{s}" for s in wb} | {f"decoder_embed{s}" for s in wb} | {f"dec_norm{s}" for s in wb}
    enc_parts = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    keys |= {f"enc_blocks.{i}.{p}{s}" for i in range(24) for p in enc_parts for s in wb}
    dec_parts = enc_parts[:3] + tuple(f"cross_attn.{n}" for n in ("projq", "projk", "projv", "proj"))
    dec_parts += ("norm2", "norm3", "norm_y", "mlp.fc1", "mlp.fc2")
    keys |= {f"{d}.{i}.{p}{s}" for d in ("dec_blocks", "dec_blocks2") for i in range(12) for p in dec_parts for s in wb}
    for h in (1, 2):
        dpt = f"downstream_head{h}.dpt"
        act = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1)]
        keys |= {f"{dpt}.act_postprocess.{a}.{b}{s}" for a, b in act for s in wb}
        keys |= {f"{dpt}.scratch.layer{k}_rn.weight" for k in range(1, 5)}
        keys |= {f"{dpt}.scratch.layer_rn.{k}.weight" for k in range(4)}
        convs = ("out_conv", "resConfUnit1.conv1", "resConfUnit1.conv2", "resConfUnit2.conv1", "resConfUnit2.conv2")
        keys |= {f"{dpt}.scratch.refinenet{k}.{c}{s}" for k in range(1, 5) for c in convs for s in wb}
        keys |= {f"{dpt}.head.{k}{s}" for k in (0, 2, 4) for s in wb}
    return keys


def test_full_model_has_the_reference_key_set_and_size() -> None:
    config = Dust3rConfig.from_dict(OFFICIAL_CONFIG)
    assert config == Dust3rConfig()
    with torch.device("meta"):
        model = Dust3r(config)
    state = model.state_dict()
    expected = expected_reference_keys()
    assert set(state) == expected, (sorted(set(state) - expected)[:5], sorted(expected - set(state))[:5])
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["patch_embed.proj.weight"] == (1024, 3, 16, 16)
    assert shapes["mask_token"] == (1, 1, 768)
    assert shapes["decoder_embed.weight"] == (768, 1024)
    assert shapes["enc_blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert shapes["dec_blocks2.11.cross_attn.projk.weight"] == (768, 768)
    assert shapes["downstream_head1.dpt.act_postprocess.0.0.weight"] == (96, 1024, 1, 1)
    assert shapes["downstream_head2.dpt.act_postprocess.3.1.weight"] == (768, 768, 3, 3)
    assert shapes["downstream_head1.dpt.scratch.layer_rn.3.weight"] == (256, 768, 3, 3)
    assert shapes["downstream_head1.dpt.head.2.weight"] == (128, 128, 3, 3)
    assert shapes["downstream_head2.dpt.head.4.weight"] == (4, 128, 1, 1)
    count = sum(p.numel() for p in model.parameters())  # shared DPT convs counted once
    print(f"DUSt3R ViT-L/ViT-B/DPT parameters: {count:,}")
    assert 565_000_000 < count < 575_000_000  # 2.28 GB of float32


def test_config_parsing() -> None:
    as_json = json.loads(json.dumps(OFFICIAL_CONFIG))  # -Infinity / Infinity round trip
    assert Dust3rConfig.from_dict(as_json) == Dust3rConfig()
    strings = dict(OFFICIAL_CONFIG, depth_mode=["exp", "-Infinity", "Infinity"], conf_mode=["exp", 1, "inf"])
    assert Dust3rConfig.from_dict(strings) == Dust3rConfig()
    assert Dust3rConfig.from_dict(dict(OFFICIAL_CONFIG, mask_ratio=0.9, _name_or_path="x")) == Dust3rConfig()
    tiny = Dust3rConfig.tiny()
    assert Dust3rConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    with pytest.raises(ValueError, match="unknown DUSt3R config key"):
        Dust3rConfig.from_dict(dict(OFFICIAL_CONFIG, enc_width=3))
    with pytest.raises(ValueError, match="linear"):
        Dust3rConfig.from_dict(dict(OFFICIAL_CONFIG, head_type="linear"))


# --- preprocessing -------------------------------------------------------------------------------


def test_preprocess_matches_dust3r_load_images() -> None:
    images = random_images(2, side=100, seed=3)
    pre = preprocess(images, size=512)  # square_ok: 512 x 512
    assert pre.images.shape == (2, 3, 512, 512)
    assert float(pre.images.min()) >= -1.0 and float(pre.images.max()) <= 1.0
    torch.testing.assert_close(pre.pixel_transform, torch.tensor([[5.12, 0, 0], [0, 5.12, 0], [0, 0, 1.0]]))
    cropped = preprocess(images, size=512, square_ok=False)  # DUSt3R's default for square: 4:3
    assert cropped.images.shape == (2, 3, 384, 512)
    assert float(cropped.pixel_transform[1, 2]) == -64.0
    assert preprocess(images, size=224).images.shape == (2, 3, 224, 224)
    # No resampling at the native size: exactly ToTensor then Normalize(0.5, 0.5).
    same = preprocess(random_images(1, side=64), size=64)
    expected = torch.from_numpy(random_images(1, side=64)).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
    torch.testing.assert_close(same.images, expected)


# --- weights -------------------------------------------------------------------------------------


def save_folder(model: Dust3r, folder: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file(shared_free_state_dict(model) if state is None else state, str(folder / "model.safetensors"))
    return folder


def test_load_from_folder_reproduces_outputs(tiny: Dust3r, tmp_path: Path) -> None:
    folder = save_folder(tiny, tmp_path / "dust3r")
    loaded = load_dust3r(str(folder))
    x = preprocess(random_images(2), size=64).images
    with torch.no_grad():
        a, b = tiny(x[:1], x[1:]), loaded(x[:1], x[1:])
    for ra, rb in zip(a, b):
        for key in ra:
            assert torch.equal(ra[key], rb[key]), key
    # The shared DPT convs stay shared after loading.
    head = loaded.downstream_head1.dpt.scratch
    assert head.layer_rn[2].weight is head.layer3_rn.weight


def test_load_accepts_either_alias_and_reports_bad_keys(tiny: Dust3r, tmp_path: Path) -> None:
    state = tiny.state_dict()
    only_alias = {k: v.contiguous() for k, v in state.items() if "_rn.weight" not in k or "layer_rn." in k}
    assert not any("layer1_rn" in k for k in only_alias)
    load_dust3r(str(save_folder(tiny, tmp_path / "alias", only_alias)))

    missing = shared_free_state_dict(tiny)
    del missing["enc_blocks.1.mlp.fc2.bias"]
    with pytest.raises(Avat3rError, match=r"1 missing key\(s\): enc_blocks\.1\.mlp\.fc2\.bias"):
        load_dust3r(str(save_folder(tiny, tmp_path / "missing", missing)))

    extra = dict(shared_free_state_dict(tiny), prediction_head_weight=torch.zeros(3))
    with pytest.raises(Avat3rError, match=r"1 unexpected key\(s\): prediction_head_weight"):
        load_dust3r(str(save_folder(tiny, tmp_path / "extra", extra)))

    folder = save_folder(tiny, tmp_path / "truncated")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="corrupt or truncated"):
        load_dust3r(str(folder))


def test_load_from_offline_hub_cache(tiny: Dust3r, tmp_path: Path, hub_cache: Path) -> None:
    add_hub_repo(hub_cache, REPO, save_folder(tiny, tmp_path / "src"))
    loaded = load_dust3r(REPO)
    assert torch.equal(loaded.enc_blocks[0].attn.qkv.weight, tiny.enc_blocks[0].attn.qkv.weight)


def test_offline_without_cache_says_how_to_download(hub_cache: Path) -> None:
    with pytest.raises(Avat3rError) as info:
        load_dust3r(REPO)
    assert str(info.value) == f"DUSt3R weights '{REPO}' are not downloaded; run: avat3r weights download dust3r"
    with pytest.raises(Avat3rError, match="HF_HUB_OFFLINE is set"):
        download_dust3r(REPO)  # the download command explains instead of pointing at itself


# --- alignment -----------------------------------------------------------------------------------

SPHERE_RADIUS = 0.05  # a 10 cm object ...
PLANE_Z = 0.08  # ... in front of a wall


def synthetic_cameras(side: int, yaws: tuple[float, ...] = (-25.0, 0.0, 25.0)) -> list[Camera]:
    K = intrinsics_from_fov(20.0, side, side)
    cams = []
    for n, yaw in enumerate(yaws):
        a = math.radians(yaw)
        eye = torch.tensor([0.5 * math.sin(a), -0.03 * (n - 1), -0.5 * math.cos(a)])
        cams.append(Camera(K.clone(), look_at(eye, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])), side, side))
    return cams


def true_depth(K: torch.Tensor, w2c: torch.Tensor, side: int) -> torch.Tensor:
    """``[V, H, W]`` z-depth of the sphere (or the wall behind it) for each camera."""
    ones = torch.ones(K.shape[0], side, side)
    dirs = backproject(ones, K, w2c) - backproject(torch.zeros_like(ones), K, w2c)  # world ray per unit z
    centre = torch.linalg.inv(w2c)[:, :3, 3][:, None, None, :]
    a, b = (dirs * dirs).sum(-1), 2 * (centre * dirs).sum(-1)
    c = (centre * centre).sum(-1) - SPHERE_RADIUS**2
    disc = b * b - 4 * a * c
    t_sphere = (-b - disc.clamp(min=0).sqrt()) / (2 * a)
    t_plane = (PLANE_Z - centre[..., 2]) / dirs[..., 2]
    return torch.where(disc > 0, t_sphere, t_plane)


def fake_pairwise(cams: list[Camera], side: int, seed: int = 0, tilt_deg: float = 0.5) -> PairwiseResult:
    """DUSt3R-like predictions from the true geometry: per-pair unknown scale, small tilt, noise."""
    g = torch.Generator().manual_seed(seed)
    K = torch.stack([c.K for c in cams])
    w2c = torch.stack([c.world_to_cam for c in cams])
    world = backproject(true_depth(K, w2c, side), K, w2c)
    pairs = make_pairs(len(cams))
    out: dict[str, list[torch.Tensor]] = {"pts_i": [], "pts_j": [], "conf_i": [], "conf_j": []}
    for i, j in pairs:
        scale = float(torch.empty(1).uniform_(0.5, 2.0, generator=g))
        axis = torch.nn.functional.normalize(torch.randn(3, generator=g), dim=0)
        angle = math.radians(tilt_deg)
        skew = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        tilt = torch.linalg.matrix_exp(angle * skew)  # DUSt3R never agrees exactly with the cameras
        for key, v in (("pts_i", i), ("pts_j", j)):
            cam_i = world[v] @ w2c[i, :3, :3].T + w2c[i, :3, 3]
            noise = 0.0005 * torch.randn(cam_i.shape, generator=g)
            out[key].append((cam_i @ tilt.T + noise) / scale)
        for key in ("conf_i", "conf_j"):
            out[key].append(1.5 + 8.5 * torch.rand(side, side, generator=g))
    stacked = {k: torch.stack(v) for k, v in out.items()}
    return PairwiseResult(pairs=pairs, pixel_transform=torch.eye(3), **stacked)


def test_alignment_recovers_known_geometry() -> None:
    side = 32
    cams = synthetic_cameras(side)
    fake = fake_pairwise(cams, side)
    K = torch.stack([c.K for c in cams])
    w2c = torch.stack([c.world_to_cam for c in cams])
    truth = backproject(true_depth(K, w2c, side), K, w2c)
    result = align_known_cameras(fake.pairs, fake.pts_i, fake.pts_j, fake.conf_i, fake.conf_j, K, w2c, iterations=100)
    error = (result.points - truth).norm(dim=-1)
    assert float(error.median()) < 0.002, float(error.median())
    start = align_known_cameras(fake.pairs, fake.pts_i, fake.pts_j, fake.conf_i, fake.conf_j, K, w2c, iterations=0)
    assert result.loss < start.loss  # the optimisation improves on the closed-form start
    assert result.confidence.shape == (3, side, side) and float(result.confidence.min()) >= 1.5


def test_single_view_scale_comes_from_the_camera_distance() -> None:
    side = 24
    cams = synthetic_cameras(side, yaws=(10.0,))
    fake = fake_pairwise(cams, side, tilt_deg=0.0)
    K = torch.stack([c.K for c in cams])
    w2c = torch.stack([c.world_to_cam for c in cams])
    result = align_known_cameras(fake.pairs, fake.pts_i, fake.pts_j, fake.conf_i, fake.conf_j, K, w2c, iterations=10)
    distance = float(torch.linalg.norm(cams[0].center))
    assert abs(float(result.depth.median()) - distance) < 0.01 * distance
    truth = true_depth(K, w2c, side)
    # Metric scale is unobservable from one view, but the shape (relative depth) survives.
    torch.testing.assert_close(result.depth / result.depth.median(), truth / truth.median(), atol=0.01, rtol=0)


def test_position_maps_at_crop_resolution(monkeypatch: pytest.MonkeyPatch, tiny: Dust3r) -> None:
    crop, net = 48, 64  # the tiny model runs at 64: the maps come back resampled to 48
    cams = synthetic_cameras(crop)
    scale = torch.diag(torch.tensor([net / crop, net / crop, 1.0]))
    net_cams = [Camera(scale @ c.K, c.world_to_cam, net, net) for c in cams]
    fake = fake_pairwise(net_cams, net, tilt_deg=0.0)
    fake.pixel_transform = scale
    monkeypatch.setattr(backend_module, "pairwise", lambda *args, **kwargs: fake)
    positions, confidence = dust3r_position_maps(random_images(3, side=crop), cams, tiny, iterations=60)
    assert positions.shape == (3, 3, crop, crop) and confidence.shape == (3, 1, crop, crop)
    K = torch.stack([c.K for c in cams])
    w2c = torch.stack([c.world_to_cam for c in cams])
    truth = backproject(true_depth(K, w2c, crop), K, w2c).permute(0, 3, 1, 2)
    error = (positions - truth).norm(dim=1)
    assert float(error.median()) < 0.002, float(error.median())
    assert float(confidence.min()) > 0.3 and float(confidence.max()) < 1.0


def test_position_maps_with_the_tiny_network(tiny: Dust3r) -> None:
    cams = synthetic_cameras(32, yaws=(-20.0, 20.0))
    positions, confidence = dust3r_position_maps(random_images(2, side=32), cams, tiny, iterations=5)
    assert positions.shape == (2, 3, 32, 32) and positions.dtype == torch.float32
    assert torch.isfinite(positions).all()
    assert float(confidence.min()) >= 0.0 and float(confidence.max()) <= 1.0
    with pytest.raises(ValueError, match="2 crops but 1 cameras"):
        dust3r_position_maps(random_images(2, side=32), cams[:1], tiny)


def test_confidence_normalisation_and_licence() -> None:
    raw = torch.tensor([1.0, 2.0, 3.0, 1e6])
    torch.testing.assert_close(normalise_confidence(raw), torch.tensor([0.0, 0.5, 2.0 / 3.0, 1.0 - 1e-6]))
    logits = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(normalise_confidence(1 + logits.exp()), torch.sigmoid(logits))
    assert "CC BY-NC-SA 4.0" in DUST3R_LICENCE_NOTICE and "non-commercial" in DUST3R_LICENCE_NOTICE
