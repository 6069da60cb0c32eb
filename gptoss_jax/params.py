"""The one description of every weight: shape, dtype, logical axes and how to draw it at random.

Everything else derives from `model_specs(cfg)`: the Flax modules read their parameter shapes from it, sharding maps
its logical axes through the table in sharding.py, the loader fills it from checkpoint tensors (via the name maps in
checkpoint/layouts.py), the synthetic writer draws it, and Orbax restores onto it.

Tree (P = num_layers / 2 layer pairs; every block leaf is stacked on a leading `layers` axis):
  embed [V, H]                      final_norm [H] f32          unembed [V, H]
  layers/{sliding,full}/attn/  norm [H] f32, qkv_w [Nkv, G+2, D, H], qkv_b [Nkv, G+2, D], o_w [H, Nq, D], o_b [H],
                               sinks [Nq]
  layers/{sliding,full}/mlp/   norm [H] f32, gate_w [E, H], gate_b [E], mlp1_w MXFP4 [E, 2I, H], mlp1_b [E, 2I],
                               mlp2_w MXFP4 [E, H, I], mlp2_b [E, H]

q, k and v are ONE projection (one einsum, one bias add), grouped by KV head: G = Nq / Nkv, and row j of KV group g
is q head g*G + j for j < G (the GQA order: q head n reads KV head n // G), k head g for j = G and v head g for
j = G + 1. Tensor parallelism splits the groups, so a device holding KV heads [g0, g1) holds exactly the q heads
that read them. Checkpoints store q, k and v apart (checkpoint/layouts.py maps their rows onto the groups).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gptoss_jax import sharding
from gptoss_jax.config import ModelConfig
from gptoss_jax.mxfp4 import BLOCK, BYTES_PER_BLOCK, Mxfp4Weight

PAIR_KINDS = ("sliding", "full")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One array: shape, dtype, logical axes, and the random draw the synthetic writer uses.

    init: ("normal", std) | ("ones_noise", std) | ("mxfp4_blocks", 0) | ("mxfp4_scales", target_std)
    """
    shape: tuple[int, ...]
    dtype: str
    axes: tuple[str | None, ...]
    init: tuple[str, float] = ("normal", 0.02)

    def __post_init__(self):
        assert len(self.shape) == len(self.axes), (self.shape, self.axes)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(jnp.dtype(self.dtype)).itemsize

    def stacked(self, n: int) -> "ParamSpec":
        return dataclasses.replace(self, shape=(n, *self.shape), axes=("layers", *self.axes))

    def unstacked(self) -> "ParamSpec":
        assert self.axes[0] == "layers"
        return dataclasses.replace(self, shape=self.shape[1:], axes=self.axes[1:])


def is_spec(x: Any) -> bool:
    return isinstance(x, ParamSpec)


def _mxfp4(lead: tuple[int, ...], lead_axes: tuple[str | None, ...], k: int) -> Mxfp4Weight:
    nb = k // BLOCK
    # Target weight std ~ 1/sqrt(fan-in), so random models have activations and logits of order one.
    return Mxfp4Weight(
        blocks=ParamSpec((*lead, nb, BYTES_PER_BLOCK), "uint8", (*lead_axes, "mxfp4_block", None), ("mxfp4_blocks", 0)),
        scales=ParamSpec((*lead, nb), "uint8", (*lead_axes, "mxfp4_block"), ("mxfp4_scales", 1 / math.sqrt(k))),
    )


