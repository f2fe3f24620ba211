"""Tests for Sapiens features (preprocess/sapiens.py) with tiny stand-in TorchScript modules.

The real checkpoints are GBs; a scripted Conv2d(3, C, 16, stride 16) has the same interface
([B, 3, H, W] -> [B, C, H/16, W/16]). Hub loading runs against a hand-made Hugging Face cache in
tmp_path with HF_HUB_OFFLINE set, so no test touches the network.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.preprocess import sapiens
from avat3r_cli.io.verify import sha256_file
from avat3r_cli.preprocess.sapiens import (
    SAPIENS_LICENCE_NOTICE,
    SAPIENS_MEAN,
    SAPIENS_PINS,
    SAPIENS_STD,
    SAPIENS_VARIANTS,
    SapiensPin,
    check_feature_backend,
    extract_features,
    feature_backend_name,
    load_sapiens,
    preprocess_for_sapiens,
)

from hub_cache import COMMIT, add_hub_files

REPO_2B, FILE_2B, DIM_2B = SAPIENS_VARIANTS["sapiens-2b"]
# Building the stand-ins uses torch.jit.script/save, which torch now marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:DeprecationWarning")


class TupleOut(nn.Module):
    """Like the released models: returns ``(feat,)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=16, stride=16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.conv(x),)


def stand_in(path: Path, channels: int = DIM_2B) -> Path:
    """A scripted stand-in for a Sapiens checkpoint, saved with torch.jit.save."""
    torch.manual_seed(0)
    scripted = torch.jit.script(TupleOut(channels).eval())
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))
    return path


def pinned_in_cache(cache: Path, monkeypatch: pytest.MonkeyPatch, variant: str, source: Path) -> Path:
    """``source`` as the variant's hub file at a test commit, with that commit and its sha256 pinned."""
    repo, filename, _ = SAPIENS_VARIANTS[variant]
    monkeypatch.setitem(SAPIENS_PINS, variant, SapiensPin(COMMIT, sha256_file(source)))
    return add_hub_files(cache, repo, {filename: source}) / filename


def crops(v: int = 2, r: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(v, r, r, 3), dtype=np.uint8)


def test_variants_table_matches_the_reference() -> None:
    assert SAPIENS_VARIANTS == {
        "sapiens-0.3b": ("facebook/sapiens-pretrain-0.3b-torchscript", "sapiens_0.3b_epoch_1600_torchscript.pt2", 1024),
        "sapiens-0.6b": ("facebook/sapiens-pretrain-0.6b-torchscript", "sapiens_0.6b_epoch_1600_torchscript.pt2", 1280),
        "sapiens-1b": ("facebook/sapiens-pretrain-1b-torchscript", "sapiens_1b_epoch_173_torchscript.pt2", 1536),
        "sapiens-2b": ("facebook/sapiens-pretrain-2b-torchscript", "sapiens_2b_epoch_660_torchscript.pt2", 1920),
    }
    assert "\n" not in SAPIENS_LICENCE_NOTICE and "CC BY-NC 4.0" in SAPIENS_LICENCE_NOTICE


def test_every_variant_is_pinned_to_a_commit_and_a_sha256() -> None:
    assert set(SAPIENS_PINS) == set(SAPIENS_VARIANTS)
    for pin in SAPIENS_PINS.values():
        assert re.fullmatch("[0-9a-f]{40}", pin.revision) and re.fullmatch("[0-9a-f]{64}", pin.sha256)
    assert len({pin.sha256 for pin in SAPIENS_PINS.values()}) == len(SAPIENS_PINS)


