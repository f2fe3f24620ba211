"""Making sure a dataset is prepared at a model's resolution before training or evaluating on it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.data.prepare import check_geometry, missing_prepared, prepare_dataset


def ensure_prepared(
    data_dir: Path,
    resolution: int,
    geometry: str = "template",
    progress: Callable[[int, int], None] | None = None,
    device: str = "cpu",
    notice: Callable[[str], None] | None = None,
) -> int:
    """Prepare the subjects that need it; returns how many were prepared.

    ``device`` and ``notice`` are for ``geometry="dust3r"`` (``data.prepare.prepare_dataset``).
    Under torchrun (WORLD_SIZE > 1) every rank would prepare the same subjects at once, so there
    a missing preparation is an error that names the command to run first.
    """
    check_geometry(geometry)
    missing = missing_prepared(data_dir, resolution, geometry)
    if not missing:
        return 0
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "" if geometry == "template" else f" --geometry {geometry}"
        raise Avat3rError(
            f"{data_dir}: {len(missing)} subject(s) are not prepared at {resolution}x{resolution}; "
            f"run first: avat3r prepare-data {data_dir} --resolution {resolution}{backend}"
        )
    prepare_dataset(data_dir, resolution, geometry, progress=progress, device=device, notice=notice)
    return len(missing)
