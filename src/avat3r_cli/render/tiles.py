"""Per-tile, depth-ordered Gaussian lists over 4x4-pixel micro-tiles.

Each Gaussian is listed in every micro-tile its opacity-aware box touches. Gaussians arrive
sorted by depth, so one stable sort on the tile id alone gives lists already in depth order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TILE = 4  # pixels per micro-tile side; 16 pixels per tile


@dataclass
class TileLists:
    """Intersections of depth-sorted Gaussians with micro-tiles.

    Attributes:
        row_gaussian: ``[R]`` Gaussian index of each row; rows are grouped by tile, depth-ordered.
        row_tile: ``[R]`` tile index of each row (``ty * tiles_x + tx``).
        tile_start: ``[T]`` first row of each tile.
        tile_count: ``[T]`` number of rows of each tile.
        tiles_x: tiles per image row (ceil(W / 4)).
        tiles_y: tiles per image column (ceil(H / 4)).
    """

    row_gaussian: torch.Tensor
    row_tile: torch.Tensor
    tile_start: torch.Tensor
    tile_count: torch.Tensor
    tiles_x: int
    tiles_y: int

    @property
    def num_rows(self) -> int:
        return int(self.row_gaussian.shape[0])

    def tile_centers(self, rows: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates ``[len(rows), 2]`` (x, y) of the centres of the tiles of ``rows``."""
        tile = self.row_tile[rows]
        ty = torch.div(tile, self.tiles_x, rounding_mode="floor")
        tx = tile - ty * self.tiles_x
        return torch.stack([tx, ty], dim=-1).to(torch.float32) * TILE + TILE / 2.0


@torch.no_grad()
def build_tile_lists(means2d: torch.Tensor, radii: torch.Tensor, height: int, width: int) -> TileLists:
    """Expand Gaussians ``means2d [M, 2]`` with box half-sizes ``radii [M, 2]`` into tile rows.

    The Gaussians must already be sorted front to back; every one must be visible.
    """
    device = means2d.device
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    lo = torch.floor((means2d - radii) / TILE).to(torch.int64)
    hi = torch.floor((means2d + radii) / TILE).to(torch.int64)
    tx0 = lo[:, 0].clamp(0, tiles_x - 1)
    ty0 = lo[:, 1].clamp(0, tiles_y - 1)
    nx = hi[:, 0].clamp(0, tiles_x - 1) - tx0 + 1
    ny = hi[:, 1].clamp(0, tiles_y - 1) - ty0 + 1
    counts = nx * ny
    num_rows = int(counts.sum())
    num_tiles = tiles_x * tiles_y
    if num_rows == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        zeros = torch.zeros(num_tiles, dtype=torch.int64, device=device)
        return TileLists(empty, empty, zeros, zeros.clone(), tiles_x, tiles_y)

    gauss = torch.repeat_interleave(torch.arange(len(counts), device=device), counts, output_size=num_rows)
    first_row = torch.cumsum(counts, 0) - counts
    local = torch.arange(num_rows, device=device) - first_row[gauss]
    row_nx = nx[gauss]
    ty = ty0[gauss] + torch.div(local, row_nx, rounding_mode="floor")
    tx = tx0[gauss] + local % row_nx
    tile = ty * tiles_x + tx
    # Stable: rows of one tile keep the Gaussians' depth order.
    tile_sorted, order = torch.sort(tile, stable=True)
    tile_count = torch.bincount(tile_sorted, minlength=num_tiles)
    tile_start = torch.cumsum(tile_count, 0) - tile_count
    return TileLists(gauss[order], tile_sorted, tile_start, tile_count, tiles_x, tiles_y)
