"""Front-to-back alpha compositing of depth-ordered micro-tile lists, with a hand-written backward.

Every live tile advances 16 list entries per step. For a tile, the exponent of each Gaussian's
alpha over the tile's 16 pixels is a quadratic in the pixel offset, so one matrix product of six
per-row coefficients with a fixed 6x16 basis gives log-alpha for a [tiles, 16, 16] block. Rules
(gsplat's): alpha = min(0.999, o * exp(-sigma)); alpha < 1/255 is skipped; a pixel stops before
the Gaussian that would take its transmittance to 1e-4 or below. A tile leaves the live set when
its list ends or all its pixels have stopped, so hidden Gaussians cost almost nothing.

The backward replays the loop in forward order; the back-to-front sums it needs are the saved
per-pixel totals minus the running prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avat3r_cli.render.projection import ALPHA_THRESHOLD
from avat3r_cli.render.tiles import TILE, TileLists

STEP = 16  # list entries per step; 16 keeps the small matrix products on their fast path
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
TILES_PER_CHUNK = 4096  # bounds each step's working set to about 1M elements
_COMPACT_FRACTION = 0.125


def _pixel_basis(device: torch.device) -> torch.Tensor:
    """``[6, 16]`` monomials (1, u, v, u^2, v^2, uv) of the 16 pixel offsets from a tile centre."""
    offs = torch.arange(TILE, dtype=torch.float32, device=device) + 0.5 - TILE / 2.0
    v, u = torch.meshgrid(offs, offs, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def _row_coefficients(means2d, conics, log_opacities, lists: TileLists, rows: torch.Tensor):
    """Coefficients ``[len(rows), 6]`` of log-alpha in the basis of ``_pixel_basis``.

    With (ex, ey) the Gaussian's centre relative to the tile centre and (u, v) a pixel's offset,
    -sigma = -(a (ex-u)^2 + 2b (ex-u)(ey-v) + c (ey-v)^2) / 2, expanded in monomials of (u, v).
    """
    g = lists.row_gaussian[rows]
    e = means2d[g] - lists.tile_centers(rows)
    ex, ey = e.unbind(-1)
    a, b, c = conics[g].unbind(-1)
    k0 = log_opacities[g] - 0.5 * a * ex * ex - 0.5 * c * ey * ey - b * ex * ey
    return torch.stack([k0, a * ex + b * ey, c * ey + b * ex, -0.5 * a, -0.5 * c, -b], dim=-1), (g, ex, ey, a, b, c)


@dataclass
class _Segment:
    """A run of steps over a fixed live set: ``keep`` selects it from the previous live set."""

    keep: torch.Tensor | None
    first_step: int
    num_steps: int


def _step_alphas(rows: torch.Tensor, basis: torch.Tensor):
    """alpha ``[L, 16g, 16p]`` and exp(-sigma)*o before the clamp, for gathered ``rows [L, 16, 6+C]``."""
    raw = torch.exp(rows[..., :6] @ basis)
    alpha = raw.clamp(max=MAX_ALPHA)
    alpha = torch.nn.functional.threshold(alpha, ALPHA_THRESHOLD, 0.0)
    return alpha, raw


def _transmittance(alpha: torch.Tensor, t_in: torch.Tensor):
    """Per-entry transmittance before ``[L, 16, 16]``, the stop mask and the weights."""
    one_minus = 1.0 - alpha
    t_next = torch.cumprod(one_minus, dim=1) * t_in[:, None, :]
    valid = t_next > MIN_TRANSMITTANCE
    t_before = torch.cat([t_in[:, None, :], t_next[:, :-1, :]], dim=1)
    weight = alpha * t_before * valid
    return one_minus, t_before, valid, weight


def _gather_rows(table, start, end, step, arange16):
    idx = start[:, None] + step * STEP + arange16
    sentinel = table.shape[0] - 1
    idx = torch.where(idx < end[:, None], idx, torch.full_like(idx, sentinel))
    return idx, table[idx]


def _forward_chunk(table, basis, tiles, lists, num_feats):
    """Composite the tiles ``tiles [L]``; returns features ``[L, 16, C]``, T ``[L, 16]`` and segments."""
    device = table.device
    arange16 = torch.arange(STEP, device=device)
    n = tiles.shape[0]
    out_feat = torch.zeros(n, TILE * TILE, num_feats, device=device)
    out_t = torch.ones(n, TILE * TILE, device=device)
    live = torch.arange(n, device=device)
    start = lists.tile_start[tiles]
    end = start + lists.tile_count[tiles]
    t = torch.ones(n, TILE * TILE, device=device)
    alive = torch.ones(n, TILE * TILE, device=device)
    acc = torch.zeros(n, TILE * TILE, num_feats, device=device)
    segments = [_Segment(None, 0, 0)]
    step = 0
    while live.numel() > 0:
        _, rows = _gather_rows(table, start, end, step, arange16)
        alpha, _ = _step_alphas(rows, basis)
        _, _, valid, weight = _transmittance(alpha, t * alive)
        acc += weight.transpose(1, 2) @ rows[..., 6:]
        t = t - weight.sum(dim=1)
        alive = alive * valid[:, -1, :]
        step += 1
        segments[-1].num_steps += 1
        finished = (start + step * STEP >= end) | (alive.sum(dim=1) == 0)
        num_finished = int(finished.sum())
        if num_finished and (num_finished == live.numel() or num_finished > _COMPACT_FRACTION * live.numel()):
            out_feat[live[finished]] = acc[finished]
            out_t[live[finished]] = t[finished]
            keep = ~finished
            live, start, end, t, alive, acc = live[keep], start[keep], end[keep], t[keep], alive[keep], acc[keep]
            segments.append(_Segment(keep, step, 0))
    return out_feat, out_t, segments


def _backward_chunk(table, basis, tiles, lists, segments, tot_feat, tot_t, g_feat, g_t, grad_rows):
    """Replay a chunk's steps and write d(loss)/d(row) ``[6 + C]`` into ``grad_rows``."""
    device = table.device
    arange16 = torch.arange(STEP, device=device)
    n = tiles.shape[0]
    start = lists.tile_start[tiles]
    end = start + lists.tile_count[tiles]
    t = torch.ones(n, TILE * TILE, device=device)
    alive = torch.ones(n, TILE * TILE, device=device)
    prefix = torch.zeros(n, TILE * TILE, device=device)  # running sum of w * (c . dL/dC)
    tot_dot = (tot_feat * g_feat).sum(-1)
    g_t_final = g_t * tot_t
    for seg in segments:
        if seg.keep is not None:
            k = seg.keep
            start, end, t, alive, prefix = start[k], end[k], t[k], alive[k], prefix[k]
            tot_dot, g_t_final, g_feat = tot_dot[k], g_t_final[k], g_feat[k]
        for step in range(seg.first_step, seg.first_step + seg.num_steps):
            idx, rows = _gather_rows(table, start, end, step, arange16)
            alpha, raw = _step_alphas(rows, basis)
            one_minus, t_before, valid, weight = _transmittance(alpha, t * alive)
            feats = rows[..., 6:]
            c_dot = feats @ g_feat.transpose(1, 2)  # [L, 16g, 16p]: c_g . dL/dC_p
            w_dot = weight * c_dot
            running = torch.cumsum(w_dot, dim=1) + prefix[:, None, :]
            # dL/dalpha_g = T_g c_g.dC - (sum_{j>g} w_j c_j.dC + T_final dL/dT_final) / (1 - alpha_g)
            d_alpha = c_dot * t_before - (tot_dot[:, None, :] - running + g_t_final[:, None, :]) / one_minus
            live_pair = valid & (raw <= MAX_ALPHA) & (alpha > 0)
            d_q = d_alpha * raw * live_pair
            grad_rows[idx, :6] = d_q @ basis.T
            grad_rows[idx, 6:] = weight @ g_feat
            t = t - weight.sum(dim=1)
            alive = alive * valid[:, -1, :]
            prefix = prefix + w_dot.sum(dim=1)


