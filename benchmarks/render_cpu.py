"""CPU rasteriser speed and memory against a baseline revision: one JSON line per case (medians).

    python benchmarks/render_cpu.py                      # every case, this tree vs BASELINE_REV
    python benchmarks/render_cpu.py --baseline none      # this tree only
    python benchmarks/render_cpu.py --baseline <rev>     # any git revision of this repository
    python benchmarks/render_cpu.py --case 0             # one case of this tree, in this process

A machine's speed drifts (another process, thermal state), so single times are not comparable
across runs. Each case therefore runs this tree and the baseline (its ``src/`` exported from git
into a temporary folder) in alternating fresh processes, the order flipping every round,
``--rounds`` times each, and reports the median of the per-round ratios ``ours / baseline``
beside the medians of each. Peak RSS is each process's own (one case per process). The scene is spread like an avatar seen from 0.6 m: points
on a head-sized ellipsoid, about 2 px projected sigma, opacities 0.5..0.99, 30 degree field of view.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

CASES = [
    {"gaussians": 20_000, "height": 256, "width": 256, "backward": True},
    {"gaussians": 100_000, "height": 512, "width": 512, "backward": True},
]
# The rasteriser before the 16-entry block lists (the last commit with the per-entry gathers).
BASELINE_REV = "a96f6ae"
REPO = Path(__file__).resolve().parents[1]


def make_scene(n: int, height: int, width: int, seed: int = 0):
    """An avatar-like scene: ``Gaussians`` on an ellipsoid and a frontal ``Camera`` at 0.6 m."""
    import torch

    from avat3r_cli.core.camera import Camera, intrinsics_from_fov, look_at
    from avat3r_cli.core.gaussians import Gaussians

    gen = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = dirs * torch.tensor([0.08, 0.11, 0.10])
    K = intrinsics_from_fov(30.0, height, width)
    # Sigma of about 2 px at 0.6 m, whatever the resolution.
    sigma_m = 2.0 * 0.6 / float(K[1, 1])
    scales = sigma_m * torch.exp(0.2 * torch.randn(n, 3, generator=gen))
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    opacities = 0.5 + 0.49 * torch.rand(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen)
    w2c = look_at(torch.tensor([0.0, 0.0, -0.6]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))
    return Gaussians.from_colors(means, quats, scales, opacities, colors), Camera(K, w2c, height, width)


def run_case(case: dict, repeats: int) -> dict:
    """Median forward and backward seconds of ``render`` on the case's scene, in this process."""
    import torch

    from avat3r_cli.core.gaussians import Gaussians
    from avat3r_cli.render import render

    gaussians, camera = make_scene(case["gaussians"], case["height"], case["width"])
    forward, backward = [], []
    with torch.no_grad():
        render(gaussians, camera)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            render(gaussians, camera)
            forward.append(time.perf_counter() - t0)
    if case["backward"]:
        params = [t.clone().requires_grad_() for t in (gaussians.means, gaussians.quats, gaussians.scales,
                                                       gaussians.opacities, gaussians.sh)]
        weights = torch.rand(3, case["height"], case["width"])
        for i in range(repeats + 1):
            out = render(Gaussians(*params), camera)
            t0 = time.perf_counter()
            (out.image * weights).sum().backward()
            if i:  # the first is a warm-up
                backward.append(time.perf_counter() - t0)
    fwd = statistics.median(forward)
    bwd = statistics.median(backward) if backward else None
    return {
        **{k: case[k] for k in ("gaussians", "height", "width")},
        "forward_s": round(fwd, 4),
        "backward_s": None if bwd is None else round(bwd, 4),
        "forward_backward_s": None if bwd is None else round(fwd + bwd, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def export_source(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev`` written under ``into``; returns the folder to put on sys.path."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(case_index: int, repeats: int, src: Path) -> dict:
    """Run one case in a fresh process with ``src`` first on the path; its JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(REPO / "benchmarks")])}
    code = (f"import json, render_cpu; print(json.dumps(render_cpu.run_case(render_cpu.CASES[{case_index}], "
            f"{repeats})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r[key] is not None]
    return round(statistics.median(values), 4) if values else None


def compare(case_index: int, repeats: int, rounds: int, ours: Path, base: Path, rev: str) -> dict:
    """Alternate ours / baseline ``rounds`` times; medians and the median per-round ratio.

    The order flips every round (ours first, then the baseline first), so a drift of the
    machine's speed, or whatever the previous process leaves behind, favours neither side.
    """
    mine, theirs = [], []
    for i in range(rounds):
        if i % 2:
            theirs.append(measure(case_index, repeats, base))
            mine.append(measure(case_index, repeats, ours))
        else:
            mine.append(measure(case_index, repeats, ours))
            theirs.append(measure(case_index, repeats, base))
    line = {k: CASES[case_index][k] for k in ("gaussians", "height", "width")}
    for key in ("forward_s", "forward_backward_s"):
        line[key] = _median_of(mine, key)
        line[f"baseline_{key}"] = _median_of(theirs, key)
        ratios = [a[key] / b[key] for a, b in zip(mine, theirs) if a[key] and b[key]]
        line[f"ratio_{key[:-2]}"] = round(statistics.median(ratios), 3) if ratios else None
    line["peak_rss_mb"] = max(r["peak_rss_mb"] for r in mine)
    line["baseline_peak_rss_mb"] = max(r["peak_rss_mb"] for r in theirs)
    line.update(baseline=rev, rounds=rounds, repeats=repeats, threads=mine[0]["threads"])
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=int, default=None, help="run one case of this tree in this process")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per process")
    parser.add_argument("--rounds", type=int, default=4, help="alternating processes per side")
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare with, or 'none'")
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(CASES[args.case], args.repeats)), flush=True)
        return
    ours = REPO / "src"
    if args.baseline == "none":
        for i in range(len(CASES)):
            print(json.dumps(measure(i, args.repeats, ours)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="avat3r-baseline-") as tmp:
        base = export_source(args.baseline, Path(tmp))
        for i in range(len(CASES)):
            print(json.dumps(compare(i, args.repeats, args.rounds, ours, base, args.baseline)), flush=True)


if __name__ == "__main__":
    main()
