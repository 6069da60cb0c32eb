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


def _counts(x: jax.Array, kind: str, stacked: bool) -> jax.Array:
    """[2] (NaN, inf) counts, or [pairs, 2] for a stacked weight; scale bytes of 255 count as NaN."""
    if kind == "scales":
        bad = jnp.stack([x == 255, jnp.zeros_like(x, bool)], axis=-1)
    else:
        bad = jnp.stack([jnp.isnan(x), jnp.isinf(x)], axis=-1)
    axes = tuple(range(1 if stacked else 0, x.ndim))
    return jnp.sum(bad, axis=axes, dtype=jnp.int32)


@functools.lru_cache(maxsize=8)
def _program(layout: tuple[tuple[str, str, bool], ...], mesh):
    out = None if mesh is None else NamedSharding(mesh, P())   # replicated: every process reads its own copy

    def run(weights):
        return {path: _counts(weights[path], kind, stacked) for path, kind, stacked in layout}

    return jax.jit(run, out_shardings=out)


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
    counts = {k: _host(v) for k, v in _program(layout, mesh)({path: weights[path] for path, _, _ in layout}).items()}
    found = {}
    for path, _, stacked in layout:
        c = counts[path]
        rows = enumerate(c) if stacked else [(None, c)]
        for pair, (nan, inf) in rows:
            if nan or inf:
                found[(path, pair)] = (int(nan), int(inf))
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
