"""The neutral expression a model records with its weights, and a command that records it afterwards.

``avatar.ply`` and the start of the expression tour show the avatar at the model's neutral code
(``Avat3r.neutral_expression``). The all-zero code is not neutral for a model: MediaPipe reads a
neutral face with per-person offsets (eyeSquint and eyeLookDown around 0.3-0.5 on synthetic
faces), so zero sits several standard deviations off the codes the model was trained on.

Training records the per-channel median of the training subjects' *first-timestep* codes. The
first timestep is the neutral one in the synthetic generator (``data/synthetic/generate.py``:
timestep 0 has no deformer on) and the usual start of a capture protocol (docs/dataset.md asks
for it); the median keeps a few subjects whose first frame is not neutral from moving it. The
median over *all* codes would be pulled towards the expressions (jawOpen is on in about a third
of the synthetic timesteps), and the mean even more.

For weights trained before this was recorded, the command below computes the same code from the
training data, or, for synthetic data no longer on disk, from the generator, which renders the
first-timestep frontal views again exactly (``data/synthetic/frontal.py``), and writes it into
the model folder's ``model.safetensors`` (every other tensor unchanged)::

    python -m avat3r_cli.train.neutral MODEL_DIR --data DATASET --val-subjects 8
    python -m avat3r_cli.train.neutral MODEL_DIR --synth-seed 7 --subjects 200 --val-subjects 8 \\
        --timesteps 6 --cameras 12 --resolution 256 [--check-statistics]

``--check-statistics`` renders every timestep's frontal view, not only the first, and compares
the codes' mean and spread with the statistics stored in the weights: it shows that the
regenerated data are the data the model was trained on.

Letters: S subjects, T timesteps, E = 52.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.data.layout import list_subjects, read_subject
from avat3r_cli.data.prepared import PreparedSubject
from avat3r_cli.io.atomic import atomic_output
from avat3r_cli.io.weights import WEIGHTS_FILE, read_state_dict, sha256_file
from avat3r_cli.train.emphasis import MIN_CODE_STD

NEUTRAL_KEY = "neutral_expression"


def neutral_expression(first_codes: torch.Tensor) -> torch.Tensor:
    """The neutral code ``[E]``: the per-channel median of first-timestep codes ``[S, E]``."""
    if first_codes.ndim != 2 or first_codes.shape[0] == 0:
        raise ValueError(f"need first-timestep codes [S, E] with S >= 1, got {list(first_codes.shape)}")
    return torch.quantile(first_codes.double(), 0.5, dim=0).float()


def training_neutral(subjects: list[PreparedSubject]) -> torch.Tensor:
    """``neutral_expression`` of the training subjects' first timesteps (what ``train`` records)."""
    return neutral_expression(torch.stack([torch.as_tensor(s.expressions[0]).float() for s in subjects]))


