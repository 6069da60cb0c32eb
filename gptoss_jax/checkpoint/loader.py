"""Stream a checkpoint into device shards.

Every weight of params.model_specs is filled from its checkpoint rows (layouts.py) with
jax.make_array_from_callback: each device's callback reads exactly the box of the tensor that device owns, so host
memory stays O(one tensor shard) and a process reads only the bytes of its own devices, each box once however many
of its devices hold a replica of it. Stacked (per layer-pair)
weights are assembled one layer at a time into a donated buffer, so device memory never holds two copies.
Everything is checked before anything is read: names, shapes, dtypes, and tensors the config does not account for.
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, SingleDeviceSharding

from gptoss_jax import params as params_lib
from gptoss_jax import sharding
from gptoss_jax.checkpoint import finite, layouts
from gptoss_jax.checkpoint.safetensors_io import (DTYPE_NAMES, ByteCounter, CheckpointError, SafetensorsFile)
from gptoss_jax.config import ModelConfig
from gptoss_jax.progress import Progress

log = logging.getLogger(__name__)


class OpenCheckpoint:
    """The safetensors files of a located checkpoint, by tensor name."""

    def __init__(self, located: layouts.Located, counter: ByteCounter | None = None):
        import os

        self.located = located
        self.counter = counter or ByteCounter()
        self.files = [SafetensorsFile(os.path.join(located.folder, f), self.counter) for f in located.files]
        self.where: dict[str, SafetensorsFile] = {}
        for f in self.files:
            for name in f.tensors:
                if name in self.where:
                    raise CheckpointError(f"tensor {name!r} is in both {self.where[name].path} and {f.path}")
                self.where[name] = f

    def close(self):
        for f in self.files:
            f.close()


def _config_hint(cfg: ModelConfig) -> str:
    return (f"config.json says layers={cfg.num_layers}, experts={cfg.num_experts}, hidden={cfg.hidden_size}, "
            f"intermediate={cfg.intermediate_size}, heads={cfg.num_heads}/{cfg.num_kv_heads}x{cfg.head_dim}, "
            f"vocab={cfg.vocab_size}")


def validate(ckpt: OpenCheckpoint, cfg: ModelConfig) -> list[layouts.TensorEntry]:
    """Check every expected tensor against the files; one error listing what is wrong."""
    expected = layouts.entries(cfg, ckpt.located.layout)
    problems = []
    for e in expected:
        f = ckpt.where.get(e.name)
        if f is None:
            problems.append(f"missing tensor {e.name!r} (expected {e.dtype}{list(e.shape)})")
            continue
        info = f.tensors[e.name]
        dt = np.dtype(info.dtype)
        allowed = [np.dtype(jnp.dtype(d)) for d in (e.dtype, *e.alt_dtypes)]
        if dt not in allowed:
            problems.append(f"{f.path}: tensor {e.name!r} has dtype {DTYPE_NAMES.get(dt, dt)}, expected "
                            f"{' or '.join(DTYPE_NAMES[a] for a in allowed)}")
        if tuple(info.shape) != tuple(e.shape):
            problems.append(f"{f.path}: tensor {e.name!r} has shape {list(info.shape)}, expected {list(e.shape)}")
    known = {e.name for e in expected}
    extra = sorted(n for n in ckpt.where if n not in known)
    if extra:
        problems.append(f"{len(extra)} tensors the config does not account for, e.g. {extra[:3]}")
    if problems:
        more = f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise CheckpointError(
            f"checkpoint {ckpt.located.folder} ({ckpt.located.layout} layout) does not match its config: "
            f"{_config_hint(cfg)}\n  " + "\n  ".join(problems[:8]) + more)
    return expected


def _to_spec_dtype(arr: np.ndarray, spec: params_lib.ParamSpec, name: str, warned: set) -> np.ndarray:
    target = np.dtype(jnp.dtype(spec.dtype))
    if arr.dtype == target:
        return arr
    out = arr.astype(target)
    if name not in warned and np.dtype(arr.dtype).itemsize > target.itemsize:
        if not np.array_equal(out.astype(arr.dtype), arr):
            warned.add(name)
            log.warning("%s is stored as %s; rounding it to %s loses precision", name, arr.dtype, target)
    return out


def _tensor_names(parts) -> str:
    """The checkpoint tensors a weight of one layer is read from (HF: q_proj + k_proj + v_proj for the fused qkv)."""
    return " + ".join(dict.fromkeys(e.name for e, _ in parts))


@functools.partial(jax.jit, donate_argnums=(0,))
def _put_layer(full, part, i):
    """Layer i of a stacked weight, in place in the donated buffer."""
    return full.at[i].set(part)


Sources = dict[tuple[str, int | None], list[tuple[layouts.TensorEntry, layouts.Part]]]


def sources_of(entries: list[layouts.TensorEntry]) -> Sources:
    """{(weight path, layer pair): the tensor rows that fill it}: several for the fused qkv, in axis-1 order."""
    sources: Sources = {}
    for e in entries:
        for part in e.parts:
            sources.setdefault((part.param, part.pair), []).append((e, part))
    for parts in sources.values():
        parts.sort(key=lambda ep: ep[1].axis1 or (0, 0))
    return sources


def read_box(ckpt: OpenCheckpoint, parts, spec: params_lib.ParamSpec, index: tuple[slice, ...],
             warned: set) -> np.ndarray:
    """The box `index` (unit-step slices with start and stop) of a weight of one layer, read exactly from the rows
    of each part it overlaps: a box of the fused qkv may span q, k and v (one read each, joined along axis 1)."""
    pieces = []
    for entry, part in parts:
        sub = index
        if part.axis1 is not None:
            lo, hi = max(index[1].start, part.axis1[0]), min(index[1].stop, part.axis1[1])
            if lo >= hi:
                continue
            sub = (index[0], slice(lo - part.axis1[0], hi - part.axis1[0]), *index[2:])
        arr = ckpt.where[entry.name].read(entry.name, sub, view_shape=part.view_shape(spec.shape),
                                          row_offset=part.row_start)
        pieces.append(_to_spec_dtype(arr, spec, entry.name, warned))
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


def _sharding_for(mesh, axes):
    if mesh is None:
        return SingleDeviceSharding(jax.devices()[0])
    return NamedSharding(mesh, sharding.logical_spec(axes))


def load_params(located: layouts.Located, cfg: ModelConfig, mesh=None, *, counter: ByteCounter | None = None,
                show_progress: bool = True, check_finite: bool = True):
    """Read a located checkpoint into a params tree (params.model_specs structure) on `mesh` (or one device).

    check_finite: count NaN / inf values (and MXFP4 scale bytes of 255) on the device once loaded, and raise a
    CheckpointError naming the tensors that hold any (a reduction over the weights: cheap next to reading them)."""
    ckpt = OpenCheckpoint(located, counter)
    try:
        entries = validate(ckpt, cfg)
        sources = sources_of(entries)
        specs = params_lib.flat_specs(cfg)
        for path, spec in specs.items():
            sharding.check_divisible(mesh, spec.shape, spec.axes, path)
        total = sum(spec.nbytes for spec in specs.values())
        bar = Progress(total, f"loading {located.layout} checkpoint", unit="B",
                       enabled=show_progress and jax.process_index() == 0)
        warned: set = set()

        def read_layer(path: str, pair: int | None, spec: params_lib.ParamSpec):
            parts = sources[(path, pair)]
            boxes: dict = {}  # devices holding the same box (replicas) share one read: once per process

            def cb(index):
                index = tuple(slice(*s.indices(d)[:2]) for s, d in zip(index, spec.shape))
                box = tuple((s.start, s.stop) for s in index)
                if box not in boxes:
                    boxes[box] = read_box(ckpt, parts, spec, index, warned)
                return boxes[box]

            arr = jax.make_array_from_callback(spec.shape, _sharding_for(mesh, spec.axes), cb)
            bar.update(spec.nbytes, _tensor_names(parts))
            return arr

        out = {}
        for path, spec in specs.items():
            if spec.axes and spec.axes[0] == "layers":
                layer_spec = spec.unstacked()
                full_sh = _sharding_for(mesh, spec.axes)
                buf = jnp.zeros(spec.shape, spec.dtype, device=full_sh)
                for pair in range(spec.shape[0]):
                    buf = _put_layer(buf, read_layer(path, pair, layer_spec), pair)
                out[path] = buf
            else:
                out[path] = read_layer(path, None, spec)
        bar.close()
        if check_finite:
            finite.check(out, specs, f"checkpoint {located.folder}", mesh=mesh,
                         name_of=lambda path, pair: _tensor_names(sources[(path, pair)]))
        return params_lib.map_specs(lambda p, s: out[p], cfg)
    finally:
        ckpt.close()
