"""The gpt-oss network: embedding, (sliding, full) layer pairs scanned, final RMSNorm, untied unembedding.

Layers alternate between a 128-token sliding window (even index) and full attention (odd index); scanning over
PAIRS keeps one compiled body whatever the depth, and lets the two kinds keep differently shaped KV caches.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax import params as params_lib
from gptoss_jax import sharding
from gptoss_jax.config import ModelConfig
from gptoss_jax.kernels import REFERENCE, Kernels
from gptoss_jax.model.attention import Attention
from gptoss_jax.model.common import rms_norm
from gptoss_jax.model.moe import MoE

CACHE_AXES = ("layers", "batch", "cache_seq", "kv_heads", "head_dim")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Keys and values of every layer: ring buffers [P, B, W, Nkv, D] for the sliding layers, [P, B, S, Nkv, D]
    for the full layers (slot = absolute position). Positions live with the caller (the engine's slot lengths)."""
    sliding_k: jax.Array
    sliding_v: jax.Array
    full_k: jax.Array
    full_v: jax.Array

    @staticmethod
    def shapes(cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.bfloat16) -> "KVCache":
        ring = (cfg.num_pairs, batch, cfg.sliding_window, cfg.num_kv_heads, cfg.head_dim)
        full = (cfg.num_pairs, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
        s = lambda shape: jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))
        return KVCache(s(ring), s(ring), s(full), s(full))

    @staticmethod
    def zeros(cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.bfloat16, mesh=None) -> "KVCache":
        shapes = KVCache.shapes(cfg, batch, max_len, dtype)
        sh = sharding.named(mesh, CACHE_AXES)
        make = lambda s: jnp.zeros(s.shape, s.dtype, device=sh)
        return jax.tree.map(make, shapes)

    @staticmethod
    def bytes_per_token(cfg: ModelConfig, dtype=jnp.bfloat16) -> int:
        """Bytes one more token of context costs (full layers only; the rings are a fixed cost)."""
        return 2 * cfg.num_pairs * cfg.num_kv_heads * cfg.head_dim * jnp.dtype(dtype).itemsize

    @staticmethod
    def nbytes(cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.bfloat16) -> int:
        return sum(s.size * s.dtype.itemsize for s in jax.tree.leaves(KVCache.shapes(cfg, batch, max_len, dtype)))


class Block(nn.Module):
    cfg: ModelConfig
    sliding: bool
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kernels: Kernels = REFERENCE

    @nn.compact
    def __call__(self, x, positions, cache=None, kv_len=None, layer=0):
        kw = dict(dtype=self.dtype, mesh=self.mesh, kernels=self.kernels)
        with jax.named_scope("attention"):
            a, new_cache = Attention(self.cfg, self.sliding, **kw, name="attn")(x, positions, cache, kv_len, layer)
        x = x + a
        with jax.named_scope("moe"):
            x = x + MoE(self.cfg, self.sliding, **kw, name="mlp")(x, layer)
        return sharding.constrain(x, self.mesh, ("batch", "seq", "embed")), new_cache


class PairBlock(nn.Module):
    """Layers 2i (sliding window) and 2i+1 (full attention); the scan body."""
    cfg: ModelConfig
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kv_len: int | None = None
    kernels: Kernels = REFERENCE

    @nn.compact
    def __call__(self, carry, _):
        x, positions, cache, i, rows = carry
        kw = dict(cfg=self.cfg, dtype=self.dtype, mesh=self.mesh, kernels=self.kernels)
        if cache is None:
            x, _ = Block(sliding=True, name="sliding", **kw)(x, positions, layer=i)
            x, _ = Block(sliding=False, name="full", **kw)(x, positions, layer=i)
        elif rows is None:
            x, (sk, sv) = Block(sliding=True, name="sliding", **kw)(
                x, positions, (cache.sliding_k, cache.sliding_v, i), layer=i)
            x, (fk, fv) = Block(sliding=False, name="full", **kw)(
                x, positions, (cache.full_k, cache.full_v, i), self.kv_len, layer=i)
            cache = KVCache(sk, sv, fk, fv)
        else:
            # The batch is a few rows of a bigger cache (the engine prefilling some slots): this layer's rows are
            # gathered (keys up to kv_len only), updated, and only the new entries are written back, so neither
            # the other slots nor a whole slot's cache are ever copied.
            span = cache.full_k.shape[2] if self.kv_len is None else self.kv_len
            sub = lambda a, n: a.at[i, rows, :n].get(mode="fill", fill_value=0)[None]
            x, (sk, sv) = Block(sliding=True, name="sliding", **kw)(
                x, positions, (sub(cache.sliding_k, cache.sliding_k.shape[2]),
                               sub(cache.sliding_v, cache.sliding_v.shape[2]), 0), layer=i)
            x, (fk, fv) = Block(sliding=False, name="full", **kw)(
                x, positions, (sub(cache.full_k, span), sub(cache.full_v, span), 0), layer=i)
            ring = lambda a, new: a.at[i, rows].set(new[0], mode="drop")
            cache = KVCache(ring(cache.sliding_k, sk), ring(cache.sliding_v, sv),
                            _put_new_entries(cache.full_k, i, rows, positions, fk[0]),
                            _put_new_entries(cache.full_v, i, rows, positions, fv[0]))
        return (x, positions, cache, i + 1, rows), None


