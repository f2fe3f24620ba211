"""Validation during training: one fixed held-out sample's loss, PSNR and a picture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.data.sampler import sample_views
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.train.losses import photometric_loss
from avat3r_cli.train.step import render_sample, unwrap

# A fixed stream for the validation sample, far from any (seed, rank, step) training stream.
_VAL_STREAM = 2**31 - 1


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, R, R]`` -> ``uint8 [R, N*R, 3]`` side by side."""
    row = torch.cat(list(images.detach().float().clamp(0, 1).cpu()), dim=2)
    return (row.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


@torch.no_grad()
def validate(model: torch.nn.Module, pool, subject: str, cfg, device: torch.device,
             png: Path | None) -> dict[str, float]:
    """Loss and PSNR on one fixed held-out sample; writes ``inputs | target | prediction`` to ``png``."""
    from PIL import Image

    net = unwrap(model)
    was_training = net.training
    net.eval()
    rng = np.random.default_rng([cfg.seed, _VAL_STREAM])
    prepared = pool.get(subject)
    spec = sample_views(rng, prepared.num_timesteps, prepared.camera_centers(), cfg.num_inputs, cfg.num_targets,
                        consistent_inputs=cfg.consistent_inputs, input_candidates=prepared.input_views)
    sample = prepared.sample(spec)
    out = render_sample(net, sample, torch.ones(3), device, autocast=cfg.bf16)
    net.train(was_training)
    parts = photometric_loss(out.pred, out.target)
    mse = float(((out.pred.clamp(0, 1) - out.target) ** 2).mean())
    if png is not None:
        strip = torch.cat([sample.inputs.images[0].to(out.pred), out.target[:1], out.pred[:1]])
        png.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(png) as tmp:
            Image.fromarray(_to_uint8(strip)).save(tmp, format="PNG")
    return {"val_loss": float(parts.total), "val_psnr": -10.0 * math.log10(max(mse, 1e-10))}


