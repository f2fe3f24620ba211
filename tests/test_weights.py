"""Tests for weights on disk and on the hub (io/weights.py, io/registry.py) and their CLI commands.

Hub loading runs against a hand-made Hugging Face cache in tmp_path with HF_HUB_OFFLINE set, so
no test touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from avat3r_cli.cli import models_cmd, weights_cmd
from avat3r_cli.core.errors import Avat3rError, InputFileError
from avat3r_cli.io import registry
from avat3r_cli.io.registry import WeightsEntry
from avat3r_cli.io.weights import load_model, parse_hub_spec, save_model, sha256_file
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset

from hub_cache import COMMIT, add_hub_repo


def load(spec: str):
    """``load_model`` with the Avat3r builder (what L2+ callers pass)."""
    return load_model(spec, Avat3r.from_config_dict)


@pytest.fixture(scope="module")
def model() -> Avat3r:
    torch.manual_seed(0)
    return Avat3r(get_preset("tiny")).eval()


@pytest.fixture()
def saved(tmp_path: Path, model: Avat3r) -> Path:
    return save_model(model, tmp_path / "my-model")


def entry_for(folder: Path, name: str = "tiny-test", repo: str = "org/name", **changes: object) -> WeightsEntry:
    files = tuple((p.name, sha256_file(p)) for p in sorted(folder.iterdir()))
    fields = dict(
        name=name, preset="tiny", licence="Apache-2.0", geometry_backend="dust3r", feature_backend="none",
        description="test weights", repo=repo, revision=COMMIT, files=files,
    )
    fields.update(changes)
    return WeightsEntry(**fields)


def assert_same_model(a: Avat3r, b: Avat3r) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_save_load_exact(tmp_path: Path, model: Avat3r, saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    loaded, info = load(str(saved))
    assert_same_model(model, loaded)
    assert loaded.config == model.config
    assert info.source == f"folder:{saved.resolve()}"
    assert info.sha256 == sha256_file(saved / "model.safetensors")
    assert info.parameters == model.num_parameters()
    assert not info.verified and info.licence is None
    from test_model import expression, make_inputs

    x = make_inputs(model.config, 2)
    with torch.no_grad():
        # Same weights, but not always bitwise-equal outputs: two copies of a tensor can sit at
        # different alignments and take different SIMD paths (seen: 3e-8).
        torch.testing.assert_close(model(x, expression(0)).means, loaded(x, expression(0)).means, rtol=0, atol=1e-6)
    # Saving again replaces a folder of model files.
    save_model(loaded, saved)
    # The model file itself is accepted as a spec.
    assert_same_model(model, load(str(saved / "model.safetensors"))[0])


def test_save_refuses_a_folder_with_other_files(tmp_path: Path, model: Avat3r) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(Avat3rError, match="refusing to overwrite.*keep.txt"):
        save_model(model, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_local_folder_is_recognised_before_any_hub_call(
    tmp_path: Path, model: Avat3r, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub was called for a local folder")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    save_model(model, tmp_path / "org" / "name")
    monkeypatch.chdir(tmp_path)
    assert parse_hub_spec("org/name") == ("org/name", None)  # it looks like a hub repo ...
    loaded, info = load("org/name")  # ... but the folder wins
    assert info.source.startswith("folder:")
    assert_same_model(model, loaded)


def test_strict_key_check_lists_missing_and_unexpected(saved: Path) -> None:
    path = saved / "model.safetensors"
    state = load_file(path)
    state.pop("heads.proj.weight")
    state["extra.weight"] = torch.zeros(2)
    state["upsampler.norm.bias"] = torch.zeros(7)
    save_file(state, str(path))
    with pytest.raises(Avat3rError) as err:
        load(str(saved))
    message = str(err.value)
    assert "1 missing key(s): heads.proj.weight" in message
    assert "1 unexpected key(s): extra.weight" in message
    assert "upsampler.norm.bias [7] vs [48]" in message
    assert "\n" not in message


def test_long_key_lists_are_truncated(saved: Path) -> None:
    path = saved / "model.safetensors"
    state = load_file(path)
    dropped = [k for k in sorted(state) if k.startswith("transformer.blocks.")][:20]
    for key in dropped:
        state.pop(key)
    save_file(state, str(path))
    with pytest.raises(Avat3rError, match=r"20 missing key\(s\): .*\.\.\. and 12 more"):
        load(str(saved))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_weights(saved: Path, damage: str) -> None:
    path = saved / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x07" * 1000)
    else:
        path.write_bytes(b"")
    with pytest.raises(InputFileError, match="model.safetensors.*corrupt or truncated"):
        load(str(saved))


def test_config_errors(saved: Path) -> None:
    config_path = saved / "config.json"
    data = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**data, "bogus_key": 3, "other": 1}))
    with pytest.raises(InputFileError, match="config.json: unknown model config key.*bogus_key, other"):
        load(str(saved))
    config_path.write_text("{not json")
    with pytest.raises(InputFileError, match="config.json: not valid JSON"):
        load(str(saved))
    config_path.unlink()
    with pytest.raises(InputFileError, match="config.json: missing"):
        load(str(saved))


def test_hub_loading_from_the_cache_offline(hub_cache: Path, saved: Path, model: Avat3r) -> None:
    add_hub_repo(hub_cache, "org/name", saved)
    for spec in ("org/name", f"org/name@{COMMIT}", "org/name@main"):
        loaded, info = load(spec)
        assert_same_model(model, loaded)
        assert info.folder == hub_cache / "models--org--name" / "snapshots" / COMMIT
        assert info.source == "hf://" + spec
        assert info.sha256 == sha256_file(saved / "model.safetensors")


def test_offline_miss_is_one_actionable_line(hub_cache: Path) -> None:
    with pytest.raises(Avat3rError) as err:
        load("org/missing")
    assert str(err.value) == "weights 'org/missing' are not downloaded; run: avat3r weights download org/missing"


def test_unknown_spec_names_the_options(hub_cache: Path) -> None:
    with pytest.raises(Avat3rError, match="not a folder, a registered name"):
        load("./no/such/folder")


def test_registered_weights_are_verified(hub_cache: Path, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_hub_repo(hub_cache, "org/name", saved)
    monkeypatch.setattr(registry, "REGISTRY", (entry_for(saved),))
    _, info = load("tiny-test")
    assert info.verified and info.licence == "Apache-2.0"
    assert info.source == f"hf://org/name@{COMMIT}"
    bad = entry_for(saved, files=(("config.json", sha256_file(saved / "config.json")), ("model.safetensors", "0" * 64)))
    monkeypatch.setattr(registry, "REGISTRY", (bad,))
    with pytest.raises(Avat3rError, match="model.safetensors has sha256 .* expected 0000"):
        load("tiny-test")


def test_registered_but_not_downloaded(hub_cache: Path, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "REGISTRY", (entry_for(saved),))
    with pytest.raises(Avat3rError) as err:
        load("tiny-test")
    assert str(err.value) == "weights 'tiny-test' are not downloaded; run: avat3r weights download tiny-test"


# -- CLI ------------------------------------------------------------------------------------------


def test_weights_cli_list_download_verify(hub_cache: Path, saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setattr(registry, "REGISTRY", ())
    result = runner.invoke(weights_cmd.app, ["list"])
    assert result.exit_code == 0 and "none registered" in result.output and "dust3r" in result.output

    monkeypatch.setattr(registry, "REGISTRY", (entry_for(saved),))
    result = runner.invoke(weights_cmd.app, ["list", "--json"])
    rows = [json.loads(line) for line in result.output.splitlines()]
    row = rows[0]  # the Avat3r models come first, then the preprocessing models
    assert row["name"] == "tiny-test" and row["status"] == "not downloaded"
    assert {"face-landmarker", "dust3r", "sapiens-2b"} <= {r["name"] for r in rows}
    result = runner.invoke(weights_cmd.app, ["download", "tiny-test"])
    assert isinstance(result.exception, Avat3rError)
    assert "not in the hub cache" in str(result.exception) and "HF_HUB_OFFLINE is set" in str(result.exception)

    add_hub_repo(hub_cache, "org/name", saved)
    first = runner.invoke(weights_cmd.app, ["list", "--json"]).output.splitlines()[0]
    assert json.loads(first)["status"] == "cached"
    result = runner.invoke(weights_cmd.app, ["download", "tiny-test"])
    assert result.exit_code == 0 and "sha256 verified" in result.output
    result = runner.invoke(weights_cmd.app, ["verify"])
    assert result.exit_code == 0 and "tiny-test: ok" in result.output
    result = runner.invoke(weights_cmd.app, ["verify", str(saved)])
    assert result.exit_code == 0 and "no registered hashes" in result.output

    blob = (hub_cache / "models--org--name" / "snapshots" / COMMIT / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-10])
    result = runner.invoke(weights_cmd.app, ["verify", "tiny-test"])
    assert result.exit_code == 1 and "FAILED" in result.output and "sha256" in result.output


def test_models_cli_lists_presets_and_weights(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    monkeypatch.setattr(registry, "REGISTRY", (entry_for(saved),))
    app = typer.Typer()
    app.command("models")(models_cmd.models)
    runner = CliRunner()
    result = runner.invoke(app, ["--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    by_name = {r["name"]: r for r in rows}
    assert {"tiny", "small", "base", "paper", "tiny-test"} <= set(by_name)
    assert all("parameters" in r for r in rows)
    with torch.device("meta"):
        assert by_name["paper"]["parameters"] == Avat3r(get_preset("paper")).num_parameters()
    assert by_name["paper"]["feature_backend"] == "sapiens-2b"
    assert by_name["tiny-test"]["licence"] == "Apache-2.0"
    text = runner.invoke(app, []).output
    assert "paper" in text and "151.0M" in text


def test_weights_saved_before_the_code_statistics_load_with_identity_ones(tmp_path):
    from safetensors.torch import load_file, save_file

    from avat3r_cli.model.avat3r import Avat3r
    from avat3r_cli.model.config import get_preset
    from avat3r_cli.io.weights import load_model, save_model

    save_model(Avat3r(get_preset("tiny")), tmp_path / "m")
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    del state["expression_mean"], state["expression_std"]
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    model, _ = load_model(str(tmp_path / "m"), Avat3r.from_config_dict)
    assert not model.expression_mean.any() and bool((model.expression_std == 1).all())
