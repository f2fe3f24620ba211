"""Average the weights of model folders trained from one starting point (a uniform "soup").

    python weights/average.py RUN_A/model RUN_B/model [...] -o SOUP

Runs fine-tuned from the same weights with the same command and different seeds end near each
other; their mean is one model of the same size and speed. The folders must share one
``config.json`` (copied to ``SOUP``) and the same tensor names, shapes and dtypes. Floating tensors
are averaged in float32 and written as float32 (``export_float16.py`` halves them for shipping);
other tensors must be equal in every folder and are copied.
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
    """The element-wise mean of state dicts with the same keys and shapes; non-float tensors must agree."""
    first = states[0]
    for i, state in enumerate(states[1:], start=2):
        if state.keys() != first.keys():
            raise ValueError(f"model {i} has other tensor names than model 1")
        for name, tensor in state.items():
            if tensor.shape != first[name].shape:
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} in model {i}, {tuple(first[name].shape)} in model 1")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in first.items():
        if tensor.is_floating_point():
            out[name] = torch.stack([s[name].float() for s in states]).mean(0).contiguous()
        elif all(torch.equal(s[name], tensor) for s in states):
            out[name] = tensor.contiguous()
        else:
            raise ValueError(f"{name}: a non-float tensor that differs between the models")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="model folders (config.json + model.safetensors)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if len(args.models) < 2:
        sys.exit("average.py: give at least two model folders")
    configs = [json.loads((m / "config.json").read_text()) for m in args.models]
    if any(c != configs[0] for c in configs[1:]):
        sys.exit("average.py: the models' config.json files differ")
    soup = average_state([load_file(m / "model.safetensors") for m in args.models])
    args.output.mkdir(parents=True, exist_ok=True)
    save_file(soup, args.output / "model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(args.models[0] / "config.json", args.output / "config.json")


if __name__ == "__main__":
    main()
