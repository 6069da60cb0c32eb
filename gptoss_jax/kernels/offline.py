"""Lower kernels for a GPU or TPU that is not here: catches what the Python half of a Pallas lowering rejects
(unsupported ops, block shapes, layouts) on any machine, and hands out the Triton IR for an offline compile.

    lowered = lower_for("gpu", kernel_fn, *abstract_args)         # an abstract H100: jax.stages.Lowered
    ttir = triton_ir(kernel_fn, *abstract_args)                    # the Triton modules' text, one per pallas_call

The final compile (Triton's passes and ptxas in XLA's GPU plugin; Mosaic in libtpu) does not run here;
benchmarks/triton_offline.py compiles the Triton IR with a pip-installed Triton for sm_90 when one is present.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import jax
from jax.sharding import AbstractDevice, AbstractMesh, AxisType

DEVICE_KINDS = {"gpu": ("NVIDIA H100 80GB HBM3", 132, "cuda"), "tpu": ("TPU v5 lite", 1, "tpu")}


def lower_for(target: str, fn: Callable, *args, device_kind: str | None = None):
    """jax.jit(fn) lowered for an abstract `target` ("gpu" or "tpu") device; args are ShapeDtypeStructs."""
    kind, cores, platform = DEVICE_KINDS[target]
    device = AbstractDevice(device_kind=device_kind or kind, num_cores=cores,
                            platform="gpu" if target == "gpu" else "tpu")
    mesh = AbstractMesh((1,), ("d",), (AxisType.Auto,), abstract_device=device)
    with jax.sharding.use_abstract_mesh(mesh):
        return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,))


@contextlib.contextmanager
def _capture_triton_modules(out: list[str]):
    from jax._src.pallas.triton import lowering, pallas_call_registration as registration

    original = lowering.lower_jaxpr_to_triton_module

    def capture(*a, **kw):
        result = original(*a, **kw)
        out.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    registration.lowering.lower_jaxpr_to_triton_module = capture
    try:
        yield
    finally:
        registration.lowering.lower_jaxpr_to_triton_module = original


def triton_ir(fn: Callable, *args) -> list[str]:
    """The Triton IR (text) of every Pallas/Triton kernel `fn` launches, lowered for an abstract H100."""
    modules: list[str] = []
    with _capture_triton_modules(modules):
        lower_for("gpu", fn, *args)
    return modules
