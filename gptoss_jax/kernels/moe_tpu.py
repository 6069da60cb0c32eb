"""MXFP4 expert matmul for TPUs: a Mosaic (Pallas TPU) grouped matmul in the style of megablox.

    out[m] = x[m] @ W[group(m)].T,  x [M, K] sorted by group, W MXFP4 [G, N, K], f32 out [M, N]

Design:
- Scalar-prefetched metadata (SMEM): the tile-aligned visit schedule of `groups.visit_schedule` over the groups
  plus a tail pseudo-group for the rows past sum(group_sizes). Grid (N tiles, visits); BlockSpec index maps read
  the metadata, so each visit DMAs its row tile of x and its group's weight tile; consecutive visits of one row tile
  keep the output block resident in VMEM and accumulate into it (masked to their rows). Tail and padding visits map
  to the previous weight block, so Pallas issues no DMA for them, and skip all compute.
- Whole-K tiles (K/2 bytes a row): gpt-oss's K = 2880 is not a multiple of the 128-lane tile in bytes or values,
  so K is never split. x is split into even and odd columns outside the kernel so the low and high nibbles
  multiply their own half (no lane interleave inside the kernel): acc = x_even @ W_lo.T + x_odd @ W_hi.T.
- Dequantization in VMEM with VPU integer ops (`dequant.fp4_values_f32`); the per-block scale is broadcast along
  lanes by a one-hot matmul on the MXU (scales [bn, K/32] @ E [K/32, K/2]), which needs no lane reshapes. That
  costs K/32 MACs per weight on the MXU, well under its rate at decode shapes; measure before trusting at prefill.

Not measured on any TPU (none was available): the Mosaic compile itself (libtpu) has not run, only the Python
lowering and interpret mode. The blocks are read through a [G, N, K/2] view; on TPU that reshape of the
[G, N, K/32, 16] parameter may cost a relayout copy, in which case the loader should store that view.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from gptoss_jax.kernels import dequant
from gptoss_jax.kernels.groups import visit_schedule, with_tail
from gptoss_jax.kernels.moe_reference import add_group_bias, expert_matmul_reference
from gptoss_jax.mxfp4 import BLOCK, Mxfp4Weight

VMEM_LIMIT_BYTES = 64 * 1024 * 1024


def _row_tile(m: int) -> int:
    """Rows a tile: a multiple of 16 (bf16 sublane packing), at most 128."""
    return min(128, max(16, -(-m // 16) * 16))


def _kernel(layer_ref, tile_ref, group_ref, wgroup_ref, valid_ref, starts_ref, ends_ref,
            x_even_ref, x_odd_ref, blocks_ref, scales_ref, expand_ref, out_ref, *, tm: int, g: int):
    del layer_ref, wgroup_ref
    v = pl.program_id(1)
    tile, group = tile_ref[v], group_ref[v]

    @pl.when(jnp.logical_or(v == 0, tile != tile_ref[jnp.maximum(v - 1, 0)]))
    def _():
        out_ref[...] = jnp.zeros_like(out_ref)

    @pl.when(jnp.logical_and(valid_ref[v] != 0, group < g))
    def _():
        packed = blocks_ref[0, 0].astype(jnp.int32)                                  # [bn, K/2]
        scale = dequant.pow2_from_bytes(scales_ref[0, 0], 0).astype(jnp.bfloat16)   # [bn, K/32], exact
        scale = jnp.dot(scale, expand_ref[...], preferred_element_type=jnp.float32)  # [bn, K/2]
        dt = x_even_ref.dtype
        w_lo = (dequant.fp4_values_f32(packed & 15) * scale).astype(dt)
        w_hi = (dequant.fp4_values_f32(packed >> 4) * scale).astype(dt)
        nt = (((1,), (1,)), ((), ()))
        y = lax.dot_general(x_even_ref[...], w_lo, nt, preferred_element_type=jnp.float32)
        y += lax.dot_general(x_odd_ref[...], w_hi, nt, preferred_element_type=jnp.float32)
        rows = tile * tm + lax.broadcasted_iota(jnp.int32, y.shape, 0)
        mine = (rows >= starts_ref[group]) & (rows < ends_ref[group])
        out_ref[...] += jnp.where(mine, y, 0.0)


@functools.partial(jax.jit, static_argnames=("block_n", "interpret"))   # jitted: see moe_gpu.mxfp4_matmul_pallas
def mxfp4_matmul_tpu(x: jax.Array, blocks: jax.Array, scales: jax.Array, group_sizes: jax.Array, layer=None, *,
                     block_n: int = 128, interpret=False) -> jax.Array:
    """x [M, K], blocks [G, N, K/32, 16] u8, scales [G, N, K/32] u8, group_sizes [G] -> f32 [M, N].

    With `layer`, blocks/scales carry a leading layer axis ([P, G, ...]) and that layer's experts are DMA'd directly.
    """
    if layer is None:
        blocks, scales, layer = blocks[None], scales[None], 0
    m, k = x.shape
    p, g, n = blocks.shape[:3]
    tm = _row_tile(m)
    m_pad = -(-m // tm) * tm
    sched = visit_schedule(with_tail(group_sizes, m_pad), m_pad // tm, tm)
    # a visit that computes nothing (tail group, padding) reuses the weight block of the visit before it: no DMA
    real = sched.valid & (sched.group < g)
    last_real = lax.cummax(jnp.where(real, jnp.arange(real.shape[0]), -1), axis=0)
    wgroup = jnp.where(last_real >= 0, sched.group[jnp.maximum(last_real, 0)], 0)
    xp = jnp.pad(x, ((0, m_pad - m), (0, 0)))
    x_even, x_odd = xp[:, 0::2], xp[:, 1::2]
    nb = k // BLOCK
    expand = (jnp.arange(k // 2)[None, :] // (BLOCK // 2) == jnp.arange(nb)[:, None]).astype(jnp.bfloat16)
    bn = n if n <= block_n else block_n
    row_map = lambda j, v, layer, tile, *_: (tile[v], 0)
    weight_map = lambda j, v, layer, tile, group, wgroup, *_: (layer[0], wgroup[v], j, 0)
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=7,
        grid=(pl.cdiv(n, bn), sched.tile.shape[0]),
        in_specs=[
            pl.BlockSpec((tm, k // 2), row_map),
            pl.BlockSpec((tm, k // 2), row_map),
            pl.BlockSpec((1, 1, bn, k // 2), weight_map),
            pl.BlockSpec((1, 1, bn, nb), weight_map),
            pl.BlockSpec((nb, k // 2), lambda *_: (0, 0)),
        ],
        out_specs=pl.BlockSpec((tm, bn), lambda j, v, layer, tile, *_: (tile[v], j)),
    )
    out = pl.pallas_call(
        functools.partial(_kernel, tm=tm, g=g),
        out_shape=jax.ShapeDtypeStruct((m_pad, n), jnp.float32),
        grid_spec=grid_spec,
        interpret=interpret,
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary"),
                                             vmem_limit_bytes=VMEM_LIMIT_BYTES),
        name="mxfp4_expert_matmul_tpu",
    )(jnp.asarray(layer, jnp.int32).reshape(1), sched.tile, sched.group, wgroup, sched.valid.astype(jnp.int32),
      sched.starts, sched.ends, x_even, x_odd, blocks.reshape(p, g, n, k // 2), scales, expand)
    return out[:m]


def expert_matmul_tpu(x: jax.Array, w, group_sizes: jax.Array, *, layer=None, interpret=False,
                      bias: jax.Array | None = None) -> jax.Array:
    """`kernels.expert_matmul` on a TPU (bias added in jnp after the kernel); the reference for dense weights or
    where no TPU backend is present."""
    if not isinstance(w, Mxfp4Weight) or (not interpret and jax.default_backend() != "tpu"):
        return expert_matmul_reference(x, w, group_sizes, layer=layer, bias=bias)
    out = mxfp4_matmul_tpu(x, w.blocks, w.scales, group_sizes, layer, interpret=interpret)
    return out if bias is None else add_group_bias(out, bias, group_sizes)