class _CompositeTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, log_opacities, feats, lists: TileLists):
        device = means2d.device
        all_rows = torch.arange(lists.num_rows, device=device)
        coeffs, _ = _row_coefficients(means2d, conics, log_opacities, lists, all_rows)
        table = torch.cat([coeffs, feats[lists.row_gaussian]], dim=1)
        # A sentinel row that is never opaque pads lists shorter than a step.
        sentinel = torch.zeros(1, table.shape[1], device=device)
        sentinel[0, 0] = -1e30
        table = torch.cat([table, sentinel]).contiguous()
        basis = _pixel_basis(device)
        num_tiles = lists.tiles_x * lists.tiles_y
        feat_out = torch.zeros(num_tiles, TILE * TILE, feats.shape[1], device=device)
        t_out = torch.ones(num_tiles, TILE * TILE, device=device)
        nonempty = torch.nonzero(lists.tile_count > 0).squeeze(1)
        chunks = []
        for tiles in torch.split(nonempty, TILES_PER_CHUNK):
            f, tr, segments = _forward_chunk(table, basis, tiles, lists, feats.shape[1])
            feat_out[tiles], t_out[tiles] = f, tr
            chunks.append((tiles, segments))
        ctx.lists, ctx.chunks = lists, chunks
        ctx.save_for_backward(means2d, conics, log_opacities, feats, table, feat_out, t_out)
        return feat_out, t_out

    @staticmethod
    def backward(ctx, g_feat, g_t):
        means2d, conics, log_opacities, feats, table, feat_out, t_out = ctx.saved_tensors
        lists = ctx.lists
        basis = _pixel_basis(table.device)
        grad_rows = torch.zeros_like(table)
        g_feat = g_feat.contiguous()
        g_t = g_t.contiguous()
        for tiles, segments in ctx.chunks:
            _backward_chunk(
                table, basis, tiles, lists, segments, feat_out[tiles], t_out[tiles], g_feat[tiles], g_t[tiles], grad_rows
            )
        grad_rows = grad_rows[:-1]
        all_rows = torch.arange(lists.num_rows, device=table.device)
        _, (g, ex, ey, a, b, c) = _row_coefficients(means2d, conics, log_opacities, lists, all_rows)
        dk = grad_rows[:, :6]
        d0, d1, d2, d3, d4, d5 = dk.unbind(-1)
        # Chain rule from the six coefficients back to (mean, conic, log-opacity) of each row.
        d_a = -0.5 * ex * ex * d0 + ex * d1 - 0.5 * d3
        d_b = -ex * ey * d0 + ey * d1 + ex * d2 - d5
        d_c = -0.5 * ey * ey * d0 + ey * d2 - 0.5 * d4
        d_ex = -(a * ex + b * ey) * d0 + a * d1 + b * d2
        d_ey = -(c * ey + b * ex) * d0 + b * d1 + c * d2
        n = means2d.shape[0]
        grad_means2d = torch.zeros_like(means2d).index_add_(0, g, torch.stack([d_ex, d_ey], -1))
        grad_conics = torch.zeros_like(conics).index_add_(0, g, torch.stack([d_a, d_b, d_c], -1))
        grad_logop = torch.zeros(n, device=table.device).index_add_(0, g, d0)
        grad_feats = torch.zeros_like(feats).index_add_(0, g, grad_rows[:, 6:])
        return grad_means2d, grad_conics, grad_logop, grad_feats, None


