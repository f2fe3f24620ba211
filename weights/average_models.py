"""Average the weights of several trained model folders into one (a uniform "model soup").

    python weights/average_models.py RUN_A/model RUN_B/model -o soup/

The folders must hold the same architecture (identical ``config.json`` files) and
should come from one starting point (``train --init``): runs fine-tuned from the same weights stay
close enough in weight space that their mean is a model of its own, usually better than each
run, at no cost at run time. Writes ``model.safetensors`` in float32 (mean of every floating
tensor; integer tensors must agree) and the first folder's ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def average_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of each floating tensor over ``states``; other tensors must be equal in all of them."""
    keys = set(states[0])
    for state in states[1:]:
        if set(state) != keys:
            raise ValueError("the models hold different tensors: not the same architecture")
    averaged = {}
    for key in sorted(keys):
        values = [state[key] for state in states]
        if values[0].is_floating_point():
            averaged[key] = torch.stack([v.float() for v in values]).mean(0).contiguous()
        elif all(torch.equal(values[0], v) for v in values[1:]):
            averaged[key] = values[0].contiguous()
        else:
            raise ValueError(f"integer tensor {key} differs between the models")
    return averaged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    configs = [json.loads((s / "config.json").read_text()) for s in args.sources]
    if any(c != configs[0] for c in configs[1:]):
        sys.exit("average_models: the config.json files differ; only one architecture can be averaged")
    state = average_state([load_file(s / "model.safetensors") for s in args.sources])
    args.output.mkdir(parents=True, exist_ok=True)
    sources = ",".join(str(s) for s in args.sources)
    save_file(state, args.output / "model.safetensors", metadata={"format": "pt", "averaged": sources})
    shutil.copyfile(args.sources[0] / "config.json", args.output / "config.json")


if __name__ == "__main__":
    main()
