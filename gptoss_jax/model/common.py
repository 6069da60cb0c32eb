"""Pieces every module uses: parameters declared from the one weight description, RMSNorm."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gptoss_jax import params as params_lib
from gptoss_jax.config import ModelConfig


@functools.lru_cache(maxsize=None)
def _block_specs(cfg: ModelConfig):
    return params_lib.block_specs(cfg)


def param_from_spec(module, name: str, spec_path: tuple[str, ...]):
    """Declare parameter `name` of `module` with the shape/dtype of block_specs(cfg)[spec_path] (one layer)."""
    spec = _block_specs(module.cfg)
    for k in spec_path:
        spec = spec[k]

    def init(key):
        leaves, treedef = jax.tree.flatten(spec, is_leaf=params_lib.is_spec)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [params_lib.draw_on_device(k, s) for k, s in zip(keys, leaves)])

    return module.param(name, init)


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    """float32 RMSNorm without offset: x * rsqrt(mean(x^2) + eps) * scale."""
    t = x.astype(jnp.float32)
    t = t * jax.lax.rsqrt(jnp.mean(t * t, axis=-1, keepdims=True) + eps)
    return t * scale.astype(jnp.float32)
