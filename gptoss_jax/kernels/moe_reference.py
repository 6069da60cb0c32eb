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


def _index(a: jax.Array, layer, g) -> jax.Array:
    """a[g], or a[layer, g] for weights stacked over layers: ONE dynamic slice, which XLA fuses into its consumer
    (slicing the layer first would materialize the layer's whole expert tensor)."""
    if layer is None:
        return lax.dynamic_index_in_dim(a, g, 0, keepdims=False)
    start = (layer, g) + (0,) * (a.ndim - 2)
    return lax.dynamic_slice(a, start, (1, 1, *a.shape[2:]))[0, 0]


def expert_weight(w, g, dtype, layer=None) -> jax.Array:
    """Expert g (of layer `layer` when w is stacked over layers) as a dense [N, K] array in `dtype`."""
    if isinstance(w, Mxfp4Weight):
        return unpack(_index(w.blocks, layer, g), _index(w.scales, layer, g), dtype)
    return _index(w, layer, g).astype(dtype)


def expert_matmul_reference(x: jax.Array, w, group_sizes: jax.Array, *, tile_m: int | None = None,
                            layer=None, bias: jax.Array | None = None) -> jax.Array:
    """out[m] = x[m] @ W[group(m)].T (+ bias[group(m)]) for rows inside the groups; rows past sum(group_sizes) give
    zeros.

    x [M, K] (bf16 or f32: the compute dtype), w Mxfp4Weight [G, N, K] or a dense [G, N, K] array,
    group_sizes [G] int32 (rows sorted by group). With `layer` (an int32 scalar), w is stacked over layers,
    [P, G, N, K], and layer `layer` is used. bias (optional): [G, N], this layer's. Returns float32 [M, N].
    """
    m, k = x.shape
    n_groups = group_sizes.shape[0]
    lead = 0 if layer is None else 1
    n = (w.blocks.shape[1 + lead] if isinstance(w, Mxfp4Weight) else w.shape[1 + lead])
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
            wt = expert_weight(w, g, x.dtype, layer)
            y = jnp.einsum("mk,nk->mn", xt, wt, preferred_element_type=jnp.float32, precision=precision)
            if bias is not None:
                y = y + lax.dynamic_index_in_dim(bias, g, 0).astype(jnp.float32)
            y = jnp.where(mine[:, None], y, 0.0)
            acc = lax.dynamic_slice_in_dim(out, tile * tm, tm, 0)
            return lax.dynamic_update_slice_in_dim(out, acc + y, tile * tm, 0)

        return lax.cond(valid, run, lambda o: o, out), None

    out = jnp.zeros((m_pad, n), jnp.float32)
    out, _ = lax.scan(visit, out, jnp.arange(sched.tile.shape[0]))
    del n_groups, k
    return out[:m]


def add_group_bias(out: jax.Array, bias: jax.Array, group_sizes: jax.Array) -> jax.Array:
    """out [M, N] f32 plus bias[g] [G, N] on the rows of group g; rows past sum(group_sizes) stay as they are.

    The epilogue the GPU kernel applies in-kernel, in jnp for the other paths (so every path gives the same)."""
    m = out.shape[0]
    ends = jnp.cumsum(group_sizes.astype(jnp.int32))
    rows = jnp.arange(m, dtype=jnp.int32)
    # the group of each row: how many groups end at or before it (the tail past the groups: G)
    method = "compare_all" if m * ends.shape[0] <= (1 << 16) else "scan"
    group = jnp.searchsorted(ends, rows, side="right", method=method)
    padded = jnp.concatenate([bias.astype(jnp.float32), jnp.zeros((1, bias.shape[1]), jnp.float32)])
    return out + padded[group]
