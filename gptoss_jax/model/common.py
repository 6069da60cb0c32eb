"""Pieces every module uses: parameters declared from the one weight description, RMSNorm."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gptoss_jax import params as params_lib
from gptoss_jax.config import ModelConfig


@functools.lru_cache(maxsize=None)
def _model_specs(cfg: ModelConfig):
    return params_lib.model_specs(cfg)


def param_from_spec(module, name: str, spec_path: tuple[str, ...]):
    """Declare parameter `name` of `module` with the shape and dtype of model_specs(cfg)[spec_path].

    Block weights are declared STACKED over layer pairs ([P, ...]) and the blocks index them with the layer they
    run: dense weights are sliced (small), expert weights are handed to the kernels whole with the layer index, so
    no layer's expert tensor is ever copied out of the stack.
    """
    spec = _model_specs(module.cfg)
    for k in spec_path:
        spec = spec[k]

    def init(key):
        leaves, treedef = jax.tree.flatten(spec, is_leaf=params_lib.is_spec)
        seeds = jax.random.bits(key, (len(leaves),), jnp.uint32)
        return jax.tree.unflatten(treedef, [params_lib.draw_on_device(seeds[i], s) for i, s in enumerate(leaves)])

    return module.param(name, init)


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    """float32 RMSNorm without offset: x * rsqrt(mean(x^2) + eps) * scale."""
    t = x.astype(jnp.float32)
    t = t * jax.lax.rsqrt(jnp.mean(t * t, axis=-1, keepdims=True) + eps)
    return t * scale.astype(jnp.float32)