def test_load_from_hub_cache_and_extract(hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = stand_in(tmp_path / "src" / FILE_2B)
    cached = pinned_in_cache(hub_cache, monkeypatch, "sapiens-2b", source)
    model = load_sapiens("sapiens-2b")
    assert model.variant == "sapiens-2b" and model.embed_dim == DIM_2B
    assert model.path.resolve() == cached.resolve()
    images = crops()
    feats = extract_features(model, images, batch_size=1)
    assert feats.shape == (2, DIM_2B, 64, 64) and feats.dtype == torch.float32

    # The same numbers as running the module on the preprocessed batch directly (batching is exact).
    with torch.no_grad():
        (direct,) = model.module(preprocess_for_sapiens(images))
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-5)

    small = extract_features(model, images, batch_size=2, out_size=(32, 32), out_dtype=torch.float16)
    assert small.shape == (2, DIM_2B, 32, 32) and small.dtype == torch.float16
    expected = torch.nn.functional.interpolate(direct, size=(32, 32), mode="bilinear", antialias=True)
    torch.testing.assert_close(small.float(), expected, rtol=1e-2, atol=1e-2)


def test_preprocessing_numerics() -> None:
    colour = np.array([200, 100, 30], dtype=np.uint8)
    images = np.broadcast_to(colour, (2, 96, 96, 3)).copy()
    x = preprocess_for_sapiens(images)
    assert x.shape == (2, 3, 1024, 1024) and x.dtype == torch.float32
    expected = (colour.astype(np.float64) - np.array(SAPIENS_MEAN)) / np.array(SAPIENS_STD)
    for c in range(3):
        assert torch.allclose(x[:, c], torch.tensor(expected[c], dtype=torch.float32), atol=1e-5)
    # Channel order is RGB as given (no BGR flip): the red channel is first.
    assert x[0, 0, 0, 0].item() == pytest.approx((200 - 123.5) / 58.5, abs=1e-5)

    # Enlarging is bilinear with half-pixel centres (cv2.INTER_LINEAR): a 2-pixel ramp 0 | 255
    # doubled gives 0, 63.75, 191.25, 255 (edges replicated).
    ramp = np.zeros((1, 1, 2, 3), dtype=np.uint8)
    ramp[0, 0, 1] = 255
    row = preprocess_for_sapiens(ramp, size=(1, 4))[0, 0, 0] * SAPIENS_STD[0] + SAPIENS_MEAN[0]
    torch.testing.assert_close(row, torch.tensor([0.0, 63.75, 191.25, 255.0]), rtol=0, atol=1e-3)

    with pytest.raises(ValueError, match="uint8"):
        preprocess_for_sapiens(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[V, H, W, 3\]"):
        preprocess_for_sapiens(images[0])


def test_local_file_and_folder_need_no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub was consulted for a local file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    path = stand_in(tmp_path / "weights" / "renamed.pt2")
    for local in (path, path.parent):
        model = load_sapiens("sapiens-2b", local_path=local)
        assert model.path == path.resolve()
        assert extract_features(model, crops(1)).shape == (1, DIM_2B, 64, 64)
    stand_in(tmp_path / "weights" / "another.pt")
    with pytest.raises(InputFileError, match="single .pt2/.pt file"):
        load_sapiens("sapiens-2b", local_path=path.parent)
    with pytest.raises(InputFileError, match="no such Sapiens file"):
        load_sapiens("sapiens-2b", local_path=tmp_path / "missing.pt2")


def test_not_downloaded_offline_is_one_actionable_line(hub_cache: Path) -> None:
    with pytest.raises(Avat3rError) as info:
        load_sapiens("sapiens-2b")
    message = str(info.value)
    assert message == "Sapiens weights 'sapiens-2b' are not downloaded; run: avat3r weights download sapiens-2b"
    with pytest.raises(Avat3rError, match="HF_HUB_OFFLINE is set"):
        sapiens.download_sapiens("sapiens-2b")


def test_download_finds_a_cached_file_offline(hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, filename, dim = SAPIENS_VARIANTS["sapiens-0.3b"]
    cached = pinned_in_cache(hub_cache, monkeypatch, "sapiens-0.3b", stand_in(tmp_path / "src" / filename, dim))
    assert sapiens.download_sapiens("0.3b").resolve() == cached.resolve()


def test_hub_file_is_fetched_at_the_pin_and_checked_before_loading(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = stand_in(tmp_path / "src" / FILE_2B)
    # The file at the repo's head (another commit) is not what the pin names: never used.
    add_hub_files(hub_cache, REPO_2B, {FILE_2B: source}, commit="f" * 40)
    monkeypatch.setitem(SAPIENS_PINS, "sapiens-2b", SapiensPin(COMMIT, sha256_file(source)))
    with pytest.raises(Avat3rError, match="not downloaded"):
        load_sapiens("sapiens-2b")

    # At the pinned commit, but one byte changed: refused before torch.jit.load sees it.
    changed = tmp_path / "changed" / FILE_2B
    changed.parent.mkdir()
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    cached = add_hub_files(hub_cache, REPO_2B, {FILE_2B: changed}) / FILE_2B

    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load ran on an unverified file")

    monkeypatch.setattr(torch.jit, "load", must_not_load)
    for attempt in (lambda: load_sapiens("sapiens-2b"), lambda: sapiens.download_sapiens("sapiens-2b")):
        with pytest.raises(InputFileError) as info:
            attempt()
        message = str(info.value)
        assert "is not the pinned" in message and "sapiens-2b" in message
        # The advice deletes the blob the snapshot links to, so the next download fetches it anew.
        assert f"delete {cached.resolve()} and run: avat3r weights download sapiens-2b" in message


def test_corrupt_file_names_the_file(tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "broken.pt2"
    good = stand_in(tmp_path / "good" / FILE_2B).read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated mid-download
    with pytest.raises(InputFileError) as info:
        load_sapiens("sapiens-2b", local_path=bad)
    assert str(bad) in str(info.value) and "TorchScript" in str(info.value)

    garbage = tmp_path / "src" / FILE_2B
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"not a zip archive at all")
    pinned_in_cache(hub_cache, monkeypatch, "sapiens-2b", garbage)  # pinned as it is: the reader must refuse it
    with pytest.raises(InputFileError, match=f"{FILE_2B}: not a readable TorchScript"):
        load_sapiens("sapiens-2b")


def test_wrong_channel_count_is_a_clear_error(tmp_path: Path) -> None:
    path = stand_in(tmp_path / "small.pt2", channels=8)
    model = load_sapiens("sapiens-2b", local_path=path)
    with pytest.raises(Avat3rError, match="8-channel features, expected 1920"):
        extract_features(model, crops(1))
    # A bare module is checked against embed_dim when given.
    with pytest.raises(Avat3rError, match="expected 16"):
        extract_features(model.module, crops(1), embed_dim=16)
    assert extract_features(model.module, crops(1), size=(32, 48)).shape == (1, 8, 2, 3)


def test_feature_backend_names_and_checks() -> None:
    assert feature_backend_name("none") == "none"
    assert feature_backend_name("sapiens") == "sapiens-2b"
    assert feature_backend_name("1B") == "sapiens-1b"
    with pytest.raises(Avat3rError, match="unknown features 'dino'"):
        feature_backend_name("dino")

    assert check_feature_backend("sapiens-2b", "sapiens-2b") == "sapiens-2b"
    assert check_feature_backend("sapiens-1b", "sapiens") == "sapiens-1b"  # bare name takes the model's
    assert check_feature_backend("none", "none") == "none"
    with pytest.raises(Avat3rError) as info:
        check_feature_backend("sapiens-2b", "none")
    assert str(info.value) == "these weights expect --features sapiens-2b, got none"
    with pytest.raises(Avat3rError, match="expect --features none .*, got sapiens-2b"):
        check_feature_backend("none", "sapiens")
    with pytest.raises(Avat3rError, match="expect --features sapiens-2b, got sapiens-0.3b"):
        check_feature_backend("sapiens-2b", "sapiens-0.3b")


def test_import_is_light() -> None:
    """The CLI reads FEATURE_CHOICES while parsing; that must not import torch."""
    code = (
        "import sys, avat3r_cli.preprocess.sapiens as s\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(s.FEATURE_CHOICES)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "sapiens-2b" in result.stdout
