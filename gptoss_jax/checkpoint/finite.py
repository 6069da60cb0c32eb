"""Non-finite weights, found when a checkpoint loads: one jitted on-device reduction over every weight, one small
host read.

A float weight is bad where it holds NaN or +-inf. An MXFP4 scale byte is bad where it is 255: NaN in the E8M0
format, and as a plain exponent 2**128, which overflows every value of its block. Packed MXFP4 codes cannot be
non-finite. Weights stacked over layer pairs are counted per pair, so the error names each bad layer's own tensor.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gptoss_jax import params as params_lib
from gptoss_jax.checkpoint.safetensors_io import CheckpointError

SKIP_HINT = "pass check_finite=False (CLI: --nocheck_finite) to load it anyway"


def _kind(spec: params_lib.ParamSpec) -> str | None:
    if spec.init[0] == "mxfp4_scales":
        return "scales"
    if spec.init[0] == "mxfp4_blocks" or not jnp.issubdtype(jnp.dtype(spec.dtype), jnp.floating):
        return None
    return "float"


# (unsigned type of the same width, exponent bits, mantissa bits) of the float formats weights are stored in
_BITS = {jnp.dtype(jnp.bfloat16): (jnp.uint16, 0x7F80, 0x007F), jnp.dtype(jnp.float16): (jnp.uint16, 0x7C00, 0x03FF),
         jnp.dtype(jnp.float32): (jnp.uint32, 0x7F800000, 0x007FFFFF)}


def _bad(x: jax.Array, kind: str, nan_only: bool = False) -> jax.Array:
    """Where x is not finite (or NaN only), read from the bits: an all-ones exponent; scale bytes of 255."""
    if kind == "scales":
        return x == 255
    utype, exponent, mantissa = _BITS[x.dtype]
    bits = jax.lax.bitcast_convert_type(x, utype)
    bad = (bits & exponent) == exponent
    return bad & ((bits & mantissa) != 0) if nan_only else bad


@functools.lru_cache(maxsize=8)
def _flags_program(layout: tuple[tuple[str, str, bool], ...], mesh):
    """One program: for every weight whether it holds a non-finite value (per layer pair when stacked). An `any`
    reduction with the test fused into it: XLA keeps no temporary the size of a weight (a sum would, on a CPU)."""
    out = None if mesh is None else NamedSharding(mesh, P())   # replicated: every process reads its own copy

    def run(weights):
        return {path: jnp.any(_bad(weights[path], kind), axis=tuple(range(1 if stacked else 0, weights[path].ndim)))
                for path, kind, stacked in layout}

    return jax.jit(run, out_shardings=out)


@functools.partial(jax.jit, static_argnames=("kind", "nan_only"))
def _count(x: jax.Array, *, kind: str, nan_only: bool) -> jax.Array:
    """Non-finite values (or NaNs) of x, counted a block of rows at a time (temporaries stay small); only run on
    a weight that was flagged."""
    x2 = x.reshape(x.shape[0] if x.ndim else 1, -1)
    rows = max(1, min(x2.shape[0], (1 << 22) // max(x2.shape[1], 1)))
    steps = -(-x2.shape[0] // rows)

    def body(i, acc):
        start = jnp.minimum(i * rows, x2.shape[0] - rows)      # the last block may overlap the one before
        block = jax.lax.dynamic_slice_in_dim(x2, start, rows, 0)
        fresh = (jnp.arange(rows) + start >= i * rows)[:, None]
        return acc + jnp.sum(_bad(block, kind, nan_only) & fresh, dtype=jnp.int32)

    return jax.lax.fori_loop(0, steps, body, jnp.int32(0))


def flatten(params) -> dict[str, jax.Array]:
    """A params tree as {weight path: array}, the keys of params.flat_specs."""
    return {params_lib.path_str(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(x if x.is_fully_addressable else x.addressable_shards[0].data)


def bad_counts(weights: dict[str, jax.Array], specs: dict[str, params_lib.ParamSpec],
               mesh=None) -> dict[tuple[str, int | None], tuple[int, int]]:
    """{(weight path, layer pair or None): (NaN count, inf count)} for every weight holding a non-finite value."""
    layout = tuple((path, kind, bool(spec.axes) and spec.axes[0] == "layers") for path, spec in specs.items()
                   if (kind := _kind(spec)) is not None)

    flags = {k: _host(v) for k, v in _flags_program(layout, mesh)(
        {path: weights[path] for path, _, _ in layout}).items()}
    found = {}
    for path, kind, stacked in layout:
        for pair in (np.flatnonzero(flags[path]).tolist() if stacked else [None] if flags[path] else []):
            x = weights[path] if pair is None else weights[path][pair]
            bad = int(_host(_count(x, kind=kind, nan_only=False)))
            nan = int(_host(_count(x, kind=kind, nan_only=True))) if kind == "float" else bad
            found[(path, pair)] = (nan, bad - nan)
    return found


def check(weights: dict[str, jax.Array], specs: dict[str, params_lib.ParamSpec], where: str, *, mesh=None,
          name_of=None) -> None:
    """Raise one CheckpointError listing the tensors with non-finite values (at most 6, then a count).

    name_of(path, pair) -> the checkpoint's own tensor name (default: the weight path and layer pair)."""
    found = bad_counts(weights, specs, mesh)
    if not found:
        return
    by_name: dict[str, list[int]] = {}
    for (path, pair), (nan, inf) in found.items():
        name = name_of(path, pair) if name_of else (path if pair is None else f"{path} (layer pair {pair})")
        tally = by_name.setdefault(name, [0, 0, specs[path].init[0] == "mxfp4_scales"])
        tally[0] += nan
        tally[1] += inf
    parts = []
    for name, (nan, inf, scales) in list(by_name.items())[:6]:
        what = f"{nan} scale bytes of 255 (NaN in E8M0)" if scales else f"{nan} NaN and {inf} inf values"
        parts.append(f"{name!r} holds {what}")
    more = f"; ... and {len(by_name) - 6} more tensors" if len(by_name) > 6 else ""
    raise CheckpointError(f"{where}: non-finite weights, expected finite values: " + "; ".join(parts) + more
                          + f" ({SKIP_HINT})")
