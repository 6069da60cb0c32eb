"""The hot paths behind stable signatures. The model calls `expert_matmul` and never knows which kernel runs.

Implementations register under a name; `set_impl` (or the GPTOSS_MOE_IMPL environment variable, or the CLI flag
--moe_impl) picks one, and "auto" picks the fastest one available on the current backend, falling back to the
plain-jnp reference where no kernel applies.
"""
from __future__ import annotations

import os
from typing import Callable

import jax

from gptoss_jax.kernels.moe_reference import expert_matmul_reference

_IMPLS: dict[str, Callable] = {"reference": expert_matmul_reference}
# backend -> names to try in order for "auto"
_AUTO_ORDER: dict[str, list[str]] = {"cpu": ["reference"], "gpu": ["reference"], "tpu": ["reference"]}
_selected = os.environ.get("GPTOSS_MOE_IMPL", "auto")


def register(name: str, fn: Callable, *, auto_on: tuple[str, ...] = ()) -> None:
    _IMPLS[name] = fn
    for backend in auto_on:
        order = _AUTO_ORDER.setdefault(backend, ["reference"])
        if name not in order:
            order.insert(0, name)


def available() -> list[str]:
    return sorted(_IMPLS)


def set_impl(name: str) -> None:
    global _selected
    if name != "auto" and name not in _IMPLS:
        raise ValueError(f"unknown MoE kernel {name!r}: expected 'auto' or one of {available()}")
    _selected = name


def resolve_impl(name: str | None = None) -> str:
    name = name or _selected
    if name != "auto":
        if name not in _IMPLS:
            raise ValueError(f"unknown MoE kernel {name!r}: expected 'auto' or one of {available()}")
        return name
    for cand in _AUTO_ORDER.get(jax.default_backend(), ["reference"]):
        if cand in _IMPLS:
            return cand
    return "reference"


def expert_matmul(x: jax.Array, w, group_sizes: jax.Array, *, impl: str | None = None) -> jax.Array:
    """Grouped (ragged) matmul against MXFP4 expert weights.

    x [M, K] in the compute dtype, rows sorted by expert; w an Mxfp4Weight [G, N, K] (or a dense [G, N, K] array);
    group_sizes [G] int32. Returns float32 [M, N]: out[m] = x[m] @ W[group(m)].T, zeros for rows past the groups.
    """
    return _IMPLS[resolve_impl(impl)](x, w, group_sizes)
