"""Expression emphasis and fine-tuning: pixel-weighted L1, the changed-pixel weights, ``--init``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_fixtures import invoke, one_thread  # noqa: F401
from test_train import R, config, fixed_sample, make_tiny_dataset, read_log
from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.core.expressions import EXPRESSION_INDEX
from avat3r_cli.data.prepared import PreparedSubject, prepared_name
from avat3r_cli.data.sampler import SampleSpec
from avat3r_cli.io.weights import save_model
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import get_preset
from avat3r_cli.pipeline.models import load_avat3r
from avat3r_cli.train.emphasis import changed_pixel_weights, reference_timestep
from avat3r_cli.train.losses import photometric_loss, ssim
from avat3r_cli.train.step import composite_targets
from avat3r_cli.train.trainer import train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def base_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "base"
    train(config(dataset, run))
    return run


def test_pixel_weights_scale_the_l1_term_only():
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 24, 24, generator=gen), torch.rand(2, 3, 24, 24, generator=gen)
    plain = photometric_loss(x, y)
    ones = photometric_loss(x, y, pixel_weights=torch.ones(2, 1, 24, 24))
    assert float(ones.total) == pytest.approx(float(plain.total), rel=1e-6)
    w = torch.ones(2, 1, 24, 24)
    w[:, :, :8] = 5.0
    weighted = photometric_loss(x, y, pixel_weights=w)
    expected = 0.8 * ((x - y).abs() * w).mean() + 0.2 * (1 - ssim(x, y))
    assert float(weighted.total) == pytest.approx(float(expected), rel=1e-6)
    assert float(weighted.l1) == pytest.approx(float(plain.l1))  # the log keeps the plain L1


def test_reference_timestep_is_the_first_input_timestep_unlike_the_target():
    assert reference_timestep(SampleSpec((1, 1, 2, 0), (0, 1, 2, 3), 1, (4,))) == 2
    assert reference_timestep(SampleSpec((0, 2), (0, 1), 1, (4,))) == 0
    assert reference_timestep(SampleSpec((1, 1), (0, 1), 1, (4,))) is None


def test_changed_pixel_weights_mark_the_moving_jaw(dataset):
    subject = PreparedSubject(dataset / "subj_0" / prepared_name(R, "template"))
    spec = SampleSpec((0, 0, 0, 0), (0, 1, 2, 3), 2, (0, 3))  # the toy jaw drops fully from t0 to t2
    bg = torch.tensor([0.2, 0.3, 0.4])
    views = subject.views([2, 2], [0, 3])
    target = composite_targets(views["images"], views["masks"], bg)
    weights = changed_pixel_weights(subject, spec, target, bg, 4.0)
    assert weights is not None and weights.shape == (2, 1, R, R)
    assert set(torch.unique(weights).tolist()) == {1.0, 5.0}
    changed = float((weights > 1).float().mean())
    assert 0.003 < changed < 0.2, changed  # the jaw, not the whole head
    assert changed_pixel_weights(subject, spec, target, bg, 0.0) is None
    same = SampleSpec((2, 2, 2, 2), (0, 1, 2, 3), 2, (0, 3))
    assert changed_pixel_weights(subject, same, target, bg, 4.0) is None


def test_init_from_starts_from_those_weights(dataset, base_run, tmp_path):
    run = tmp_path / "fine"
    train(config(dataset, run, init_from=str(base_run / "model"), lr=0.0, changed_weight=3.0))
    a, _ = load_avat3r(str(base_run / "model"))
    b, _ = load_avat3r(str(run / "model"))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name  # lr 0: nothing moved
    assert all(np.isfinite(r["loss"]) for r in read_log(run))


def test_init_from_weights_without_the_modulation_adds_it_at_identity(dataset, tmp_path):
    old = Avat3r(get_preset("tiny").replace(expression_modulation=False))
    save_model(old, tmp_path / "old")
    run = tmp_path / "run"
    train(config(dataset, run, init_from=str(tmp_path / "old"), lr=0.0))
    new, info = load_avat3r(str(run / "model"))
    assert info.config["expression_modulation"]
    # Everything but the code statistics, which the run folds into the code's first layer, and the
    # neutral code, which the run records from its own data.
    folded = ("expression_mean", "expression_std", "transformer.expression.mlp.0.weight", "transformer.expression.mlp.0.bias",
              "neutral_expression")
    for name, tensor in old.state_dict().items():
        assert name in folded or torch.equal(tensor, new.state_dict()[name]), name
    assert not new.modulation.mlp[2].weight.detach().any()
    old.eval()
    sample = fixed_sample(dataset)
    with torch.no_grad():  # the same function: the modulation is the identity, the folding exact
        a, b = old(sample.inputs, sample.expression), new(sample.inputs, sample.expression)
    torch.testing.assert_close(a.means, b.means, atol=1e-5, rtol=1e-4)


def test_expression_mixing_joins_weights_trained_without_it(dataset, base_run, tmp_path):
    run = tmp_path / "mixing"
    train(config(dataset, run, init_from=str(base_run / "model"), lr=0.0, expression_mixing=True))
    a, _ = load_avat3r(str(base_run / "model"))
    b, info = load_avat3r(str(run / "model"))
    assert info.config["expression_mixing"] and not a.config.expression_mixing
    assert not b.modulation.mixing.weight.detach().any()  # zero-started: the same function
    sample = fixed_sample(dataset)
    with torch.no_grad():
        ma, mb = a(sample.inputs, sample.expression), b(sample.inputs, sample.expression)
    torch.testing.assert_close(ma.means, mb.means, atol=1e-5, rtol=1e-4)
    moved = tmp_path / "moved"
    train(config(dataset, moved, init_from=str(base_run / "model"), expression_mixing=True))
    c, _ = load_avat3r(str(moved / "model"))
    assert c.modulation.mixing.weight.detach().any()  # and it trains


def test_init_from_weights_of_another_size_is_refused(dataset, base_run, tmp_path):
    with pytest.raises(Avat3rError, match="do not fit preset 'small'"):
        train(config(dataset, tmp_path / "x", init_from=str(base_run / "model"), preset="small"))


def test_init_from_refuses_other_position_maps(dataset, base_run, tmp_path):
    with pytest.raises(Avat3rError, match="--geometry template"):
        train(config(dataset, tmp_path / "x", init_from=str(base_run / "model"), geometry="dust3r"))


def test_train_command_fine_tunes_with_emphasis(dataset, base_run, tmp_path):
    run = tmp_path / "cli"
    result = invoke("train", "--data", dataset, "-o", run, "--init", base_run / "model", "--changed-weight", "4",
                    "--expression-mixing", "--expression-field",
                    "--steps", "2", "--val-subjects", "1", "--validate-every", "0", "--checkpoint-every", "0",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_log(run)] == [1, 2] and (run / "model" / "model.safetensors").is_file()
    written = json.loads((run / "model" / "config.json").read_text())
    assert written["expression_mixing"] and written["expression_field"]
    missing = invoke("train", "--data", dataset, "-o", tmp_path / "y", "--init", tmp_path / "nowhere")
    assert missing.exit_code == 1 and "nowhere" in missing.output


def test_reinit_redraws_only_the_named_submodule(dataset, base_run, tmp_path):
    run = tmp_path / "reinit"
    train(config(dataset, run, init_from=str(base_run / "model"), lr=0.0, reinit=("transformer.expression",)))
    a, _ = load_avat3r(str(base_run / "model"))
    b, _ = load_avat3r(str(run / "model"))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        if name.startswith("transformer.expression."):
            assert not torch.equal(pa, pb), name
        else:
            assert torch.equal(pa, pb), name


def test_reinit_needs_init_and_an_existing_submodule(dataset, base_run, tmp_path):
    with pytest.raises(Avat3rError, match="--init"):
        train(config(dataset, tmp_path / "a", reinit=("transformer.expression",)))
    with pytest.raises(Avat3rError, match="no such submodule"):
        train(config(dataset, tmp_path / "b", init_from=str(base_run / "model"), reinit=("transformer.nothing",)))


def test_a_run_records_its_training_codes_statistics(base_run):
    model, _ = load_avat3r(str(base_run / "model"))
    jaw = 25  # jawOpen: the toy subjects' only moving channel (0, 0.5, 1 per subject)
    assert float(model.expression_mean[jaw]) == pytest.approx(0.5, abs=1e-6)
    assert float(model.expression_std[jaw]) == pytest.approx((1 / 6) ** 0.5, rel=1e-5)
    assert float(model.expression_std[0]) == pytest.approx(0.05)  # constant channel: the floor
    # The neutral code: the median of the training subjects' first timesteps (subj_0 and subj_1,
    # jaw closed, eyeSquintLeft 0.3 and 0.4), not the mean over all their codes (jawOpen 0.5).
    expected = torch.zeros(52)
    expected[EXPRESSION_INDEX["eyeSquintLeft"]] = 0.35
    torch.testing.assert_close(model.neutral_expression, expected, atol=1e-6, rtol=0)
