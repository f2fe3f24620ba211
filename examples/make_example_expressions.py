"""Write examples/expressions.csv: a short expression clip in Live Link Face's CSV layout.

Two seconds at 30 fps: the jaw opens and closes, a smile comes and goes, both eyes blink, the
brows rise. The columns are those of a Live Link Face export, in its order: Timecode,
BlendShapeCount, the 52 ARKit blendshapes (the ones this clip does not move stay 0) and the
head and eye rotations (0: the head stays still). `avat3r animate` reads it without a warning.

    python examples/make_example_expressions.py [--output examples/expressions.csv]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

FRAMES = 60
FPS = 30
# Live Link Face's blendshape columns (ARKit's 52, in the app's order), then its rotations.
BLENDSHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose",
    "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight",
    "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft",
    "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
ROTATIONS = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)


def bump(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 outside [start, end], a smooth 0 -> 1 -> 0 inside."""
    x = np.clip((t - start) / (end - start), 0.0, 1.0)
    return np.sin(np.pi * x) ** 2


def clip() -> dict[str, np.ndarray]:
    """The moving channels ``[FRAMES]`` by Live Link Face column name; every other one stays 0."""
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
    moving = clip()
    still = np.zeros(FRAMES)
    with open(args.output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Timecode", "BlendShapeCount", *BLENDSHAPES, *ROTATIONS])
        for i in range(FRAMES):
            seconds, frame = divmod(i, FPS)
            values = [moving.get(name, still)[i] for name in (*BLENDSHAPES, *ROTATIONS)]
            writer.writerow([f"00:00:{seconds:02d}:{frame:02d}.000", len(BLENDSHAPES) + len(ROTATIONS),
                             *(f"{v:.4f}" for v in values)])
    print(args.output)


if __name__ == "__main__":
    main()
