"""Ragged-group bookkeeping shared by the reference expert matmul and the Pallas kernels.

Two schedules over rows sorted by group:
- tile-aligned visits (`visit_schedule`): rows are cut into tiles of `tm` rows; a visit is one (tile, group) pair
  with at least one row of that group in that tile. Visits come in row order, so a kernel can accumulate each
  output tile in place (the reference, and the TPU kernel whose output block stays resident across visits); their
  number is at most num_tiles + min(rows, groups) - 1, a static bound.
- group-aligned windows (`window_of_visit`): each group is cut into windows of at most `tm` rows starting at its
  first row. Every output row belongs to exactly one window, so visits never share output rows (the GPU kernel
  writes each window straight out), and a group of at most `tm` rows is read once whatever its offset.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def row_tile(m: int, cap: int = 128) -> int:
    """Row-tile size: all rows in one tile when they are few (decode), `cap` rows otherwise."""
    if m <= cap:
        return max(8, -(-m // 8) * 8)
    return cap


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class VisitSchedule:
    tile: jax.Array    # [V] int32 row tile of each visit
    group: jax.Array   # [V] int32 group (expert) of each visit
    valid: jax.Array   # [V] bool  False for the padding visits at the end
    starts: jax.Array  # [G] int32 first row of each group
    ends: jax.Array    # [G] int32 one past its last row


def max_visits(num_tiles: int, num_rows: int, num_groups: int) -> int:
    return num_tiles + min(num_rows, num_groups) - 1


def with_tail(group_sizes: jax.Array, num_rows: int) -> jax.Array:
    """[G] sizes -> [G + 1]: the rows past sum(group_sizes) become a last pseudo-group (the kernels write zeros
    there, so every output row is written by exactly one visit)."""
    group_sizes = group_sizes.astype(jnp.int32)
    return jnp.concatenate([group_sizes, (num_rows - jnp.sum(group_sizes))[None]])


def max_windows(num_rows: int, num_groups: int, tm: int) -> int:
    """Static bound on the windows of `window_of_visit` for [G] groups plus the tail: sum_g ceil(s_g / tm) over at
    most min(rows, G + 1) non-empty groups is below rows / tm + that count."""
    return -(-num_rows // tm) + min(num_rows, num_groups + 1)


def window_of_visit(sizes: jax.Array, v, tm: int):
    """Group-aligned row windows: visit v -> (group, lo, hi), rows [lo, hi) of that group, hi - lo <= tm.

    `sizes` [L] holds the group sizes (tail included, then zeros to any length L); each group is cut into
    ceil(size / tm) windows starting at its first row, so a group of at most tm rows is ONE visit (its weights are
    read once) and no two visits share an output row (no accumulation across visits, no race). A v past the last
    window gives group >= the number of non-empty lanes, i.e. past every real group. Vector ops only (cumsum, sum,
    where), so the same code runs inside a Triton kernel, in interpret mode and in plain XLA.
    """
    lanes = jnp.arange(sizes.shape[0], dtype=jnp.int32)
    n_win = (sizes + (tm - 1)) // tm
    win_end = jnp.cumsum(n_win)
    row_end = jnp.cumsum(sizes)
    group = jnp.sum((win_end <= v).astype(jnp.int32))
    here = lanes == group
    first_win = jnp.sum(jnp.where(here, win_end - n_win, 0))
    start = jnp.sum(jnp.where(here, row_end - sizes, 0))
    end = jnp.sum(jnp.where(here, row_end, 0))
    lo = start + (v - first_win) * tm
    return group, lo, jnp.minimum(lo + tm, end)


def visit_schedule(group_sizes: jax.Array, num_tiles: int, tm: int) -> VisitSchedule:
    group_sizes = group_sizes.astype(jnp.int32)
    g_count = group_sizes.shape[0]
    ends = jnp.cumsum(group_sizes)
    starts = ends - group_sizes
    nonempty = group_sizes > 0
    first = starts // tm
    last = jnp.maximum(ends - 1, 0) // tm
    n_vis = jnp.where(nonempty, last - first + 1, 0)
    vis_end = jnp.cumsum(n_vis)
    vis_start = vis_end - n_vis
    total = vis_end[-1]
    v_max = max_visits(num_tiles, num_tiles * tm, g_count)
    v = jnp.arange(v_max, dtype=jnp.int32)
    g = jnp.clip(jnp.searchsorted(vis_end, v, side="right"), 0, g_count - 1).astype(jnp.int32)
    tile = first[g] + (v - vis_start[g])
    valid = v < total
    # padding visits repeat the last real one (harmless: they are skipped, and they keep tiles monotone)
    last_v = jnp.maximum(total - 1, 0)
    g_last = jnp.clip(jnp.searchsorted(vis_end, last_v, side="right"), 0, g_count - 1)
    tile_last = first[g_last] + (last_v - vis_start[g_last])
    g = jnp.where(valid, g, g_last).astype(jnp.int32)
    tile = jnp.clip(jnp.where(valid, tile, tile_last), 0, num_tiles - 1).astype(jnp.int32)
    return VisitSchedule(tile=tile, group=g, valid=valid, starts=starts, ends=ends)
