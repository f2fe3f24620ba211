"""Store a trained model folder in float16, as the bundled avat3r-small ships (half the bytes).

    python weights/export_float16.py RUN/model src/avat3r_cli/assets/avat3r-small

Copies ``config.json`` unchanged and writes ``model.safetensors`` with every floating tensor cast
to float16 (``load_model`` reads them back into float32). Then put the two files' sha256
(``sha256sum``) into ``io/registry.py``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    tensors = load_file(args.source / "model.safetensors")
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    args.target.mkdir(parents=True, exist_ok=True)
    save_file(half, args.target / "model.safetensors", metadata={"format": "pt", "dtype": "float16"})
    shutil.copyfile(args.source / "config.json", args.target / "config.json")


if __name__ == "__main__":
    main()
