"""The hot paths behind stable signatures. The model calls `expert_matmul` (and, when decoding one token a row,
`decode_attention`) and never knows which kernel runs.

MoE: implementations register under a name; `set_impl` (or the GPTOSS_MOE_IMPL environment variable, or the CLI
flag --moe_impl) picks one, and "auto" picks the fastest one available on the current backend, falling back to the
plain-jnp reference where no kernel applies:
  reference              plain jnp (any backend; the fallback)
  pallas_gpu             Pallas/Triton kernel (auto on GPU); the reference for dense weights or without a GPU
  pallas_tpu             Pallas/Mosaic TPU kernel (auto on TPU); the reference for dense weights or without a TPU
  pallas_gpu_interpret   the GPU kernel through Pallas' interpreter (any backend: tests, CPU benchmarks)
  pallas_tpu_interpret   the TPU kernel through Pallas' interpreter

Decode attention: `set_attention_impl` (or GPTOSS_ATTENTION_IMPL) picks "xla" (the `attend` core of
model/attention.py), "pallas_gpu" (kernels/attention_gpu.py) or "pallas_gpu_interpret"; "auto" is pallas_gpu on
a GPU backend and xla everywhere else (pallas_gpu, too, falls back to xla without a GPU). The kernel serves single-device decode steps (one token a row); everything
else takes the XLA path.

The choice is read when a function is traced: jitted functions traced before a change keep their kernels.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from typing import Callable

import jax

from gptoss_jax.kernels.moe_reference import expert_matmul_reference

class KernelError(ValueError):
    """A kernel name that names no implementation (the message lists the ones there are)."""


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
        raise KernelError(f"unknown MoE kernel {name!r}: expected 'auto' or one of {available()}")
    _selected = name


def resolve_impl(name: str | None = None) -> str:
    name = name or _selected
    if name != "auto":
        if name not in _IMPLS:
            raise KernelError(f"unknown MoE kernel {name!r}: expected 'auto' or one of {available()}")
        return name
    for cand in _AUTO_ORDER.get(jax.default_backend(), ["reference"]):
        if cand in _IMPLS:
            return cand
    return "reference"


def expert_matmul(x: jax.Array, w, group_sizes: jax.Array, *, impl: str | None = None, layer=None) -> jax.Array:
    """Grouped (ragged) matmul against MXFP4 expert weights.

    x [M, K] in the compute dtype, rows sorted by expert; w an Mxfp4Weight [G, N, K] (or a dense [G, N, K] array);
    group_sizes [G] int32. Returns float32 [M, N]: out[m] = x[m] @ W[group(m)].T, zeros for rows past the groups.

    layer (optional int32 scalar): w is stacked over layers, [P, G, N, K], and layer `layer` is used. Kernels then
    read the routed experts of that layer straight from the stacked weights; slicing w[layer] in XLA instead (as a
    scan over stacked weights does) makes XLA copy the layer's whole expert tensor before a kernel or loop can use it.
    """
    fn = _IMPLS[resolve_impl(impl)]
    return fn(x, w, group_sizes) if layer is None else fn(x, w, group_sizes, layer=layer)


def _lazy(module: str, attr: str, **kwargs) -> Callable:
    """A kernel entry that imports its module (and Pallas) on first use."""
    def call(*args, **more):
        return getattr(importlib.import_module(module), attr)(*args, **kwargs, **more)
    call.__name__ = f"{attr}{'_interpret' if kwargs.get('interpret') else ''}"
    return call


register("pallas_gpu", _lazy("gptoss_jax.kernels.moe_gpu", "expert_matmul_gpu"), auto_on=("gpu",))
register("pallas_gpu_interpret", _lazy("gptoss_jax.kernels.moe_gpu", "expert_matmul_gpu", interpret=True))
register("pallas_tpu", _lazy("gptoss_jax.kernels.moe_tpu", "expert_matmul_tpu"), auto_on=("tpu",))
register("pallas_tpu_interpret", _lazy("gptoss_jax.kernels.moe_tpu", "expert_matmul_tpu", interpret=True))

# ------------------------------------------------------------------------------------------------ decode attention
ATTENTION_IMPLS = ("xla", "pallas_gpu", "pallas_gpu_interpret")
_attention_selected = os.environ.get("GPTOSS_ATTENTION_IMPL", "auto")


def set_attention_impl(name: str) -> None:
    global _attention_selected
    resolve_attention_impl(name)
    _attention_selected = name


def resolve_attention_impl(name: str | None = None) -> str:
    name = name or _attention_selected
    if name == "auto":
        return "pallas_gpu" if jax.default_backend() == "gpu" else "xla"
    if name not in ATTENTION_IMPLS:
        raise KernelError(f"unknown attention implementation {name!r}: expected 'auto' or one of {ATTENTION_IMPLS}")
    if name == "pallas_gpu" and jax.default_backend() != "gpu":
        return "xla"                       # the compiled kernel needs a GPU; fall back like the MoE kernels do
    return name


def decode_attention(q, k_cache, v_cache, layer, lo, hi, sinks, *, impl: str) -> jax.Array:
    """One new token a row against a stacked cache; see kernels/attention_gpu.py. impl: a pallas_* name."""
    from gptoss_jax.kernels import attention_gpu as da

    if impl not in ("pallas_gpu", "pallas_gpu_interpret"):
        raise ValueError(f"decode_attention has no kernel {impl!r}")
    return da.decode_attention(q, k_cache, v_cache, layer, lo, hi, sinks, interpret=impl.endswith("_interpret"))


@contextlib.contextmanager
def using(moe: str | None = None, attention: str | None = None):
    """Select kernels for the duration of a block (tracing inside it sees them), then restore the previous ones."""
    global _selected, _attention_selected
    prev = (_selected, _attention_selected)
    try:
        if moe is not None:
            set_impl(moe)
        if attention is not None:
            set_attention_impl(attention)
        yield
    finally:
        _selected, _attention_selected = prev