def composite_tiles(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    feats: torch.Tensor,
    lists: TileLists,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite depth-sorted Gaussians over their tile lists.

    Args:
        means2d: ``[M, 2]`` pixel centres, conics ``[M, 3]``, opacities ``[M]`` in (0, 1],
            feats ``[M, C]`` per-Gaussian features (colour, depth...), all sorted front to back.
        lists: the tile lists of these Gaussians.

    Returns:
        Accumulated features ``[tiles_y * tiles_x, 16, C]`` and final transmittance
        ``[tiles_y * tiles_x, 16]``, per micro-tile and pixel (row-major within a tile).
    """
    log_opacities = torch.log(opacities.clamp(min=1e-30))
    return _CompositeTiles.apply(means2d, conics, log_opacities, feats, lists)


def tiles_to_image(tiled: torch.Tensor, lists: TileLists, height: int, width: int) -> torch.Tensor:
    """Rearrange per-tile pixels ``[T, 16, C]`` into an image ``[C, H, W]`` (cropped to H, W)."""
    c = tiled.shape[-1]
    img = tiled.reshape(lists.tiles_y, lists.tiles_x, TILE, TILE, c).permute(4, 0, 2, 1, 3)
    return img.reshape(c, lists.tiles_y * TILE, lists.tiles_x * TILE)[:, :height, :width]
