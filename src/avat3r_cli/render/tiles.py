"""Per-tile, depth-ordered Gaussian lists over 4x4-pixel micro-tiles, in blocks of 16 entries.

Each Gaussian is listed in every micro-tile its opacity-aware box touches. Gaussians arrive
sorted by depth, so one stable sort on the tile id alone gives lists already in depth order.
Each tile's list is then padded with a never-opaque sentinel to whole blocks of 16 entries, so
the compositor fetches a tile's next 16 entries as one contiguous row (one ``index_select`` of
L rows per step instead of gathering L x 16 scattered entries: about 7x cheaper, measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avat3r_cli.render.projection import ALPHA_THRESHOLD

TILE = 4  # pixels per micro-tile side; 16 pixels per tile
BLOCK = 16  # list entries a tile composites per step; 16 keeps the small matrix products fast


@dataclass
class TileLists:
    """Intersections of depth-sorted Gaussians with micro-tiles, as blocks of 16 entries.

    Attributes:
        blocks: ``[NB, 16]`` int32 Gaussian indices; tile t owns the rows
            ``first_block[t] .. first_block[t] + num_blocks[t] - 1``, its entries in depth order,
            the last row padded with the sentinel M (one past the last Gaussian, never opaque);
            the final row ``NB - 1`` is all sentinel (``sentinel_block``).
        first_block: ``[T]`` int64 first block row of each tile.
        num_blocks: ``[T]`` int64 number of block rows of each tile (0: nothing touches it).
        num_rows: number of real (tile, Gaussian) pairs R.
        num_gaussians: M, also the sentinel index.
        tiles_x: tiles per image row (ceil(W / 4)).
        tiles_y: tiles per image column (ceil(H / 4)).
    """

    blocks: torch.Tensor
    first_block: torch.Tensor
    num_blocks: torch.Tensor
    num_rows: int
    num_gaussians: int
    tiles_x: int
    tiles_y: int

    @property
    def sentinel_block(self) -> int:
        """The all-sentinel block row, for tiles whose list has ended."""
        return int(self.blocks.shape[0]) - 1

    def tile_centers(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates (x ``[L]``, y ``[L]``) of the centres of ``tiles [L]``."""
        ty = torch.div(tiles, self.tiles_x, rounding_mode="floor")
        tx = tiles - ty * self.tiles_x
        return tx.to(torch.float32) * TILE + TILE / 2.0, ty.to(torch.float32) * TILE + TILE / 2.0


def _empty(num_gauss: int, num_tiles: int, tiles_x: int, tiles_y: int, device: torch.device) -> TileLists:
    zeros = torch.zeros(num_tiles, dtype=torch.int64, device=device)
    blocks = torch.full((1, BLOCK), num_gauss, dtype=torch.int32, device=device)
    return TileLists(blocks, zeros, zeros.clone(), 0, num_gauss, tiles_x, tiles_y)


def _reach_squared(conics: torch.Tensor, opacities: torch.Tensor) -> torch.Tensor:
    """``[M]`` squared pixel distance beyond which a Gaussian's alpha is surely below 1/255.

    alpha = o exp(-d^T Q d / 2) <= o exp(-lambda_min |d|^2 / 2) for the conic Q, so alpha < 1/255
    wherever |d|^2 > 2 ln(255 o) / lambda_min. lambda_min is shrunk by 1 % so float error never
    drops a pair the compositor would draw.
    """
    a, b, c = conics.unbind(-1)
    lam_min = 0.5 * (a + c) - torch.sqrt((0.5 * (a - c)) ** 2 + b * b)
    log_ratio = torch.log((opacities / ALPHA_THRESHOLD).clamp(min=1.0))
    return 2.0 * log_ratio / (0.99 * lam_min).clamp(min=1e-12)


def _expand(values: torch.Tensor, counts: torch.Tensor, total: int) -> torch.Tensor:
    """``values [K]`` each repeated ``counts [K]`` times (``total`` = counts.sum())."""
    return torch.repeat_interleave(values, counts, output_size=total)


