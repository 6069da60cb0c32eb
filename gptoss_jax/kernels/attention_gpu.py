"""Decode attention (one new token a row) over a layer's KV cache, reading only each row's valid slots.

    out[b, h] = softmax([q[b,h] . K[b, lo_b:hi_b, h // G] * D**-0.5, sink[h]])[:-1] @ V[b, lo_b:hi_b, h // G]

The caches are the model's stacked ones, [P, B, S, Nkv, D] for all layers of a kind, with the layer index a
run-time scalar: the kernel reads its slots in place (slicing cache[layer] outside would copy it). Slot ranges
[lo_b, hi_b) are per row: the full-attention layers give [0, position + 1) (slot = position); the sliding layers'
ring buffer, once the new token is written, gives [0, min(position + 1, W)) (it then holds exactly the window), so
no position arithmetic happens in the kernel; a padding row (position -1) gives an empty range and a zero output,
as in `model.attention.attend`.

One Pallas kernel (Triton lowering), grid (B, Nkv, splits): a program takes the G = Nq/Nkv query heads that share
one KV head (a [16, D] tile, so the score and value products run on tensor cores) and one contiguous share of the
row's slots, and runs an online softmax over key blocks of `block_k` slots, looping only over the blocks that
intersect [lo_b, hi_b) (a dynamic trip count). Splitting the slots (flash-decoding) keeps all SMs busy at small
batch; the split partials (max, sum, accumulator) are merged by XLA together with the sink, which joins the
softmax as one more logit with no value. Float32 softmax, probabilities cast to the cache dtype for the value
product, like the XLA path.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from gptoss_jax.kernels._triton import pltr

TARGET_PROGRAMS = 264   # about two programs an SM on an H100 (132 SMs)
MIN_SPLIT_SLOTS = 256


def num_splits(batch: int, kv_heads: int, slots: int, block_k: int) -> int:
    """Slot splits a row: enough programs to fill the GPU, each at least MIN_SPLIT_SLOTS slots long. slots: the
    span in use (the engine's key-span bucket), not the cache's allocation: at max_len 131072 and a 1k context,
    splits sized by the allocation would leave all but the first few programs without work."""
    want = -(-TARGET_PROGRAMS // (batch * kv_heads))
    return max(1, min(want, slots // max(MIN_SPLIT_SLOTS, block_k)))


def online_softmax_step(m, l, acc, scores, v, dtype):
    """One key block of an online softmax: running max m [rows], sum l [rows] and output acc [rows, d] (float32)
    updated with the block's scores [rows, block_k] (masked entries -inf; m_new must come out finite) and values
    v [block_k, d], multiplied in `dtype`."""
    m_new = jnp.maximum(m, jnp.max(scores, axis=1))
    p = jnp.exp(scores - m_new[:, None])
    corr = jnp.exp(m - m_new)
    l = l * corr + jnp.sum(p, axis=1)
    acc = acc * corr[:, None] + lax.dot_general(p.astype(dtype), v.astype(dtype), (((1,), (0,)), ((), ())),
                                                preferred_element_type=jnp.float32)
    return m_new, l, acc


def _kernel(layer_ref, lo_ref, hi_ref, q_ref, k_ref, v_ref, m_ref, l_ref, acc_ref, *, g: int, gp: int,
            block_k: int, chunk: int, slots: int, scale: float):
    b, h, s = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    layer = layer_ref[0]
    start = jnp.maximum(lo_ref[b], s * chunk)
    end = jnp.minimum(jnp.minimum(hi_ref[b], (s + 1) * chunk), slots)
    n_blocks = jnp.maximum(end - start + (block_k - 1), 0) // block_k
    head = jnp.arange(gp, dtype=jnp.int32)
    q = pltr.load(q_ref.at[b, h, pl.ds(0, gp), :], mask=(head < g)[:, None], other=0)      # [gp, D]

    def step(i, carry):
        m, l, acc = carry
        first = start + i * block_k
        slot = first + jnp.arange(block_k, dtype=jnp.int32)
        live = slot < end
        k = pltr.load(k_ref.at[layer, b, pl.ds(first, block_k), h, :], mask=live[:, None], other=0)
        v = pltr.load(v_ref.at[layer, b, pl.ds(first, block_k), h, :], mask=live[:, None], other=0)
        scores = lax.dot_general(q, k.astype(q.dtype), (((1,), (1,)), ((), ())),
                                 preferred_element_type=jnp.float32) * scale                # [gp, block_k]
        scores = jnp.where(live[None, :], scores, -jnp.inf)
        return online_softmax_step(m, l, acc, scores, v, q.dtype)       # every block has a live slot

    d = q.shape[-1]
    init = (jnp.full((gp,), -jnp.inf, jnp.float32), jnp.zeros((gp,), jnp.float32), jnp.zeros((gp, d), jnp.float32))
    m, l, acc = lax.fori_loop(0, n_blocks, step, init)
    m_ref[b, h, s, :] = m
    l_ref[b, h, s, :] = l
    acc_ref[b, h, s, :, :] = acc


@functools.partial(jax.jit, static_argnames=("span", "block_k", "splits", "interpret"))  # see moe_gpu.mxfp4_matmul_pallas
def decode_attention(q: jax.Array, k_cache: jax.Array, v_cache: jax.Array, layer, lo: jax.Array, hi: jax.Array,
                     sinks: jax.Array, *, span: int | None = None, block_k: int = 64, splits: int | None = None,
                     interpret: bool = False) -> jax.Array:
    """q [B, Nq, D]; k/v_cache [P, B, S, Nkv, D]; layer int; lo/hi [B] slot range (hi <= span); sinks [Nq];
    span: slots [0, span) in use (default S) -> f32 [B, Nq, D]."""
    b, nq, d = q.shape
    _, cb, slots, nkv, cd = k_cache.shape
    slots = slots if span is None else min(span, slots)
    if cb != b or cd != d or nq % nkv:
        raise ValueError(f"decode_attention: q {q.shape} does not fit caches {k_cache.shape}")
    g = nq // nkv
    gp = max(16, 1 << (g - 1).bit_length())
    splits = splits or num_splits(b, nkv, slots, block_k)
    per_split = -(-slots // splits)
    chunk = -(-per_split // block_k) * block_k
    kernel = functools.partial(_kernel, g=g, gp=gp, block_k=block_k, chunk=chunk, slots=slots,
                               scale=1.0 / math.sqrt(d))
    part = lambda *tail: jax.ShapeDtypeStruct((b, nkv, splits, *tail), jnp.float32)
    m, l, acc = pl.pallas_call(
        kernel,
        out_shape=(part(gp), part(gp), part(gp, d)),
        grid=(b, nkv, splits),
        interpret=interpret,
        compiler_params=pltr.CompilerParams(num_warps=4, num_stages=2),
        name="decode_attention",
    )(jnp.asarray(layer, jnp.int32).reshape(1), lo.astype(jnp.int32), hi.astype(jnp.int32),
      q.reshape(b, nkv, g, d), k_cache, v_cache)
    m, l, acc = m[..., :g], l[..., :g], acc[..., :g, :]
    sink = sinks.astype(jnp.float32).reshape(nkv, g)[None]                    # [1, Nkv, G]
    top = jnp.maximum(jnp.max(m, axis=2), sink)                               # [B, Nkv, G]
    w = jnp.exp(m - top[:, :, None])                                          # empty splits: exp(-inf) = 0
    denom = jnp.exp(sink - top) + jnp.sum(l * w, axis=2)
    out = jnp.sum(acc * w[..., None], axis=2) / denom[..., None]
    return out.reshape(b, nq, d)