def code_statistics(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and floored spread ``[E]`` of codes ``[M, E]``, as training computes them."""
    codes = codes.float()
    return codes.mean(dim=0), codes.std(dim=0, unbiased=False).clamp(min=MIN_CODE_STD)


def dataset_first_codes(data_dir: Path, val_subjects: int) -> torch.Tensor:
    """First-timestep codes ``[S, E]`` of a dataset's training subjects (the last ``val_subjects`` held out)."""
    names = sorted(list_subjects(data_dir))
    train = names[: len(names) - val_subjects] if val_subjects else names
    if not train:
        raise Avat3rError(f"{data_dir}: no training subject left after holding out {val_subjects}")
    return torch.from_numpy(np.stack([read_subject(data_dir / n).expressions[0] for n in train]))


def synthetic_codes(
    seed: int, subjects: int, val_subjects: int, timesteps: int, cameras: int, resolution: int,
    upto: int = 1, log=None,
) -> torch.Tensor:
    """Codes ``[S, upto, E]`` of the training subjects of ``avat3r synth`` with these settings, re-rendered."""
    from avat3r_cli.data.synthetic.frontal import frontal_codes
    from avat3r_cli.data.synthetic.generate import SUBJECT_SEED_STRIDE
    from avat3r_cli.preprocess.face import FaceAnalyzer

    count = subjects - val_subjects
    if count < 1:
        raise Avat3rError(f"no training subject left: {subjects} subjects, {val_subjects} held out")
    out = []
    with FaceAnalyzer() as analyzer:
        for i in range(count):
            out.append(frontal_codes(seed * SUBJECT_SEED_STRIDE + i, timesteps, cameras, resolution, analyzer, upto))
            if log is not None and ((i + 1) % 20 == 0 or i + 1 == count):
                log(f"{i + 1}/{count} subjects")
    return torch.from_numpy(np.stack(out))


def record_neutral_expression(folder: str | Path, code: torch.Tensor) -> str:
    """Write ``code [E]`` as ``neutral_expression`` into ``folder/model.safetensors``; returns its new sha256.

    Stored in the dtype of the file's other code statistics (the bundled model is float16);
    every other tensor and the file's metadata are kept as they are. Atomic.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(folder) / WEIGHTS_FILE
    state = read_state_dict(path)
    if "expression_mean" not in state:
        raise Avat3rError(f"{path}: not Avat3r weights (no expression_mean)")
    reference = state["expression_mean"]
    if code.shape != reference.shape or not bool(torch.isfinite(code).all()):
        raise Avat3rError(f"a neutral code must be {reference.numel()} finite values, got {list(code.shape)}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    state[NEUTRAL_KEY] = code.to(reference.dtype).contiguous()
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return sha256_file(path)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m avat3r_cli.train.neutral", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder (config.json + model.safetensors), rewritten in place")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="the training dataset (docs/dataset.md layout)")
    source.add_argument("--synth-seed", type=int, help="re-render the `avat3r synth --seed S` training data")
    parser.add_argument("--val-subjects", type=int, default=8, help="held-out subjects at the end (as in train)")
    parser.add_argument("--subjects", type=int, default=200, help="synth: --subjects of the generation")
    parser.add_argument("--timesteps", type=int, default=6, help="synth: --timesteps of the generation")
    parser.add_argument("--cameras", type=int, default=12, help="synth: --cameras of the generation")
    parser.add_argument("--resolution", type=int, default=256, help="synth: --resolution of the generation")
    parser.add_argument("--check-statistics", action="store_true",
                        help="synth: re-render every timestep and compare the code statistics with the weights'")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Compute the neutral code (module docstring), write it into the model folder, print a JSON summary."""
    args = _arguments(argv)
    weights = read_state_dict(args.model / WEIGHTS_FILE)
    if "expression_mean" not in weights:
        raise Avat3rError(f"{args.model / WEIGHTS_FILE}: not Avat3r weights (no expression_mean)")
    mean, std = weights["expression_mean"].float(), weights["expression_std"].float()
    summary: dict = {"model": str(args.model)}
    if args.data is not None:
        first = dataset_first_codes(args.data, args.val_subjects)
    else:
        upto = args.timesteps if args.check_statistics else 1
        codes = synthetic_codes(args.synth_seed, args.subjects, args.val_subjects, args.timesteps, args.cameras,
                                args.resolution, upto, log=lambda line: print(line, file=sys.stderr))
        first = codes[:, 0]
        if args.check_statistics:
            got_mean, got_std = code_statistics(codes.reshape(-1, codes.shape[-1]))
            summary["statistics_max_abs_diff"] = {
                "mean": float((got_mean - mean).abs().max()), "std": float((got_std - std).abs().max()),
            }
    neutral = neutral_expression(first)
    summary["subjects"] = int(first.shape[0])
    summary["max_abs_z"] = {
        "zero_code": float(((0.0 - mean) / std).abs().max()), "neutral_code": float(((neutral - mean) / std).abs().max()),
    }
    summary["sha256"] = record_neutral_expression(args.model, neutral)
    summary["neutral_expression"] = [round(float(v), 5) for v in neutral]
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except Avat3rError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
