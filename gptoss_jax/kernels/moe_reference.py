"""Plain-jnp MXFP4 expert matmul: the reference every kernel is tested against, and the fallback on any backend.

Rows of `x` are sorted by expert (ragged groups, `group_sizes` long); the product visits (row tile, expert) pairs in
row order, dequantizes ONE expert at a time and multiplies the rows of that tile that belong to it. Only experts
that own rows are read (an empty group costs nothing), so a decode step reads just the routed experts, and no
expert tensor is ever dequantized whole.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax.kernels.groups import row_tile, visit_schedule
from gptoss_jax.mxfp4 import Mxfp4Weight, unpack


def expert_weight(w, g, dtype) -> jax.Array:
    """Expert g of w as a dense [N, K] array in `dtype` (dequantized if packed)."""
    if isinstance(w, Mxfp4Weight):
        blocks = lax.dynamic_index_in_dim(w.blocks, g, 0, keepdims=False)
        scales = lax.dynamic_index_in_dim(w.scales, g, 0, keepdims=False)
        return unpack(blocks, scales, dtype)
    return lax.dynamic_index_in_dim(w, g, 0, keepdims=False).astype(dtype)


def expert_matmul_reference(x: jax.Array, w, group_sizes: jax.Array, *, tile_m: int | None = None) -> jax.Array:
    """out[m] = x[m] @ W[group(m)].T for rows inside the groups; rows past sum(group_sizes) give zeros.

    x [M, K] (bf16 or f32: the compute dtype), w Mxfp4Weight [G, N, K] or a dense [G, N, K] array,
    group_sizes [G] int32 (rows sorted by group). Returns float32 [M, N].
    """
    m, k = x.shape
    n_groups = group_sizes.shape[0]
    n = (w.blocks.shape[1] if isinstance(w, Mxfp4Weight) else w.shape[1])
    tm = tile_m or row_tile(m)
    m_pad = -(-m // tm) * tm
    xp = jnp.pad(x, ((0, m_pad - m), (0, 0)))
    sched = visit_schedule(group_sizes, m_pad // tm, tm)
    precision = lax.Precision.HIGHEST if x.dtype == jnp.float32 else None

    def visit(out, v):
        tile, g, valid = sched.tile[v], sched.group[v], sched.valid[v]

        def run(out):
            rows = tile * tm + jnp.arange(tm)
            mine = (rows >= sched.starts[g]) & (rows < sched.ends[g])
            xt = lax.dynamic_slice_in_dim(xp, tile * tm, tm, 0)
            wt = expert_weight(w, g, x.dtype)
            y = jnp.einsum("mk,nk->mn", xt, wt, preferred_element_type=jnp.float32, precision=precision)
            y = jnp.where(mine[:, None], y, 0.0)
            acc = lax.dynamic_slice_in_dim(out, tile * tm, tm, 0)
            return lax.dynamic_update_slice_in_dim(out, acc + y, tile * tm, 0)

        return lax.cond(valid, run, lambda o: o, out), None

    out = jnp.zeros((m_pad, n), jnp.float32)
    out, _ = lax.scan(visit, out, jnp.arange(sched.tile.shape[0]))
    del n_groups, k
    return out[:m]
