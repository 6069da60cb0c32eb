"""YaRN rotary embeddings, half-split (NeoX) layout, as gpt-oss applies them."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gptoss_jax.config import ModelConfig, yarn_band


def yarn_inv_freq(cfg: ModelConfig) -> tuple[np.ndarray, float]:
    """(inverse frequencies [head_dim/2] float32, concentration) computed in float32 like the reference."""
    d = cfg.head_dim
    freq = np.power(np.float32(cfg.rope_theta), np.arange(0, d, 2, dtype=np.float32) / np.float32(d),
                    dtype=np.float32)
    if cfg.rope_scaling_factor <= 1.0:
        return (np.float32(1.0) / freq).astype(np.float32), 1.0
    low, high = yarn_band(cfg)
    interpolation = np.float32(1.0) / (np.float32(cfg.rope_scaling_factor) * freq)
    extrapolation = np.float32(1.0) / freq
    ramp = (np.arange(d // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    mask = np.float32(1.0) - np.clip(ramp, 0.0, 1.0)
    inv_freq = interpolation * (np.float32(1.0) - mask) + extrapolation * mask
    return inv_freq.astype(np.float32), 0.1 * math.log(cfg.rope_scaling_factor) + 1.0


def rope_cos_sin(cfg: ModelConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos, sin [..., head_dim/2] in float32 (concentration folded in) for integer positions [...]."""
    inv_freq, concentration = yarn_inv_freq(cfg)
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    return jnp.cos(angles) * concentration, jnp.sin(angles) * concentration


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, heads, D]; cos/sin [B, T, D/2]. Rotates the two halves of D."""
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
