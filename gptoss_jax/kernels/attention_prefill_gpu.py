"""Prefill attention (a chunk of queries against keys in position order), flash style, for the GPU (Pallas/Triton).

    o[b, t, h] = softmax_{visible keys}(q[b,t,h] . K[b, :, h // G] * D**-0.5) @ V[b, :, h // G]
    lse[b, t, h] = log sum_{visible keys} exp(scores)

Key slot i of row b sits at position key_start[b] + i (the model's layouts: a full cache, slot = position, read in
place from the stack [P, B, S, Nkv, D] with the layer index; a sliding layer's old ring in position order followed
by the chunk). A key is visible iff 0 <= k_pos <= q_pos (and q_pos - window < k_pos), and only slots < kv_len exist.

Grid (B, Nkv, query blocks). A program takes BLOCK_Q queries times the G query heads sharing one KV head, as one
[BLOCK_Q * G, D] tile (128 rows for gpt-oss: tensor-core sized, and each K/V block is loaded once for all G heads),
works out from the tile's positions which key blocks any of its rows can see, and loops only over those (a dynamic
trip count): blocks past the causal edge and, on sliding layers, before the window are never read. Online softmax in
float32, probabilities cast to the compute dtype for the value product, as the XLA path does.

The sink is not in the kernel: attention with a sink is the sink-free output times sigmoid(lse - sink) (the softmax
over [scores, sink] divides by L + e^sink where L = e^lse), applied by XLA after the call. A row with no visible key
gets lse = -inf and o = 0, so the product is 0, as in `model.attend`.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from gptoss_jax.kernels._triton import pltr
from gptoss_jax.kernels.attention_gpu import online_softmax_step

BLOCK_Q = 16
BLOCK_K = 64
_BIG = 2 ** 30


def _kernel(layer_ref, start_ref, qpos_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, *, rows: int, block_k: int,
            kv_len: int, window: int | None, scale: float):
    b, h, i = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    layer = layer_ref[0]
    key_start = start_ref[b]
    r0 = i * rows
    qp = qpos_ref[b, pl.ds(r0, rows)]                                           # [rows] query positions
    q = q_ref[b, h, pl.ds(r0, rows), :]                                         # [rows, D]
    qmax = jnp.max(qp)
    qmin = jnp.min(jnp.where(qp >= 0, qp, _BIG))
    hi = jnp.clip(qmax - key_start + 1, 0, kv_len)                              # slots past every row's position
    lo = jnp.maximum(0, -key_start)
    if window is not None:
        lo = jnp.maximum(lo, qmin - window + 1 - key_start)
    lo = jnp.minimum(lo, hi)
    first = lo // block_k
    n_blocks = jnp.maximum((hi + block_k - 1) // block_k - first, 0)

    def step(j, carry):
        m, l, acc = carry
        start = (first + j) * block_k
        slot = start + jnp.arange(block_k, dtype=jnp.int32)
        live = slot < kv_len
        k = pltr.load(k_ref.at[layer, b, pl.ds(start, block_k), h, :], mask=live[:, None], other=0)
        v = pltr.load(v_ref.at[layer, b, pl.ds(start, block_k), h, :], mask=live[:, None], other=0)
        scores = lax.dot_general(q, k.astype(q.dtype), (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32) * scale              # [rows, block_k]
        kp = key_start + slot
        vis = (live & (kp >= 0))[None, :] & (kp[None, :] <= qp[:, None])
        if window is not None:
            vis &= kp[None, :] > qp[:, None] - window
        scores = jnp.where(vis, scores, -jnp.inf)
        return online_softmax_step(m, l, acc, scores, v, q.dtype)       # m_new finite: m starts finite

    d = q.shape[-1]
    init = (jnp.full((rows,), -1e30, jnp.float32), jnp.zeros((rows,), jnp.float32), jnp.zeros((rows, d), jnp.float32))
    m, l, acc = lax.fori_loop(0, n_blocks, step, init)
    seen = l > 0
    o_ref[b, h, pl.ds(r0, rows), :] = acc / jnp.where(seen, l, 1.0)[:, None]
    lse_ref[b, h, pl.ds(r0, rows)] = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), -jnp.inf)


@functools.partial(jax.jit, static_argnames=("window", "kv_len", "block_q", "block_k", "interpret"))
def flash_attention(q, k, v, q_pos, key_start, *, layer=None, window: int | None = None, kv_len: int | None = None,
                    block_q: int = BLOCK_Q, block_k: int = BLOCK_K, interpret: bool = False):
    """q [B,T,Nq,D]; k/v [B,S,Nkv,D] or [P,B,S,Nkv,D] with `layer`; q_pos [B,T] (-1: padding); key_start [B].
    Returns (o [B,T,Nq,D] f32 without the sink, lse [B,T,Nq] f32)."""
    if layer is None:
        k, v, layer = k[None], v[None], 0
    b, t, nq, d = q.shape
    _, kb, s, nkv, kd = k.shape
    if kb != b or kd != d or nq % nkv:
        raise ValueError(f"flash_attention: q {q.shape} does not fit keys {k.shape}")
    kv_len = s if kv_len is None else min(kv_len, s)
    g = nq // nkv
    gp = 1 << (g - 1).bit_length()                                              # heads padded to a power of two
    tp = -(-t // block_q) * block_q
    qg = q.reshape(b, t, nkv, g, d)
    qg = jnp.pad(qg, ((0, 0), (0, tp - t), (0, 0), (0, gp - g), (0, 0)))
    q_rows = qg.transpose(0, 2, 1, 3, 4).reshape(b, nkv, tp * gp, d)             # row = query * gp + head
    pos_rows = jnp.repeat(jnp.pad(q_pos.astype(jnp.int32), ((0, 0), (0, tp - t)), constant_values=-1), gp, axis=1)
    rows = block_q * gp
    kernel = functools.partial(_kernel, rows=rows, block_k=block_k, kv_len=kv_len, window=window,
                               scale=1.0 / math.sqrt(d))
    o, lse = pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct((b, nkv, tp * gp, d), jnp.float32),
                   jax.ShapeDtypeStruct((b, nkv, tp * gp), jnp.float32)),
        grid=(b, nkv, tp // block_q),
        interpret=interpret,
        compiler_params=pltr.CompilerParams(num_warps=4, num_stages=2),
        name="prefill_attention",
    )(jnp.asarray(layer, jnp.int32).reshape(1), key_start.astype(jnp.int32), pos_rows, q_rows, k, v)
    o = o.reshape(b, nkv, tp, gp, d)[:, :, :t, :g].transpose(0, 2, 1, 3, 4).reshape(b, t, nq, d)
    lse = lse.reshape(b, nkv, tp, gp)[:, :, :t, :g].transpose(0, 2, 1, 3).reshape(b, t, nq)
    return o, lse


def prefill_attention(q, k, v, q_pos, key_start, sinks, *, layer=None, window: int | None = None,
                      kv_len: int | None = None, interpret: bool = False) -> jax.Array:
    """Attention with sinks [Nq]: the kernel's sink-free output times sigmoid(lse - sink). -> [B,T,Nq,D] f32."""
    o, lse = flash_attention(q, k, v, q_pos, key_start, layer=layer, window=window, kv_len=kv_len,
                             interpret=interpret)
    return o * jax.nn.sigmoid(lse - sinks.astype(jnp.float32))[..., None]
