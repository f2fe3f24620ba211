"""Render the example "photos" of examples/photos/: one synthetic person seen from four sides.

They stand in for a phone capture in the README's main command (`avat3r create examples/photos/*`),
so it runs offline with no real person's photos in the repository. The person is a procedural
identity from `avat3r synth` that no training subject shares (seed 424242), at a neutral
expression, rendered at 512x512 over a plain wall colour from the front, both sides and slightly
above, like four phone shots.

    python examples/make_example_photos.py [--output examples/photos] [--seed 424242]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avat3r_cli.data.synthetic.cameras import head_camera
from avat3r_cli.data.synthetic.head import head_model
from avat3r_cli.data.synthetic.identity import sample_identity
from avat3r_cli.render import render

# (file name, yaw, pitch): front, three-quarter left and right, and from a little above.
SHOTS = (("front.jpg", 0.0, 0.0), ("left.jpg", -35.0, 5.0), ("right.jpg", 35.0, 5.0), ("above.jpg", 10.0, 20.0))
WALL = (0.82, 0.84, 0.86)
RESOLUTION = 512


def render_photos(seed: int) -> dict[str, np.ndarray]:
    """The four photos as ``uint8 [512, 512, 3]`` arrays, by file name."""
    identity = sample_identity(np.random.default_rng(seed))
    samples = head_model(identity).samples({})
    wall = torch.tensor(WALL)
    photos = {}
    for name, yaw, pitch in SHOTS:
        # A little farther than the dataset's framing, so the head sits in the photo with margin.
        camera = head_camera(yaw, pitch, 0.8, RESOLUTION)
        camera.K[:2, :2] *= 0.75
        with torch.no_grad():
            out = render(samples.gaussians(identity.lighting, camera), camera, wall)
        photos[name] = (out.image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "photos")
    parser.add_argument("--seed", type=int, default=424242)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    for name, image in render_photos(args.seed).items():
        Image.fromarray(image).save(args.output / name, quality=92)
        print(args.output / name)


if __name__ == "__main__":
    main()
