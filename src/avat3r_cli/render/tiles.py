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
        entries: ``[R + 1]`` Gaussian index of each (tile, Gaussian) pair, grouped by tile, each
            tile's run in depth order; the last entry is the sentinel M (one past the last
            Gaussian) that pads a step reaching past the end of a tile's run.
        tile_start: ``[T]`` first entry of each tile.
        tile_count: ``[T]`` number of entries of each tile.
        num_gaussians: M, also the sentinel index.
        tiles_x: tiles per image row (ceil(W / 4)).
        tiles_y: tiles per image column (ceil(H / 4)).
    """

    entries: torch.Tensor
    tile_start: torch.Tensor
    tile_count: torch.Tensor
    num_gaussians: int
    tiles_x: int
    tiles_y: int

    @property
    def num_rows(self) -> int:
        """Number of (tile, Gaussian) pairs R."""
        return int(self.entries.shape[0]) - 1

    def tile_centers(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates (x ``[L]``, y ``[L]``) of the centres of ``tiles [L]``."""
        ty = torch.div(tiles, self.tiles_x, rounding_mode="floor")
        tx = tiles - ty * self.tiles_x
        return tx.to(torch.float32) * TILE + TILE / 2.0, ty.to(torch.float32) * TILE + TILE / 2.0


@torch.no_grad()
def build_tile_lists(means2d: torch.Tensor, radii: torch.Tensor, height: int, width: int) -> TileLists:
    """Expand Gaussians ``means2d [M, 2]`` with box half-sizes ``radii [M, 2]`` into tile rows.

    The Gaussians must already be sorted front to back; every one must be visible.
    """
    device = means2d.device
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    lo = torch.floor((means2d - radii) / TILE).to(torch.int32)
    hi = torch.floor((means2d + radii) / TILE).to(torch.int32)
    tx0 = lo[:, 0].clamp(0, tiles_x - 1)
    ty0 = lo[:, 1].clamp(0, tiles_y - 1)
    nx = hi[:, 0].clamp(0, tiles_x - 1) - tx0 + 1
    ny = hi[:, 1].clamp(0, tiles_y - 1) - ty0 + 1
    counts = nx * ny
    num_rows = int(counts.sum())
    num_tiles = tiles_x * tiles_y
    num_gauss = means2d.shape[0]
    if num_rows == 0:
        zeros = torch.zeros(num_tiles, dtype=torch.int64, device=device)
        sentinel = torch.full((1,), num_gauss, dtype=torch.int64, device=device)
        return TileLists(sentinel, zeros, zeros.clone(), num_gauss, tiles_x, tiles_y)

    # Rows of a Gaussian enumerate its box row-major: row `local` is at (local // nx, local % nx).
    # int32 throughout, and the division in float32 (exact here: local < 2^24), because 64-bit
    # integer division and gathers dominated this function.
    first_row = torch.cumsum(counts, 0, dtype=torch.int32) - counts
    gauss = torch.repeat_interleave(
        torch.arange(num_gauss, dtype=torch.int32, device=device), counts, output_size=num_rows
    )
    per_gauss = torch.stack([first_row, nx, ty0 * tiles_x + tx0], dim=1)[gauss.long()]
    local = torch.arange(num_rows, dtype=torch.int32, device=device) - per_gauss[:, 0]
    row_nx = per_gauss[:, 1]
    dy = ((local.float() + 0.5) / row_nx.float()).to(torch.int32)
    tile = per_gauss[:, 2] + dy * (tiles_x - row_nx) + local  # (ty0 + dy) * tiles_x + tx0 + dx
    # Stable, so the rows of one tile keep the Gaussians' depth order.
    tile_sorted, order = torch.sort(tile, stable=True)
    tile_count = torch.bincount(tile_sorted, minlength=num_tiles)
    tile_start = torch.cumsum(tile_count, 0) - tile_count
    entries = torch.cat([gauss[order], torch.full((1,), num_gauss, dtype=torch.int32, device=device)]).long()
    return TileLists(entries, tile_start, tile_count, num_gauss, tiles_x, tiles_y)
