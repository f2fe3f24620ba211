"""The model a training run starts from: the preset with the run's options, fresh or from weights.

``--init`` weights need not match the preset exactly: tensors they lack (the expression
modulation, the anchor Gaussians) start fresh, and ``gaussian_upsample`` adds no tensors at all,
so weights trained with one Gaussian per network pixel start a run with more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.weights import WEIGHTS_FILE, read_config, read_state_dict, resolve_verified
from avat3r_cli.model.avat3r import Avat3r
from avat3r_cli.model.config import ModelConfig, get_preset

if TYPE_CHECKING:
    from avat3r_cli.train.trainer import TrainConfig


def model_config(cfg: TrainConfig) -> ModelConfig:
    """``cfg.preset`` reading ``cfg.geometry`` maps, with the expression mixing / field when asked
    for, and ``cfg.anchor_gaussians`` anchors and ``cfg.gaussian_upsample`` when given."""
    config = get_preset(cfg.preset)
    anchors = config.anchor_gaussians if cfg.anchor_gaussians is None else cfg.anchor_gaussians
    upsample = config.gaussian_upsample if cfg.gaussian_upsample is None else cfg.gaussian_upsample
    # Every preset has the modulation the mixing extends.
    try:
        return config.replace(
            geometry_backend=cfg.geometry,
            expression_mixing=config.expression_mixing or cfg.expression_mixing,
            expression_field=config.expression_field or cfg.expression_field,
            anchor_gaussians=anchors,
            gaussian_upsample=upsample,
        )
    except ValueError as exc:
        raise Avat3rError(str(exc)) from None


def place_anchors(model: Avat3r) -> Avat3r:
    """``model`` with its anchor queries on the template head (a no-op without anchors)."""
    if model.anchors is None:
        return model
    from avat3r_cli.preprocess.anchor_points import anchor_points

    try:
        points = anchor_points(model.config.anchor_gaussians)
    except ValueError as exc:
        raise Avat3rError(f"--anchor-gaussians: {exc}") from None
    model.set_anchor_points(torch.from_numpy(points.copy()))
    return model


def initial_weights(cfg: TrainConfig, device: torch.device) -> Avat3r:
    """``cfg.preset``'s model with the tensors of ``cfg.init_from`` copied in.

    Every tensor of the weights must fit the preset by name and shape; tensors the weights lack
    (a module the preset adds, e.g. the expression modulation, which starts as the identity, or
    the anchor Gaussians, which start fresh on the template head) keep their fresh initialisation.
    ``cfg.reinit`` submodules are then drawn afresh.
    """
    model = place_anchors(Avat3r(model_config(cfg))).to(device)
    folder, source, _ = resolve_verified(cfg.init_from)
    trained_on = read_config(folder).get("geometry_backend")
    if trained_on != cfg.geometry:
        raise Avat3rError(f"{source}: trained on {trained_on!r} position maps, "
                          f"this run reads {cfg.geometry!r} (pass --geometry {trained_on})")
    state = read_state_dict(folder / WEIGHTS_FILE, device=device)
    own = model.state_dict()
    misfits = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if misfits:
        raise Avat3rError(f"{source}: {len(misfits)} tensor(s) do not fit preset {cfg.preset!r} (e.g. {misfits[0]}); "
                          "pass the --preset the weights were trained with")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    modules = dict(model.named_modules())
    for name in cfg.reinit:
        if not name or name not in modules:
            raise Avat3rError(f"--reinit {name!r}: the model has no such submodule (e.g. transformer.expression)")
        for sub in modules[name].modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    return model
