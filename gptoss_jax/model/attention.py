"""Grouped-query attention: q, k and v in one biased projection, YaRN RoPE, learned sinks, an optional window.

The cases, and where each reads its keys (all in place or in position order, so `attend` (model/attend.py) and the
kernels can skip what no query sees):
  no cache        keys = the chunk itself (a plain forward)
  sliding, decode the token is written into the layer's 128-slot ring first, which then holds exactly the window;
                  attention reads the ring in place from the stacked rings
  sliding, chunk  the old ring in position order, then the chunk; the new ring is taken from those keys and written
                  back whole (it depends on the old one, so XLA needs no copy of the stacked rings)
  full            the chunk is written at its positions (slot = position), then keys [0, kv_len) are read in place
                  from the stacked caches with the layer index
On one device the model's Kernels may name Pallas kernels (Kernels.attention): decode_attention for one token a
row, prefill_attention (flash style, returning the log-sum-exp; the sink then scales the output by
sigmoid(lse - sink)) for chunks with a cache. Everything else takes the XLA path.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax import sharding
from gptoss_jax.kernels import REFERENCE, Kernels, decode_attention, prefill_attention
from gptoss_jax.config import ModelConfig
from gptoss_jax.model.attend import attend
from gptoss_jax.model.common import param_from_spec, rms_norm
from gptoss_jax.model.rope import apply_rope, rope_cos_sin



def ring_positions(start: jax.Array, window: int) -> jax.Array:
    """Absolute position held by each slot of a `window`-slot ring after positions < start were written.

    start [B] -> [B, W]; -1 where a slot holds nothing of this sequence.
    """
    last = start[:, None] - 1
    slots = jnp.arange(window)[None, :]
    pos = last - jnp.mod(last - slots, window)
    return jnp.where(pos >= 0, pos, -1)


def _ring_in_order(ring, start):
    """ring [B, W, ...] holding positions < start (slot = position mod W) -> [B, W, ...] in position order: entry i
    holds position start - W + i (negative: nothing)."""
    w = ring.shape[1]
    idx = jnp.mod(start[:, None] + jnp.arange(w)[None], w)
    return jnp.take_along_axis(ring, idx[:, :, None, None], axis=1)


def _ring_after(keys, start, n, w):
    """The ring [B, W, ...] after a chunk: keys [B, W + T, ...] in position order from start - W (old ring, then the
    chunk), n [B] real tokens of the chunk; slot s takes the last position p < start + n with p = s mod W."""
    end = start + n
    p = (end - 1)[:, None] - jnp.mod((end - 1)[:, None] - jnp.arange(w)[None], w)
    return jnp.take_along_axis(keys, (p - start[:, None] + w)[:, :, None, None], axis=1)


class Attention(nn.Module):
    cfg: ModelConfig
    sliding: bool
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kernels: Kernels = REFERENCE   # resolved names (GptOss resolves them)

    @nn.compact
    def __call__(self, x, positions, cache=None, kv_len: int | None = None, layer=0):
        """x [B,T,H] residual stream, positions [B,T] per row: with a cache, consecutive positions then -1 padding
        (a chunk continuing the cached ones); without one, any positions (-1: padding).

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

        # q, k and v in one projection, grouped by KV head (params.py): y[..., g, j] is q head g*G + j for j < G,
        # k head g for j = G and v head g for j = G + 1
        y = jnp.einsum("bth,gjdh->btgjd", h, p("qkv_w").astype(dt), preferred_element_type=jnp.float32,
                       precision=precision) + p("qkv_b").astype(jnp.float32)
        G = cfg.q_per_kv
        q = sharding.constrain(y[..., :G, :].reshape(*y.shape[:2], cfg.num_heads, cfg.head_dim), mesh,
                               ("batch", "seq", "q_heads", "head_dim"))
        k = sharding.constrain(y[..., G, :], mesh, ("batch", "seq", "kv_heads", "head_dim"))
        v = y[..., G + 1, :]
        cos, sin = rope_cos_sin(cfg, positions)
        q = apply_rope(q, cos, sin).astype(dt)
        k = apply_rope(k, cos, sin).astype(dt)
        v = v.astype(dt)
        window = cfg.sliding_window if self.sliding else None

        new_cache, out = None, None
        # one device: the model's attention kernels (decode: one token a row; prefill: a chunk); else XLA
        kernel = self.kernels.attention if cache is not None and (mesh is None or mesh.size == 1) else "xla"
        decode = x.shape[1] == 1
        sinks = p("sinks")
        if cache is None:
            # keys = the chunk itself, at the queries' own positions
            with jax.named_scope("attend"):
                out = attend(q, k, v, positions, positions, sinks, window)
        elif self.sliding and decode:
            # write the token first: the ring then holds exactly the window, read in place (no copy of the rings)
            ring_k, ring_v, c = cache                          # [P, B, W, Nkv, D] for all sliding layers
            w = ring_k.shape[2]
            slot = jnp.where(positions >= 0, jnp.mod(positions, w), w)
            ring_k, ring_v = _write(ring_k, c, slot, k), _write(ring_v, c, slot, v)
            new_cache = (ring_k, ring_v)
            hi = jnp.clip(positions[:, 0] + 1, 0, w)
            with jax.named_scope("attend"):
                if kernel != "xla":
                    out = decode_attention(q[:, 0], ring_k, ring_v, c, jnp.zeros_like(hi), hi, sinks, span=w,
                                           impl=kernel)[:, None]
                else:
                    out = attend(q, ring_k, ring_v, positions, ring_positions(positions[:, 0] + 1, w), sinks,
                                 window, layer=c)
        elif self.sliding:
            # a chunk: the old ring in position order, then the chunk; the ring is rewritten from those keys (the
            # new ring depends on the old one, so it is read before it is overwritten, with no copy)
            ring_k, ring_v, c = cache
            w = ring_k.shape[2]
            start = positions[:, 0]
            n = jnp.sum(positions >= 0, axis=1)
            keys = jnp.concatenate([_ring_in_order(ring_k[c], start).astype(dt), k], axis=1)
            vals = jnp.concatenate([_ring_in_order(ring_v[c], start).astype(dt), v], axis=1)
            put = lambda ring, a: lax.dynamic_update_index_in_dim(ring, _ring_after(a, start, n, w).astype(
                ring.dtype), c, 0)
            new_cache = (put(ring_k, keys), put(ring_v, vals))
            with jax.named_scope("attend"):
                out = self._chunk_attention(kernel, q, keys, vals, positions, start - w, sinks, window)
        else:
            full_k, full_v, c = cache                          # [P, B, S, Nkv, D] for all full layers
            slot = jnp.where(positions >= 0, positions, full_k.shape[2])
            full_k, full_v = _write(full_k, c, slot, k), _write(full_v, c, slot, v)
            new_cache = (full_k, full_v)
            span = full_k.shape[2] if kv_len is None else kv_len
            with jax.named_scope("attend"):
                if kernel != "xla" and decode:
                    hi = jnp.clip(positions[:, 0] + 1, 0, span)
                    out = decode_attention(q[:, 0], full_k, full_v, c, jnp.zeros_like(hi), hi, sinks, span=span,
                                           impl=kernel)[:, None]
                else:
                    out = self._chunk_attention(kernel, q, full_k, full_v, positions, jnp.zeros_like(positions[:, 0]),
                                                sinks, None, layer=c, kv_len=span)

        out = sharding.constrain(out, mesh, ("batch", "seq", "q_heads", "head_dim"))
        y = jnp.einsum("btnd,hnd->bth", out.astype(dt), p("o_w").astype(dt), preferred_element_type=jnp.float32,
                       precision=precision)
        y = y + p("o_b").astype(jnp.float32)
        return sharding.constrain(y, mesh, ("batch", "seq", "embed")), new_cache

    @staticmethod
    def _chunk_attention(kernel, q, k, v, positions, key_start, sinks, window, layer=None, kv_len=None):
        """Attention of a chunk over keys in position order (key slot i at position key_start + i)."""
        if kernel == "xla":
            return attend(q, k, v, positions, None, sinks, window, key_start=key_start, layer=layer, kv_len=kv_len)
        return prefill_attention(q, k, v, positions, key_start, sinks, window=window, layer=layer, kv_len=kv_len,
                                 impl=kernel)


def _write(cache, layer, slot, x):
    """Scatter x [B,T,Nkv,D] into cache [P,B,S,Nkv,D] at (layer, b, slot[b,t]); out-of-range slots are dropped.

    Writes only the new entries, in place in the carried buffer (no per-layer copy of the cache).
    """
    b_idx = jnp.arange(x.shape[0])[:, None]
    return cache.at[layer, b_idx, slot].set(x.astype(cache.dtype), mode="drop")
