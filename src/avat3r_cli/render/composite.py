"""Front-to-back alpha compositing of depth-ordered micro-tile lists, with a hand-written backward.

Every live tile advances one block of 16 list entries per step. Over a tile, the exponent of a
Gaussian's alpha is a quadratic in the pixel offset, so one matrix product of six per-row
coefficients with a fixed 6x16 basis gives log-alpha for a [tiles, 16, 16] block. Rules (gsplat's):
alpha = min(0.999, o * exp(-sigma)); alpha < 1/255 is skipped; a pixel stops before the Gaussian
that would take its transmittance to 1e-4 or below. A tile leaves the live set when its list ends
or all its pixels have stopped, so hidden Gaussians cost almost nothing.

The backward replays the loop in forward order; the back-to-front sums it needs are the saved
per-pixel totals minus the running prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avat3r_cli.render.projection import ALPHA_THRESHOLD
from avat3r_cli.render.tiles import TILE, TileLists

PIXELS = TILE * TILE
STEP = 16  # list entries a tile advances per step; 16 keeps the small matrix products fast
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
# Each step's working set is TILES_PER_CHUNK * 256 elements: large fresh allocations page-fault,
# and about 1M elements per tensor was the measured sweet spot on 2 cores.
TILES_PER_CHUNK = 4096
_COMPACT_FRACTION = 0.125
_NUM_COEFFS = 6


def _pixel_basis(device: torch.device) -> torch.Tensor:
    """``[6, 16]`` monomials (1, u, v, u^2, v^2, uv) of the 16 pixel offsets from a tile centre."""
    offs = torch.arange(TILE, dtype=torch.float32, device=device) + 0.5 - TILE / 2.0
    v, u = torch.meshgrid(offs, offs, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def _param_table(means2d, conics, log_opacities, feats) -> torch.Tensor:
    """Per-Gaussian rows ``[M + 1, 6 + C]``: (x, y, a, b, c, log-opacity, features...).

    The extra last row is the sentinel that fills empty slots: never opaque.
    """
    table = torch.cat([means2d, conics, log_opacities[:, None], feats], dim=1)
    sentinel = torch.zeros(1, table.shape[1], device=table.device)
    sentinel[0, 5] = -1e30
    return torch.cat([table, sentinel]).contiguous()


def _coefficients(entries: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor):
    """Log-alpha coefficients ``[L, 16, 6]`` of gathered ``entries [L, 16, 6 + C]`` over tiles
    centred at (``cx [L]``, ``cy [L]``), and the terms the backward needs.

    -sigma = -(a (ex-u)^2 + 2b (ex-u)(ey-v) + c (ey-v)^2) / 2 with (ex, ey) the Gaussian's centre
    relative to the tile centre, expanded in monomials of the pixel offset (u, v). Offsets from
    the tile centre keep the terms small, so float32 loses little to cancellation.
    """
    ex = entries[..., 0] - cx[:, None]
    ey = entries[..., 1] - cy[:, None]
    a, b, c, log_o = entries[..., 2], entries[..., 3], entries[..., 4], entries[..., 5]
    bx, by = b * ex, b * ey
    k0 = log_o - 0.5 * (a * ex * ex + c * ey * ey) - bx * ey
    coeffs = torch.stack([k0, a * ex + by, c * ey + bx, -0.5 * a, -0.5 * c, -b], dim=-1)
    return coeffs, (ex, ey, a, b, c)


def _coefficient_grads(d_k: torch.Tensor, terms) -> torch.Tensor:
    """Chain rule from coefficient gradients ``[L, 16, 6]`` to (x, y, a, b, c, log-opacity)."""
    ex, ey, a, b, c = terms
    d0, d1, d2, d3, d4, d5 = d_k.unbind(-1)
    return torch.stack(
        [
            -(a * ex + b * ey) * d0 + a * d1 + b * d2,
            -(c * ey + b * ex) * d0 + b * d1 + c * d2,
            -0.5 * ex * ex * d0 + ex * d1 - 0.5 * d3,
            -ex * ey * d0 + ey * d1 + ex * d2 - d5,
            -0.5 * ey * ey * d0 + ey * d2 - 0.5 * d4,
            d0,
        ],
        dim=-1,
    )


@dataclass
class _Segment:
    """A run of steps over a fixed live set; ``keep`` selects it from the previous live set."""

    keep: torch.Tensor | None
    first_step: int
    num_steps: int


def _step_entries(lists: TileLists, start: torch.Tensor, end: torch.Tensor, step: int) -> torch.Tensor:
    """Gaussian indices ``[L, 16]`` the live tiles (runs ``start..end``) composite at ``step``.

    Past the end of a run the sentinel (never opaque) stands in.
    """
    idx = start[:, None] + (step * STEP + torch.arange(STEP, device=start.device))
    idx = torch.minimum(idx, end[:, None])  # the slot just past a run...
    idx.masked_fill_(idx == end[:, None], lists.num_rows)  # ...is replaced by the sentinel
    return lists.entries[idx]


def _composite_step(coeffs, basis, t_in):
    """One step for the live tiles: ``coeffs [L, 16, 6]``, transmittance in ``t_in [L, 16]``.

    Returns weights ``[L, 16 entries, 16 pixels]`` (0 past the stop), the stop mask, alpha before
    the clamp, 1 - alpha, and transmittance after each entry.
    """
    raw = torch.exp(coeffs @ basis)
    alpha = raw.clamp(max=MAX_ALPHA)
    torch.nn.functional.threshold(alpha, ALPHA_THRESHOLD, 0.0, inplace=True)
    one_minus = 1.0 - alpha
    t_after = torch.cumprod(one_minus, dim=1).mul_(t_in[:, None, :])
    valid = t_after > MIN_TRANSMITTANCE
    # alpha * T_before == alpha * T_after / (1 - alpha); 1 - alpha >= 0.001, so this is safe.
    weight = alpha.div_(one_minus).mul_(t_after).mul_(valid)
    return weight, valid, raw, one_minus, t_after


def _forward_chunk(params, basis, tiles, lists: TileLists, num_feats):
    """Composite ``tiles [L]``; features ``[L, 16, C]``, transmittance ``[L, 16]``, segments."""
    device = params.device
    n = tiles.shape[0]
    out_feat = torch.zeros(n, PIXELS, num_feats, device=device)
    out_t = torch.ones(n, PIXELS, device=device)
    live = torch.arange(n, device=device)
    start = lists.tile_start[tiles]
    end = start + lists.tile_count[tiles]
    cx, cy = lists.tile_centers(tiles)
    t = torch.ones(n, PIXELS, device=device)
    alive = torch.ones(n, PIXELS, device=device)
    acc = torch.zeros(n, PIXELS, num_feats, device=device)
    segments = [_Segment(None, 0, 0)]
    step = 0
    while live.numel() > 0:
        entries = params[_step_entries(lists, start, end, step)]
        coeffs, _ = _coefficients(entries, cx, cy)
        weight, valid, _, _, _ = _composite_step(coeffs, basis, t * alive)
        acc.baddbmm_(weight.transpose(1, 2), entries[..., _NUM_COEFFS:])
        t.sub_(weight.sum(dim=1))
        alive.mul_(valid[:, -1, :])
        step += 1
        segments[-1].num_steps += 1
        finished = (start + step * STEP >= end) | (alive.sum(dim=1) == 0)
        num_finished = int(finished.sum())
        if num_finished and (num_finished == live.numel() or num_finished > _COMPACT_FRACTION * live.numel()):
            out_feat[live[finished]] = acc[finished]
            out_t[live[finished]] = t[finished]
            keep = ~finished
            live, start, end, cx, cy = live[keep], start[keep], end[keep], cx[keep], cy[keep]
            t, alive, acc = t[keep], alive[keep], acc[keep]
            segments.append(_Segment(keep, step, 0))
    return out_feat, out_t, segments


def _backward_chunk(params, basis, tiles, lists: TileLists, segments, totals, grads, grad_params):
    """Replay a chunk's steps; accumulate d(loss)/d(param row) into ``grad_params [M + 1, 6 + C]``."""
    (tot_feat, tot_t), (g_feat, g_t) = totals, grads
    device = params.device
    n = tiles.shape[0]
    start = lists.tile_start[tiles]
    end = start + lists.tile_count[tiles]
    cx, cy = lists.tile_centers(tiles)
    t = torch.ones(n, PIXELS, device=device)
    alive = torch.ones(n, PIXELS, device=device)
    prefix = torch.zeros(n, PIXELS, device=device)  # running sum of w * (c . dL/dC)
    tot_dot = (tot_feat * g_feat).sum(-1)
    g_t_final = g_t * tot_t
    for seg in segments:
        if seg.keep is not None:
            k = seg.keep
            start, end, cx, cy = start[k], end[k], cx[k], cy[k]
            t, alive, prefix = t[k], alive[k], prefix[k]
            tot_dot, g_t_final, g_feat = tot_dot[k], g_t_final[k], g_feat[k]
        for step in range(seg.first_step, seg.first_step + seg.num_steps):
            gauss = _step_entries(lists, start, end, step)
            entries = params[gauss]
            coeffs, terms = _coefficients(entries, cx, cy)
            weight, valid, raw, one_minus, t_after = _composite_step(coeffs, basis, t * alive)
            c_dot = entries[..., _NUM_COEFFS:] @ g_feat.transpose(1, 2)  # [L, 16g, 16p]: c_g . dL/dC_p
            w_dot = weight * c_dot
            # dL/dalpha_g = T_g c_g.dC - (sum_{j>g} w_j c_j.dC + T_final dL/dT_final) / (1 - alpha_g), with
            # T_g = T_after_g / (1 - alpha_g) and the suffix sum = total - prefix - running sum to g:
            # numerator = T_after c.dC + running + (prefix - total - T_final dL/dT_final), one pass each.
            d_alpha = torch.cumsum(w_dot, dim=1).addcmul_(c_dot, t_after)
            d_alpha.add_((prefix - tot_dot - g_t_final)[:, None, :]).div_(one_minus)
            d_q = d_alpha.mul_(raw).mul_((weight > 0) & (raw <= MAX_ALPHA))
            d_entries = torch.cat([_coefficient_grads(d_q @ basis.T, terms), weight @ g_feat], dim=-1)
            grad_params.index_add_(0, gauss.reshape(-1), d_entries.reshape(-1, d_entries.shape[-1]))
            t.sub_(weight.sum(dim=1))
            alive.mul_(valid[:, -1, :])
            prefix.add_(w_dot.sum(dim=1))


