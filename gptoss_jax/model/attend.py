"""The XLA attention core: online softmax over key blocks, queries in blocks, blocks nobody can see skipped.

    out[b, t, h] = softmax([q . K * D**-0.5 over visible keys, sink[h]])[:-1] @ V

A key is visible to a query iff 0 <= k_pos <= q_pos (and q_pos - window < k_pos on sliding layers). Key positions
are either implicit, `key_start[b] + slot` (the full caches, where slot = position, and the sliding layers' keys
laid out in position order), or explicit `k_pos [B, S]`. Per query block the loop visits only the key blocks some
row can see (a dynamic trip count): a prefill chunk's queries never touch the blocks past their causal edge or
before their window, a decode step never reads past the longest row. Memory holds one [B, Nkv, G, q_block,
key_block] score tile, never a [chunk, keys] one. Keys may be given stacked over layers ([P, B, S, Nkv, D] with
`layer`): blocks are sliced from the stack in place, so no per-layer copy of a cache is made.
Softmax runs in float32 with the sink as the initial running max (sum exp(sink - sink) = 1, no value), so a row
with no visible key gets 0, like the GPU kernels.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

QUERY_BLOCK = 512   # queries a step of the outer loop
KEY_BLOCK = 512     # keys a step of the online softmax
_BIG = 2 ** 30


def _key_bounds(k_pos, key_start, s: int, tk: int, n_k: int, b: int):
    """(min, max) position of each key block [B, n_k] (empty block: min BIG, max -1)."""
    if k_pos is None:
        first = key_start[:, None] + jnp.arange(n_k)[None] * tk
        last = key_start[:, None] + jnp.minimum((jnp.arange(n_k)[None] + 1) * tk, s) - 1
        return first, last
    kp = jnp.pad(k_pos, ((0, 0), (0, n_k * tk - s)), constant_values=-1).reshape(b, n_k, tk)
    lo = jnp.where(kp >= 0, kp, _BIG).min(-1)
    return lo, kp.max(-1)


def _visible_range(qp, kmin, kmax, window):
    """Key blocks [lo, hi) that some row of the query block qp [B, tq] sees (the hull over rows)."""
    qmax = qp.max(-1)
    qmin = jnp.where(qp >= 0, qp, _BIG).min(-1)
    vis = (kmin <= qmax[:, None]) & (kmax >= 0) & (qmax >= 0)[:, None]
    if window is not None:
        vis &= kmax > (qmin - window)[:, None]
    seen = vis.any(0)
    n_k = seen.shape[0]
    lo = jnp.argmax(seen)
    hi = n_k - jnp.argmax(seen[::-1])
    return jnp.where(seen.any(), lo, 0), jnp.where(seen.any(), hi, 0)


def attend(q, k, v, q_pos, k_pos, sinks, window: int | None, *, key_start=None, layer=None, kv_len=None,
           q_block: int = QUERY_BLOCK, key_block: int = KEY_BLOCK):
    """q [B,T,Nq,D]; k/v [B,S,Nkv,D] (or [P,B,S,Nkv,D] with `layer`); q_pos [B,T] (-1: padding);
    k_pos [B,S] explicit key positions (-1: empty), or None with key_start [B]; sinks [Nq]; kv_len: only keys
    [0, kv_len) exist. Returns [B,T,Nq,D] float32."""
    b, t, nq, d = q.shape
    s, nkv = k.shape[-3], k.shape[-2]
    if kv_len is not None:
        s = min(s, kv_len)
    g = nq // nkv
    precision = lax.Precision.HIGHEST if q.dtype == jnp.float32 else None
    scale = 1.0 / math.sqrt(d)
    sink = sinks.astype(jnp.float32).reshape(nkv, g)

    tq = min(q_block, t)
    n_q = -(-t // tq)
    if n_q * tq != t:
        q = jnp.pad(q, ((0, 0), (0, n_q * tq - t), (0, 0), (0, 0)))
        q_pos = jnp.pad(q_pos, ((0, 0), (0, n_q * tq - t)), constant_values=-1)
    tk = min(key_block, s)
    n_k = -(-s // tk)
    kmin, kmax = _key_bounds(k_pos, key_start, s, tk, n_k, b)

    def key_tile(a, start):
        if layer is None:
            return lax.dynamic_slice_in_dim(a, start, tk, 1)
        zero = jnp.int32(0)
        return lax.dynamic_slice(a, (jnp.asarray(layer, jnp.int32), zero, start, zero, zero),
                                 (1, b, tk, nkv, d))[0]

    def query_block(i):
        qb = lax.dynamic_slice_in_dim(q, i * tq, tq, 1).reshape(b, tq, nkv, g, d)
        qp = lax.dynamic_slice_in_dim(q_pos, i * tq, tq, 1)
        lo, hi = _visible_range(qp, kmin, kmax, window)

        def key_block_step(j, carry):
            m, l, acc = carry
            start = jnp.minimum(j * tk, s - tk)                    # the last block overlaps its predecessor
            slot = start + jnp.arange(tk)
            kb, vb = key_tile(k, start), key_tile(v, start)
            kp = (key_start[:, None] + slot[None] if k_pos is None
                  else lax.dynamic_slice_in_dim(k_pos, start, tk, 1))
            vis = (slot >= j * tk)[None, None, :] & (kp[:, None, :] >= 0) & (kp[:, None, :] <= qp[:, :, None])
            if window is not None:
                vis &= kp[:, None, :] > qp[:, :, None] - window
            scores = jnp.einsum("btkgd,bskd->bkgts", qb, kb.astype(qb.dtype), preferred_element_type=jnp.float32,
                                precision=precision) * scale
            scores = jnp.where(vis[:, None, None], scores, -jnp.inf)
            m_new = jnp.maximum(m, scores.max(-1))
            p = jnp.exp(scores - m_new[..., None])
            corr = jnp.exp(m - m_new)
            l = l * corr + p.sum(-1)
            acc = acc * corr[..., None] + jnp.einsum("bkgts,bskd->bkgtd", p.astype(qb.dtype), vb.astype(qb.dtype),
                                                     preferred_element_type=jnp.float32, precision=precision)
            return m_new, l, acc

        # the sink starts the running softmax: max = sink, sum = exp(sink - sink) = 1, no value
        m0 = jnp.broadcast_to(sink[None, :, :, None], (b, nkv, g, tq))
        init = (m0, jnp.ones((b, nkv, g, tq), jnp.float32), jnp.zeros((b, nkv, g, tq, d), jnp.float32))
        _, l, acc = lax.fori_loop(lo, jnp.maximum(hi, lo), key_block_step, init)
        return (acc / l[..., None]).transpose(0, 3, 1, 2, 4).reshape(b, tq, nq, d)

    if n_q == 1:
        return query_block(0)[:, :t]
    out = lax.map(query_block, jnp.arange(n_q))                    # [n_q, B, tq, Nq, D]
    return out.transpose(1, 0, 2, 3, 4).reshape(b, n_q * tq, nq, d)[:, :t]