def block_specs(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """One transformer block (one layer): attention and MoE weights, unstacked."""
    H, D, Nq, Nkv, E, I = (cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, cfg.num_experts,
                           cfg.intermediate_size)
    G = cfg.q_per_kv
    bf16, f32 = "bfloat16", "float32"
    w_in = ("normal", 1 / math.sqrt(H))
    bias = ("normal", 0.02)
    attn = {
        "norm": ParamSpec((H,), f32, ("embed",), ("ones_noise", 0.1)),
        "qkv_w": ParamSpec((Nkv, G + 2, D, H), bf16, ("kv_heads", "qkv", "head_dim", "embed"), w_in),
        "qkv_b": ParamSpec((Nkv, G + 2, D), bf16, ("kv_heads", "qkv", "head_dim"), bias),
        "o_w": ParamSpec((H, Nq, D), bf16, ("embed", "q_heads", "head_dim"), ("normal", 1 / math.sqrt(Nq * D))),
        "o_b": ParamSpec((H,), bf16, ("embed",), bias),
        "sinks": ParamSpec((Nq,), bf16, ("q_heads",), ("normal", 1.0)),
    }
    mlp = {
        "norm": ParamSpec((H,), f32, ("embed",), ("ones_noise", 0.1)),
        "gate_w": ParamSpec((E, H), bf16, (None, "embed"), w_in),
        "gate_b": ParamSpec((E,), bf16, (None,), bias),
        "mlp1_w": _mxfp4((E, 2 * I), ("experts", "expert_mlp"), H),
        "mlp1_b": ParamSpec((E, 2 * I), bf16, ("experts", "expert_mlp"), bias),
        "mlp2_w": _mxfp4((E, H), ("experts", "embed"), I),
        "mlp2_b": ParamSpec((E, H), bf16, ("experts", "embed"), bias),
    }
    return {"attn": attn, "mlp": mlp}


def model_specs(cfg: ModelConfig) -> dict[str, Any]:
    H, V = cfg.hidden_size, cfg.vocab_size
    block = block_specs(cfg)
    stacked = jax.tree.map(lambda s: s.stacked(cfg.num_pairs), block, is_leaf=is_spec)
    return {
        "embed": ParamSpec((V, H), "bfloat16", ("vocab", "embed"), ("normal", 1.0)),
        "layers": {kind: stacked for kind in PAIR_KINDS},
        "final_norm": ParamSpec((H,), "float32", ("embed",), ("ones_noise", 0.1)),
        "unembed": ParamSpec((V, H), "bfloat16", ("vocab", "embed"), ("normal", 1 / math.sqrt(H))),
    }


# ------------------------------------------------------------------------------------------------ tree utilities
def path_str(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:
            parts.append(str(k))
    return "/".join(parts)


def flat_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
    """{'layers/sliding/attn/qkv_w': ParamSpec, ...} in a stable order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(model_specs(cfg), is_leaf=is_spec)
    return {path_str(p): s for p, s in leaves}


def map_specs(fn: Callable[[str, ParamSpec], Any], cfg: ModelConfig) -> Any:
    """Build a params-shaped tree by calling fn(path, spec) for every weight."""
    return jax.tree_util.tree_map_with_path(lambda p, s: fn(path_str(p), s), model_specs(cfg), is_leaf=is_spec)


def shardings(cfg: ModelConfig, mesh) -> Any:
    def one(path, s):
        sharding.check_divisible(mesh, s.shape, s.axes, path)
        return sharding.named(mesh, s.axes)
    return map_specs(one, cfg)


def abstract_params(cfg: ModelConfig, mesh=None) -> Any:
    """ShapeDtypeStructs (with shardings when a mesh is given) for every weight."""
    def one(path, s):
        if mesh is not None:
            sharding.check_divisible(mesh, s.shape, s.axes, path)
        return jax.ShapeDtypeStruct(s.shape, jnp.dtype(s.dtype), sharding=sharding.named(mesh, s.axes))
    return map_specs(one, cfg)


def count_params(cfg: ModelConfig) -> int:
    """Weights as the model card counts them (an MXFP4 value counts once; scales are not weights)."""
    total = 0
    for path, s in flat_specs(cfg).items():
        if path.endswith("/scales"):
            continue
        n = math.prod(s.shape)
        total += n * 2 if path.endswith("/blocks") else n
    return total


def param_bytes(cfg: ModelConfig) -> int:
    return sum(s.nbytes for s in flat_specs(cfg).values())


# ----------------------------------------------------------------------------------------- random initialisation
def mxfp4_scale_for_std(std: float) -> int:
    """E8M0 scale that gives uniformly random E2M1 codes (rms ~ 3.0) a weight std of about `std`."""
    return int(round(127 + math.log2(std / 3.0)))


def hash_u32(shape: tuple[int, ...], seed) -> jax.Array:
    """A well-mixed uint32 per element from its linear index and `seed` (murmur3's finalizer). Elementwise, so XLA
    writes a weight directly with no temporaries (jax.random would need several times the weight's size)."""
    idx = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for d in reversed(range(len(shape))):
        idx = idx + lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(stride % 2**32)
        stride *= shape[d]
    h = idx * jnp.uint32(0x9E3779B1) + jnp.asarray(seed, jnp.uint32)
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def draw_on_device(seed, s: ParamSpec) -> jax.Array:
    """One weight drawn as its spec's init says (uniform noise with the spec's std), from a uint32 seed."""
    kind, arg = s.init
    h = hash_u32(s.shape, seed)
    centered = (h >> 8).astype(jnp.float32) * (2.0 ** -24) - 0.5          # uniform [-0.5, 0.5), std 1/sqrt(12)
    if kind == "normal":
        return (centered * (arg * math.sqrt(12))).astype(s.dtype)
    if kind == "ones_noise":
        return (1.0 + centered * (arg * math.sqrt(12))).astype(s.dtype)
    if kind == "mxfp4_blocks":
        return (h >> 24).astype(jnp.uint8)
    if kind == "mxfp4_scales":
        return (mxfp4_scale_for_std(arg) + (h >> 31)).astype(jnp.uint8)
    raise ValueError(f"unknown init {s.init}")


@functools.lru_cache(maxsize=None)
def _drawer(spec: ParamSpec, out_sharding):
    return jax.jit(functools.partial(draw_on_device, s=spec), out_shardings=out_sharding)


def init_params(cfg: ModelConfig, seed: int = 0, mesh=None, *, show_progress: bool = False) -> Any:
    """Random weights drawn directly on the device(s), already sharded, one weight at a time: no disk, no host
    copy, no temporaries beyond the weight itself (so full-size 120b fits next to itself on one 80 GB GPU)."""
    from gptoss_jax.progress import Progress

    specs = flat_specs(cfg)
    bar = Progress(sum(s.nbytes for s in specs.values()), f"random {cfg.name} weights", unit="B",
                   enabled=show_progress)
    arrays = {}
    for i, (path, spec) in enumerate(specs.items()):
        if mesh is not None:
            sharding.check_divisible(mesh, spec.shape, spec.axes, path)
        arrays[path] = _drawer(spec, sharding.named(mesh, spec.axes))(np.uint32((seed * 1000003 + i) % 2**32))
        arrays[path].block_until_ready()
        bar.update(spec.nbytes, path)
    bar.close()
    return map_specs(lambda path, _: arrays[path], cfg)