class _CompositeTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, log_opacities, feats, lists: TileLists):
        device = means2d.device
        params = _param_table(means2d, conics, log_opacities, feats)
        basis = _pixel_basis(device)
        num_tiles = lists.tiles_x * lists.tiles_y
        feat_out = torch.zeros(num_tiles, PIXELS, feats.shape[1], device=device)
        t_out = torch.ones(num_tiles, PIXELS, device=device)
        chunks = []
        for tiles in torch.split(torch.nonzero(lists.tile_count > 0).squeeze(1), TILES_PER_CHUNK):
            f, tr, segments = _forward_chunk(params, basis, tiles, lists, feats.shape[1])
            feat_out[tiles], t_out[tiles] = f, tr
            chunks.append((tiles, segments))
        ctx.lists, ctx.chunks = lists, chunks
        ctx.save_for_backward(params, feat_out, t_out)
        return feat_out, t_out

    @staticmethod
    def backward(ctx, g_feat, g_t):
        params, feat_out, t_out = ctx.saved_tensors
        basis = _pixel_basis(params.device)
        grad_params = torch.zeros_like(params)
        g_feat, g_t = g_feat.contiguous(), g_t.contiguous()
        for tiles, segments in ctx.chunks:
            totals = (feat_out[tiles], t_out[tiles])
            _backward_chunk(params, basis, tiles, ctx.lists, segments, totals, (g_feat[tiles], g_t[tiles]), grad_params)
        grad_params = grad_params[:-1]
        return grad_params[:, :2], grad_params[:, 2:5], grad_params[:, 5], grad_params[:, _NUM_COEFFS:], None


def composite_tiles(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    feats: torch.Tensor,
    lists: TileLists,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite depth-sorted Gaussians over their tile lists; differentiable.

    Args:
        means2d: ``[M, 2]`` pixel centres, sorted front to back like every other input.
        conics: ``[M, 3]`` inverse 2D covariances (a, b, c).
        opacities: ``[M]`` in (0, 1].
        feats: ``[M, C]`` per-Gaussian features (colour, depth...).
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
