"""The hot paths behind stable signatures. The model calls `expert_matmul` (and, when decoding one token a row,
`decode_attention`) with the kernel names it was built with: a `Kernels` value is part of the model's static
description (gptoss_jax.load(..., kernels=Kernels(...)), shown in repr(model)), so two models in one process can run
different kernels, and every compiled step is keyed by it. Nothing here is process-global but the registry of what
exists.

MoE (`Kernels.moe`): implementations register under a name; "auto" picks the fastest one registered for the
backend, falling back to the plain-jnp reference where no kernel applies:
  reference              plain jnp (any backend; the fallback)
  pallas_gpu             Pallas/Triton kernel (auto on GPU); resolves to the reference without a GPU
  pallas_tpu             Pallas/Mosaic TPU kernel (auto on TPU); resolves to the reference without a TPU
  pallas_gpu_interpret   the GPU kernel through Pallas' interpreter (any backend: tests, CPU benchmarks)
  pallas_tpu_interpret   the TPU kernel through Pallas' interpreter
`Kernels.dequant` picks the GPU kernel's MXFP4 decoding route (DEQUANT_ROUTES; "auto" = the default route).

Attention (`Kernels.attention`): "xla" (the `attend` core of model/attend.py), "pallas_gpu" (decode:
kernels/attention_gpu.py, one token a row; prefill chunks with a cache: kernels/attention_prefill_gpu.py, flash
style) or "pallas_gpu_interpret"; "auto" is pallas_gpu on a GPU backend and xla everywhere else (pallas_gpu, too,
resolves to xla without a GPU). The kernels serve single-device steps; a sharded model takes the XLA path.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import jax

from gptoss_jax.errors import KernelError
from gptoss_jax.kernels.moe_reference import add_group_bias, expert_matmul_reference

__all__ = ["ATTENTION_IMPLS", "DEQUANT_ROUTES", "REFERENCE", "KernelError", "Kernels", "available", "decode_attention",
           "expert_matmul", "prefill_attention", "register"]

_IMPLS: dict[str, Callable] = {"reference": expert_matmul_reference}
_TAKES_BIAS: set[str] = {"reference"}      # implementations that add the bias themselves (see register)
# backend -> names to try in order for "auto"
_AUTO_ORDER: dict[str, list[str]] = {"cpu": ["reference"], "gpu": ["reference"], "tpu": ["reference"]}
# backend a compiled (non-interpret) kernel needs; without it the name resolves to the reference
_NEEDS_BACKEND: dict[str, str] = {}
ATTENTION_IMPLS = ("xla", "pallas_gpu", "pallas_gpu_interpret")
# MXFP4 -> bf16 decoding routes of the GPU MoE kernel (kernels/dequant.py); the first is the default
DEQUANT_ROUTES = ("kperm", "e4m3", "asm")


def register(name: str, fn: Callable, *, auto_on: tuple[str, ...] = (), needs: str | None = None,
             takes_bias: bool = False) -> None:
    """Add an MoE implementation: fn(x, w, group_sizes, *, layer=None, dequant=...) -> f32 [M, N].
    auto_on: backends where "auto" prefers it; needs: the backend it must run on (else the reference runs);
    takes_bias: fn adds a `bias=` [G, N] itself (else expert_matmul adds it in jnp after the call)."""
    _IMPLS[name] = fn
    if takes_bias:
        _TAKES_BIAS.add(name)
    if needs:
        _NEEDS_BACKEND[name] = needs
    for backend in auto_on:
        order = _AUTO_ORDER.setdefault(backend, ["reference"])
        if name not in order:
            order.insert(0, name)


def available() -> list[str]:
    return sorted(_IMPLS)


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Which implementation runs each hot path. A static, hashable value: a model is built with one (resolved for
    its backend when the model is built), passes it down to its modules, and compiled steps are keyed by it."""
    moe: str = "auto"          # expert matmul: "auto" or a registered name (available())
    attention: str = "auto"    # decode and prefill attention: "auto" or one of ATTENTION_IMPLS
    dequant: str = "auto"      # MXFP4 decoding route inside the GPU MoE kernel: "auto" or one of DEQUANT_ROUTES

    def __post_init__(self):
        if self.moe != "auto" and self.moe not in _IMPLS:
            raise KernelError(f"unknown MoE kernel {self.moe!r}: expected 'auto' or one of {available()}")
        if self.attention != "auto" and self.attention not in ATTENTION_IMPLS:
            raise KernelError(f"unknown attention implementation {self.attention!r}: expected 'auto' or one of "
                              f"{ATTENTION_IMPLS}")
        if self.dequant != "auto" and self.dequant not in DEQUANT_ROUTES:
            raise KernelError(f"unknown MXFP4 dequantization route {self.dequant!r}: expected 'auto' or one of "
                              f"{DEQUANT_ROUTES}")

    def resolve(self, backend: str | None = None) -> "Kernels":
        """The concrete kernels that run on `backend` (default: JAX's default backend): "auto" picks the best
        registered one, a compiled kernel whose backend is absent falls back (MoE: reference, attention: xla)."""
        backend = backend or jax.default_backend()
        moe = self.moe
        if moe == "auto":
            moe = next((c for c in _AUTO_ORDER.get(backend, ["reference"]) if c in _IMPLS), "reference")
        if _NEEDS_BACKEND.get(moe, backend) != backend:
            moe = "reference"
        attention = self.attention
        if attention == "auto":
            attention = "pallas_gpu" if backend == "gpu" else "xla"
        if attention == "pallas_gpu" and backend != "gpu":
            attention = "xla"
        dequant = DEQUANT_ROUTES[0] if self.dequant == "auto" else self.dequant
        return Kernels(moe, attention, dequant)

    def __str__(self) -> str:
        moe = f"{self.moe}({self.dequant})" if self.moe.startswith("pallas_gpu") else self.moe
        return f"moe={moe} attention={self.attention}"


