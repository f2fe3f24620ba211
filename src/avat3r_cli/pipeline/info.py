"""Summary of a ``.ply`` avatar (what ``avat3r info`` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avat3r_cli.io.ply import ply_stats, read_ply


def avatar_info(path: str | Path) -> dict[str, Any]:
    """Statistics of the avatar in ``path`` as a JSON-serialisable dict.

    Keys: ``path``, ``file_bytes``, then ``PlyStats.to_dict()`` (``count``, ``sh_degree``,
    ``bounds_min``/``bounds_max``/``centre`` as ``[3]`` lists, opacity and scale statistics,
    ``faint_fraction``) and ``extent`` ``[3]`` = bounds_max - bounds_min (metres).

    Raises:
        InputFileError: the file is missing or not a usable 3DGS ``.ply``.
    """
    path = Path(path)
    stats = ply_stats(read_ply(path)).to_dict()
    extent = [hi - lo for lo, hi in zip(stats["bounds_min"], stats["bounds_max"])]
    return {"path": str(path), "file_bytes": path.stat().st_size, **stats, "extent": extent}
