"""Grouped-query attention with qkv biases, YaRN RoPE, learned sinks and an optional sliding window.

One core, `attend`, serves every case: a plain forward (keys = the chunk itself), and the cached paths of the
engine (keys = a sliding layer's ring buffer plus the chunk, or a full layer's cache). Keys carry their absolute
positions; a key is visible to a query iff 0 <= k_pos <= q_pos (and q_pos - window < k_pos on sliding layers).
Softmax runs over [scores, sink] in float32 and the sink column is dropped, online over key blocks so memory stays
bounded for long caches. Decode steps on one device can instead take a Pallas kernel that reads the cache in place
(kernels.decode_attention), when the model's Kernels name one (Kernels.attention: "xla" everywhere but on a GPU).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax import sharding
from gptoss_jax.kernels import REFERENCE, Kernels, decode_attention
from gptoss_jax.config import ModelConfig
from gptoss_jax.model.common import param_from_spec, rms_norm
from gptoss_jax.model.rope import apply_rope, rope_cos_sin

KEY_BLOCK = 2048  # keys a step of the online softmax


def attend(q, k, v, q_pos, k_pos, sinks, window: int | None, *, key_block: int = KEY_BLOCK):
    """q [B,T,Nq,D], k/v [B,S,Nkv,D], q_pos [B,T], k_pos [B,S] (-1: empty slot), sinks [Nq] -> [B,T,Nq,D] f32."""
    b, t, nq, d = q.shape
    s, nkv = k.shape[1], k.shape[2]
    g = nq // nkv
    precision = lax.Precision.HIGHEST if q.dtype == jnp.float32 else None
    qg = q.reshape(b, t, nkv, g, d)
    scale = 1.0 / math.sqrt(d)
    sink = sinks.astype(jnp.float32).reshape(nkv, g)

    blk = min(key_block, s)
    n_blk = -(-s // blk)
    pad = n_blk * blk - s
    if pad:
        k = jnp.pad(k, ((0, 0), (0, pad), (0, 0), (0, 0)))
        v = jnp.pad(v, ((0, 0), (0, pad), (0, 0), (0, 0)))
        k_pos = jnp.pad(k_pos, ((0, 0), (0, pad)), constant_values=-1)

    def block(carry, i):
        m, l, acc = carry
        kb = lax.dynamic_slice_in_dim(k, i * blk, blk, 1)
        vb = lax.dynamic_slice_in_dim(v, i * blk, blk, 1)
        pb = lax.dynamic_slice_in_dim(k_pos, i * blk, blk, 1)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, kb, preferred_element_type=jnp.float32,
                            precision=precision) * scale
        visible = (pb[:, None, :] >= 0) & (pb[:, None, :] <= q_pos[:, :, None])
        if window is not None:
            visible &= pb[:, None, :] > q_pos[:, :, None] - window
        scores = jnp.where(visible[:, None, None], scores, -jnp.inf)
        m_new = jnp.maximum(m, scores.max(-1))
        p = jnp.exp(scores - m_new[..., None])
        corr = jnp.exp(m - m_new)
        l = l * corr + p.sum(-1)
        acc = acc * corr[..., None] + jnp.einsum("bkgts,bskd->bkgtd", p.astype(vb.dtype), vb,
                                                 preferred_element_type=jnp.float32, precision=precision)
        return (m_new, l, acc), None

    # the sink starts the running softmax: max = sink, sum = exp(sink - sink) = 1, no value
    m0 = jnp.broadcast_to(sink[None, :, :, None], (b, nkv, g, t))
    l0 = jnp.ones((b, nkv, g, t), jnp.float32)
    acc0 = jnp.zeros((b, nkv, g, t, d), jnp.float32)
    (m, l, acc), _ = lax.scan(block, (m0, l0, acc0), jnp.arange(n_blk))
    out = acc / l[..., None]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, nq, d)


def ring_positions(start: jax.Array, window: int) -> jax.Array:
    """Absolute position held by each slot of a `window`-slot ring after positions < start were written.

    start [B] -> [B, W]; -1 where a slot holds nothing of this sequence.
    """
    last = start[:, None] - 1
    slots = jnp.arange(window)[None, :]
    pos = last - jnp.mod(last - slots, window)
    return jnp.where(pos >= 0, pos, -1)


class Attention(nn.Module):
    cfg: ModelConfig
    sliding: bool
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kernels: Kernels = REFERENCE   # resolved names (GptOss resolves them)

    @nn.compact
    def __call__(self, x, positions, cache=None, kv_len: int | None = None, layer=0):
        """x [B,T,H] residual stream, positions [B,T] ascending per row (-1: padding).

        cache: None, or (k_all, v_all, c): the stacked caches of this layer kind and this layer's index c in them
        (ring buffers of `sliding_window` slots for sliding layers, full-length caches otherwise). Chunk positions
        must continue the cached ones. kv_len bounds the full-cache span read (a static length bucket).
        layer: this layer's index in the stacked weights of its kind (the layer-pair index).
        Returns (attention output [B,T,H] f32, updated (k_all, v_all) or None).
        """
        cfg, dt, mesh = self.cfg, self.dtype, self.mesh
        kind = "sliding" if self.sliding else "full"
        p = lambda name: param_from_spec(self, name, ("layers", kind, "attn", name))[layer]
        precision = lax.Precision.HIGHEST if dt == jnp.float32 else None
        h = rms_norm(x, p("norm"), cfg.rms_norm_eps).astype(dt)

        def proj(w, b):
            y = jnp.einsum("bth,ndh->btnd", h, w.astype(dt), preferred_element_type=jnp.float32, precision=precision)
            return y + b.astype(jnp.float32)

        q = sharding.constrain(proj(p("q_w"), p("q_b")), mesh, ("batch", "seq", "q_heads", "head_dim"))
        k = sharding.constrain(proj(p("k_w"), p("k_b")), mesh, ("batch", "seq", "kv_heads", "head_dim"))
        v = proj(p("v_w"), p("v_b"))
        cos, sin = rope_cos_sin(cfg, positions)
        q = apply_rope(q, cos, sin).astype(dt)
        k = apply_rope(k, cos, sin).astype(dt)
        v = v.astype(dt)
        window = cfg.sliding_window if self.sliding else None

        new_cache, out = None, None
        # decode step (one token a row) on one device: the kernel reads the cache in place, valid slots only
        kernel = self.kernels.attention if cache is not None and x.shape[1] == 1 else "xla"
        kernel = kernel if mesh is None or mesh.size == 1 else "xla"
        if cache is None:
            keys, vals, k_pos = k, v, positions
        elif self.sliding:
            ring_k, ring_v, c = cache                          # [P, B, W, Nkv, D] for all sliding layers
            w = ring_k.shape[2]
            keep = (positions >= 0) & (positions > positions.max(axis=1, keepdims=True) - w)
            slot = jnp.where(keep, jnp.mod(positions, w), w)   # only the last w of the chunk survive
            new_cache = (_write(ring_k, c, slot, k), _write(ring_v, c, slot, v))
            if kernel != "xla":
                # with the new token written, the ring holds exactly the window: slots [0, min(pos + 1, W))
                hi = jnp.clip(positions[:, 0] + 1, 0, w)
                out = decode_attention(q[:, 0], *new_cache, c, jnp.zeros_like(hi), hi, p("sinks"),
                                       impl=kernel)[:, None]
            else:
                keys = jnp.concatenate([ring_k[c].astype(dt), k], axis=1)
                vals = jnp.concatenate([ring_v[c].astype(dt), v], axis=1)
                k_pos = jnp.concatenate([ring_positions(positions[:, 0], w), positions], axis=1)
        else:
            full_k, full_v, c = cache                          # [P, B, S, Nkv, D] for all full layers
            slot = jnp.where(positions >= 0, positions, full_k.shape[2])
            full_k, full_v = _write(full_k, c, slot, k), _write(full_v, c, slot, v)
            new_cache = (full_k, full_v)
            span = full_k.shape[2] if kv_len is None else kv_len
            if kernel != "xla":
                hi = jnp.clip(positions[:, 0] + 1, 0, span)
                out = decode_attention(q[:, 0], full_k, full_v, c, jnp.zeros_like(hi), hi, p("sinks"),
                                       impl=kernel)[:, None]
            else:
                keys = lax.dynamic_slice_in_dim(full_k[c], 0, span, 1).astype(dt)
                vals = lax.dynamic_slice_in_dim(full_v[c], 0, span, 1).astype(dt)
                k_pos = jnp.broadcast_to(jnp.arange(span, dtype=jnp.int32)[None], (x.shape[0], span))

        if out is None:
            with jax.named_scope("attend"):
                out = attend(q, keys, vals, positions, k_pos, p("sinks"), window)
        out = sharding.constrain(out, mesh, ("batch", "seq", "q_heads", "head_dim"))
        y = jnp.einsum("btnd,hnd->bth", out.astype(dt), p("o_w").astype(dt), preferred_element_type=jnp.float32,
                       precision=precision)
        y = y + p("o_b").astype(jnp.float32)
        return sharding.constrain(y, mesh, ("batch", "seq", "embed")), new_cache


def _write(cache, layer, slot, x):
    """Scatter x [B,T,Nkv,D] into cache [P,B,S,Nkv,D] at (layer, b, slot[b,t]); out-of-range slots are dropped.

    Writes only the new entries, in place in the carried buffer (no per-layer copy of the cache).
    """
    b_idx = jnp.arange(x.shape[0])[:, None]
    return cache.at[layer, b_idx, slot].set(x.astype(cache.dtype), mode="drop")
