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
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


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


# ------------------------------------------------------------------------------------- window size from the routing
# A window of tm rows reads its expert's whole weight matrix, so an expert with s routed rows is read ceil(s / tm)
# times. Sizing tm from the MEAN rows an expert (m / g) makes about half the experts overflow into a second window at
# decode batch sizes where every expert is hit (20b batch 256, 120b batch 512: ~1.45x the routed bytes). The
# routing's distribution decides instead: with m rows routed uniformly over g experts an expert's rows are
# Binomial(m, 1/g) (each token's k experts are distinct, which only narrows the spread), and tm is the smallest
# tile whose expected re-reads stay within `tolerance`.
WINDOW_TILES = (16, 32, 64, 128)          # rows a window: powers of two (Triton block shapes), >= 16 for wgmma


def _binomial_pmf(m: int, p: float) -> np.ndarray:
    s = np.arange(m + 1, dtype=np.float64)
    log_pmf = (math.lgamma(m + 1) - np.array([math.lgamma(x + 1) + math.lgamma(m - x + 1) for x in s])
               + s * math.log(p) + (m - s) * math.log1p(-p))
    return np.exp(log_pmf)


@functools.lru_cache(maxsize=256)
def expected_reads(m: int, g: int, tm: int) -> float:
    """E[sum_g ceil(s_g / tm)] / E[#experts hit] for m rows routed uniformly over g experts: the expert bytes a
    window schedule of tm rows reads over the routed experts' bytes (1.0 = every routed expert read once)."""
    if m <= 0 or g <= 0:
        return 1.0
    if g == 1:
        return float(-(-m // tm))
    pmf = _binomial_pmf(m, 1.0 / g)
    s = np.arange(m + 1)
    hit = 1.0 - pmf[0]
    return float(np.sum(pmf * -(-s // tm)) / hit)


def window_rows(m: int, g: int, tolerance: float = 1.05) -> int:
    """Rows a window for m routed rows over g groups: the smallest of WINDOW_TILES whose expected_reads is within
    `tolerance`, else the largest (prefill: experts hold hundreds of rows and are read a few times, compute-bound)."""
    for tm in WINDOW_TILES:
        if tm >= m or expected_reads(m, g, tm) <= tolerance:
            return tm
    return WINDOW_TILES[-1]


def windows_per_group(group_sizes: jax.Array, num_rows: int, tm: int) -> jax.Array:
    """[G] windows (= reads of that group's weights) of the GPU kernel's schedule, counted by running
    window_of_visit over every visit of its grid, exactly as the kernel does."""
    g = group_sizes.shape[0]
    lanes = max(16, 1 << g.bit_length())
    sizes = jnp.zeros((lanes,), jnp.int32).at[:g + 1].set(with_tail(group_sizes, num_rows))
    group = jax.vmap(lambda v: window_of_visit(sizes, v, tm)[0])(jnp.arange(max_windows(num_rows, g, tm)))
    return jnp.sum(group[None, :] == jnp.arange(g)[:, None], axis=1)
