"""Write examples/expressions.csv: a short expression clip in Live Link Face's CSV layout.

Two seconds at 30 fps: the jaw opens and closes, a smile comes and goes, both eyes blink, the
brows rise. Columns are ARKit blendshape names (Live Link Face writes these, with a timecode
column that `avat3r animate` ignores with a warning).

    python examples/make_example_expressions.py [--output examples/expressions.csv]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

FRAMES = 60
NAMES = ("JawOpen", "MouthSmileLeft", "MouthSmileRight", "EyeBlinkLeft", "EyeBlinkRight", "BrowInnerUp")


def bump(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 outside [start, end], a smooth 0 -> 1 -> 0 inside."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def clip() -> dict[str, np.ndarray]:
    t = np.arange(FRAMES) / FRAMES
    smile = bump(t, 0.35, 0.7)
    blink = bump(t, 0.75, 0.85)
    return {
        "JawOpen": 0.8 * bump(t, 0.0, 0.35),
        "MouthSmileLeft": smile,
        "MouthSmileRight": smile,
        "EyeBlinkLeft": blink,
        "EyeBlinkRight": blink,
        "BrowInnerUp": 0.7 * bump(t, 0.8, 1.0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "expressions.csv")
    args = parser.parse_args(argv)
    columns = clip()
    with open(args.output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Timecode", *NAMES])
        for i in range(FRAMES):
            writer.writerow([f"00:00:{i // 30:02d}:{i % 30:02d}.000", *(f"{columns[n][i]:.4f}" for n in NAMES)])
    print(args.output)


if __name__ == "__main__":
    main()
