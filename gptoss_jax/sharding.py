"""The one table from logical axes to mesh axes, and mesh construction.

Mesh axes: `data` (batch), `expert` (expert parallelism), `tensor` (attention heads and vocabulary). Experts are
spread over expert x tensor together, so a MoE layer is purely expert-parallel on every device of a data replica
(each device holds whole experts; the MXFP4 kernels never see a split contraction), while attention and the
unembedding are tensor-parallel over `tensor`.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gptoss_jax.errors import ShardingError
MESH_AXES = ("data", "expert", "tensor")
EXPERT_AXES = ("expert", "tensor")

# logical axis -> mesh axis (or axes, or None = replicated)
LOGICAL_TO_MESH: dict[str, str | tuple[str, ...] | None] = {
    "batch": "data",
    "seq": None,
    "embed": None,
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "qkv": None,            # q heads of a KV group, then its k and v head (params.py): split with the group
    "experts": EXPERT_AXES,
    "expert_mlp": None,     # whole experts a device: the MXFP4 K-blocks (90 for gpt-oss) stay unsplit
    "mxfp4_block": None,    # the trailing [K/32, 16] of packed weights
    "vocab": "tensor",
    "layers": None,         # the stacked layer-pair axis of scanned weights
    "cache_seq": None,
}



def logical_spec(axes: Sequence[str | None]) -> P:
    out = []
    for a in axes:
        if a is None:
            out.append(None)
        elif a not in LOGICAL_TO_MESH:
            raise KeyError(f"logical axis {a!r} is not in the sharding table {sorted(LOGICAL_TO_MESH)}")
        else:
            out.append(LOGICAL_TO_MESH[a])
    return P(*out)


def named(mesh: Mesh | None, axes: Sequence[str | None]) -> NamedSharding | None:
    return None if mesh is None else NamedSharding(mesh, logical_spec(axes))


def mesh_axis_size(mesh: Mesh | None, mesh_axes) -> int:
    if mesh is None or mesh_axes is None:
        return 1
    if isinstance(mesh_axes, str):
        mesh_axes = (mesh_axes,)
    return math.prod(mesh.shape[a] for a in mesh_axes)


def check_divisible(mesh: Mesh | None, shape: Sequence[int], axes: Sequence[str | None], what: str) -> None:
    for dim, a in zip(shape, axes):
        n = mesh_axis_size(mesh, LOGICAL_TO_MESH.get(a) if a else None)
        if dim % n:
            raise ShardingError(f"{what}: dimension {a!r} of size {dim} does not split over mesh axes "
                                f"{LOGICAL_TO_MESH[a]} of size {n} (mesh {dict(mesh.shape)})")


def constrain(x: jax.Array, mesh: Mesh | None, axes: Sequence[str | None]) -> jax.Array:
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_spec(axes)))


def parse_mesh_shape(spec: str | Sequence[int] | None, num_devices: int | None = None) -> tuple[int, int, int]:
    """'data,expert,tensor' sizes such as '1,4,2' (or 'auto': everything on `expert`) -> a 3-tuple."""
    n = num_devices if num_devices is not None else jax.device_count()
    if spec is None or spec == "auto":
        return (1, n, 1)
    if isinstance(spec, str):
        try:
            sizes = tuple(int(s) for s in spec.replace("x", ",").split(","))
        except ValueError:
            raise ShardingError(f"mesh shape {spec!r}: expected three integers 'data,expert,tensor', e.g. '1,4,2'")
    else:
        sizes = tuple(int(s) for s in spec)
    if len(sizes) != 3 or any(s < 1 for s in sizes):
        raise ShardingError(f"mesh shape {spec!r}: expected three positive sizes for {MESH_AXES}")
    if math.prod(sizes) != n:
        raise ShardingError(f"mesh shape {sizes} uses {math.prod(sizes)} devices but {n} are available; a mesh "
                            f"spans every device ({_device_count_hint()})")
    return sizes  # type: ignore[return-value]


def _device_count_hint() -> str:
    """How the device count is changed on this platform."""
    platform = jax.default_backend()
    if platform == "gpu":
        return "to use fewer, make fewer visible, e.g. CUDA_VISIBLE_DEVICES=0,1"
    if platform == "tpu":
        return "to use fewer, make fewer visible, e.g. TPU_VISIBLE_CHIPS=0,1"
    return (f"the {platform.upper()} platform has as many devices as jax_num_cpu_devices says: gptoss "
            f"--cpu_devices=N sets it, launch/local.py --cpu_devices N per process")


def make_mesh(shape: str | Sequence[int] | None = None, devices=None) -> Mesh:
    """A (data, expert, tensor) mesh over all (or the given) devices."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = parse_mesh_shape(shape, len(devices))
    try:
        arr = mesh_utils.create_device_mesh(sizes, devices=devices)
    except Exception:  # noqa: BLE001 - fall back to plain order where topology-aware placement is unavailable
        arr = np.array(devices).reshape(sizes)
    return Mesh(arr, MESH_AXES)