@torch.no_grad()
def build_tile_lists(
    means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, radii: torch.Tensor, height: int, width: int
) -> TileLists:
    """Expand Gaussians ``means2d [M, 2]`` (conics ``[M, 3]``, opacities ``[M]``, box half-sizes
    ``radii [M, 2]``) into tile blocks.

    The Gaussians must already be sorted front to back; every one must be visible. A Gaussian is
    listed in each micro-tile of its box that its alpha can reach at 1/255 or more (the square
    of the tile's pixel centres lies within ``_reach_squared``): the corners of a box are out of
    reach of a round Gaussian, a fifth to a third of an avatar's pairs.

    The expansion goes Gaussians -> rows of tiles -> runs: in each row of its box a Gaussian
    reaches one contiguous run of tiles, found from the row's distance alone, so the (tile,
    Gaussian) pairs are written directly, in Gaussian (depth) order, with a few passes over them
    instead of testing every tile of every box.
    """
    device = means2d.device
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    num_tiles = tiles_x * tiles_y
    num_gauss = means2d.shape[0]
    lo = torch.floor((means2d - radii) / TILE).to(torch.int32)
    hi = torch.floor((means2d + radii) / TILE).to(torch.int32)
    tx0 = lo[:, 0].clamp(0, tiles_x - 1)
    ty0 = lo[:, 1].clamp(0, tiles_y - 1)
    nx = hi[:, 0].clamp(0, tiles_x - 1) - tx0 + 1
    ny = hi[:, 1].clamp(0, tiles_y - 1) - ty0 + 1
    num_segments = int(ny.sum())
    if num_gauss == 0 or num_segments == 0:
        return _empty(num_gauss, num_tiles, tiles_x, tiles_y, device)

    # Segments: one per (Gaussian, row of tiles dy) of its box. Positions are measured from the
    # centre of the box's first tile, so tile (dx, dy) of the box is centred at (4 dx, 4 dy).
    origin = torch.stack([tx0, ty0], dim=1).float() * TILE + TILE / 2.0
    per_gauss = torch.cat([means2d - origin, _reach_squared(conics, opacities)[:, None],
                           nx[:, None].float(), (ty0 * tiles_x + tx0)[:, None].float()], dim=1)
    seg_gauss = _expand(torch.arange(num_gauss, dtype=torch.int32, device=device), ny, num_segments)
    seg = per_gauss.index_select(0, seg_gauss)  # [S, 5]: rel x, rel y, reach^2, nx, first tile
    first_seg = torch.cumsum(ny, 0, dtype=torch.int32) - ny
    dy = (torch.arange(num_segments, dtype=torch.int32, device=device) - _expand(first_seg, ny, num_segments)).float()
    # Half-side of the square of a tile's pixel centres: 1.5 px around the tile centre.
    half = 0.5 * (TILE - 1)
    gap_y = (seg[:, 1] - TILE * dy).abs_().sub_(half).clamp_(min=0.0)
    room = (seg[:, 2] - gap_y * gap_y).clamp_(min=0.0).sqrt_()
    reachable = seg[:, 2] >= gap_y * gap_y
    # Tiles dx of this row with |rel x - 4 dx| - 1.5 <= room, within the box.
    dx_lo = torch.ceil((seg[:, 0] - half - room) / TILE).clamp_(min=0.0)
    dx_hi = torch.minimum(torch.floor((seg[:, 0] + half + room) / TILE), seg[:, 3] - 1.0)
    run = ((dx_hi - dx_lo + 1.0).clamp_(min=0.0) * reachable).to(torch.int32)
    num_rows = int(run.sum())
    if num_rows == 0:
        return _empty(num_gauss, num_tiles, tiles_x, tiles_y, device)
    # Rows: run r covers tiles start_r .. start_r + run_r - 1; row i of it is start_r + i.
    run_start = (seg[:, 4] + dy * tiles_x + dx_lo).to(torch.int32)
    run_first = torch.cumsum(run, 0, dtype=torch.int32) - run
    gauss = _expand(seg_gauss, run, num_rows)
    tile = torch.arange(num_rows, dtype=torch.int32, device=device) + _expand(run_start - run_first, run, num_rows)

    # Each tile's list is padded to whole blocks by sentinel rows appended after all real rows:
    # the stable sort then puts them at the end of their tile's run, so the sorted rows are the
    # blocks themselves (a gather, no scatter into a padded layout).
    tile_count = torch.bincount(tile, minlength=num_tiles)
    num_blocks = torch.div(tile_count + (BLOCK - 1), BLOCK, rounding_mode="floor")
    pad_tiles = torch.repeat_interleave(torch.arange(num_tiles, dtype=torch.int32, device=device), num_blocks * BLOCK - tile_count)
    key = torch.cat([tile, pad_tiles])
    # 16-bit keys sort about 1.4x faster than 32-bit ones where the tile count allows.
    if num_tiles <= torch.iinfo(torch.int16).max:
        key = key.to(torch.int16)
    order = torch.sort(key, stable=True).indices
    values = torch.cat([gauss, torch.full((pad_tiles.shape[0] + BLOCK,), num_gauss, dtype=torch.int32, device=device)])
    # The final all-sentinel block: `order` does not reach the last BLOCK values.
    order = torch.cat([order, torch.arange(key.shape[0], key.shape[0] + BLOCK, device=device)])
    blocks = values.index_select(0, order)
    first_block = torch.cumsum(num_blocks, 0) - num_blocks
    return TileLists(blocks.view(-1, BLOCK), first_block, num_blocks, num_rows, num_gauss, tiles_x, tiles_y)