# what a module built without a choice runs: plain jnp and XLA on every backend
REFERENCE = Kernels("reference", "xla", DEQUANT_ROUTES[0])


def expert_matmul(x: jax.Array, w, group_sizes: jax.Array, *, impl: str = "reference",
                  dequant: str = DEQUANT_ROUTES[0], layer=None, bias: jax.Array | None = None) -> jax.Array:
    """Grouped (ragged) matmul against MXFP4 expert weights, by the implementation named `impl` (a resolved name).

    x [M, K] in the compute dtype, rows sorted by expert; w an Mxfp4Weight [G, N, K] (or a dense [G, N, K] array);
    group_sizes [G] int32. Returns float32 [M, N]: out[m] = x[m] @ W[group(m)].T (+ bias[group(m)]), zeros for rows
    past the groups. dequant: the MXFP4 decoding route (GPU kernel only).
    bias (optional, [G, N], this layer's): added in the GPU kernel's epilogue, in the reference's loop, in jnp
    after the TPU kernel and any implementation registered without takes_bias.

    layer (optional int32 scalar): w is stacked over layers, [P, G, N, K], and layer `layer` is used. Kernels then
    read the routed experts of that layer straight from the stacked weights; slicing w[layer] in XLA instead (as a
    scan over stacked weights does) makes XLA copy the layer's whole expert tensor before a kernel or loop can use it.
    """
    if impl not in _IMPLS:
        raise KernelError(f"unknown MoE kernel {impl!r}: expected one of {available()}")
    fn = _IMPLS[impl]
    kw = {} if layer is None else {"layer": layer}
    if impl.startswith("pallas_gpu"):
        kw["dequant"] = dequant
    if bias is not None and impl in _TAKES_BIAS:
        kw["bias"], bias = bias, None
    out = fn(x, w, group_sizes, **kw)
    return out if bias is None else add_group_bias(out, bias, group_sizes)


def _lazy(module: str, attr: str, **kwargs) -> Callable:
    """A kernel entry that imports its module (and Pallas) on first use."""
    def call(*args, **more):
        return getattr(importlib.import_module(module), attr)(*args, **kwargs, **more)
    call.__name__ = f"{attr}{'_interpret' if kwargs.get('interpret') else ''}"
    return call


_GPU, _TPU = ("gptoss_jax.kernels.moe_gpu", "expert_matmul_gpu"), ("gptoss_jax.kernels.moe_tpu", "expert_matmul_tpu")
register("pallas_gpu", _lazy(*_GPU), auto_on=("gpu",), needs="gpu", takes_bias=True)
register("pallas_gpu_interpret", _lazy(*_GPU, interpret=True), takes_bias=True)
register("pallas_tpu", _lazy(*_TPU), auto_on=("tpu",), needs="tpu", takes_bias=True)
register("pallas_tpu_interpret", _lazy(*_TPU, interpret=True), takes_bias=True)


def _attention_impl(impl: str, what: str) -> bool:
    """Whether the resolved attention name runs interpreted; a name without a kernel is refused."""
    if impl not in ("pallas_gpu", "pallas_gpu_interpret"):
        raise KernelError(f"{what} has no kernel {impl!r}; expected pallas_gpu or pallas_gpu_interpret")
    return impl.endswith("_interpret")


def decode_attention(q, k_cache, v_cache, layer, lo, hi, sinks, *, impl: str, span: int | None = None) -> jax.Array:
    """One new token a row against a stacked cache; see kernels/attention_gpu.py. impl: a pallas_* name; span: the
    slots in use (the key-span bucket), which sizes the kernel's key splits."""
    from gptoss_jax.kernels import attention_gpu as da

    interpret = _attention_impl(impl, "decode_attention")
    return da.decode_attention(q, k_cache, v_cache, layer, lo, hi, sinks, span=span, interpret=interpret)


def prefill_attention(q, k, v, q_pos, key_start, sinks, *, window, impl: str, layer=None, kv_len=None) -> jax.Array:
    """A chunk against keys in position order (flash style); see kernels/attention_prefill_gpu.py."""
    from gptoss_jax.kernels import attention_prefill_gpu as fa

    interpret = _attention_impl(impl, "prefill_attention")
    return fa.prefill_attention(q, k, v, q_pos, key_start, sinks, layer=layer, window=window, kv_len=kv_len,
                                interpret=interpret)