def _put_new_entries(full, layer, rows, positions, sub):
    """full [P,B,S,...] at (layer, rows[b], positions[b,t]) <- sub [Bp,span,...] at (b, positions[b,t]).

    Padding (position -1) and rows past the cache (row index >= B) write nothing."""
    b_idx = jnp.arange(sub.shape[0])[:, None]
    new = sub[b_idx, jnp.maximum(positions, 0)]
    slot = jnp.where(positions >= 0, positions, full.shape[2])
    return full.at[layer, rows[:, None], slot].set(new.astype(full.dtype), mode="drop")


class Transformer(nn.Module):
    cfg: ModelConfig
    dtype: jnp.dtype = jnp.bfloat16
    mesh: object = None
    kernels: Kernels = REFERENCE   # resolved kernel names, passed down to every layer

    @nn.compact
    def __call__(self, tokens, positions=None, cache: KVCache | None = None, *, kv_len: int | None = None,
                 logits_index=None, cache_rows=None):
        """tokens [B,T] int32; positions [B,T] (default 0..T-1; -1 marks padding); cache from KVCache.zeros.

        logits_index [B] (optional): return only the logits at that position of each row, [B, V].
        cache_rows [B] int32 (optional): row b of the batch is row cache_rows[b] of a cache with any number of rows
        (the engine prefilling a few of its slots); an index past the cache's rows marks a padding row.
        Returns (float32 logits [B,T,V] or [B,V], updated cache or None).
        """
        cfg, mesh = self.cfg, self.mesh
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        embed = self.param("embed", _spec_init(cfg, "embed"))
        x = jnp.take(embed, tokens, axis=0).astype(jnp.float32)
        x = sharding.constrain(x, mesh, ("batch", "seq", "embed"))

        # The block weights are declared stacked over layer pairs and BROADCAST into the scan (not sliced by it):
        # each block indexes them with the pair index it carries, so kernels read a layer in place.
        scan = nn.scan(PairBlock, variable_broadcast="params", split_rngs={"params": False}, length=cfg.num_pairs)
        rows = None if cache_rows is None else jnp.asarray(cache_rows, jnp.int32)
        carry = (x, positions.astype(jnp.int32), cache, jnp.int32(0), rows)
        (x, _, cache, _, _), _ = scan(cfg, self.dtype, mesh, kv_len, self.kernels, name="layers")(carry, None)

        if logits_index is not None:
            x = x[jnp.arange(b), logits_index][:, None]
        x = rms_norm(x, self.param("final_norm", _spec_init(cfg, "final_norm")), cfg.rms_norm_eps)
        unembed = self.param("unembed", _spec_init(cfg, "unembed"))
        precision = lax.Precision.HIGHEST if self.dtype == jnp.float32 else None
        with jax.named_scope("unembed"):
            logits = jnp.einsum("bth,vh->btv", x.astype(self.dtype), unembed.astype(self.dtype),
                                preferred_element_type=jnp.float32, precision=precision)
        logits = sharding.constrain(logits, mesh, ("batch", "seq", "vocab"))
        if logits_index is not None:
            logits = logits[:, 0]
        return logits, cache


def _spec_init(cfg: ModelConfig, name: str):
    spec = params_lib.model_specs(cfg)[name]
    return lambda key: params_lib.draw_on_device(jax.random.bits(key, (), jnp.uint32), spec)
