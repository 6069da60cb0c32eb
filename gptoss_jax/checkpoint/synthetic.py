"""Random checkpoints in the exact release layouts, for any config: they stand in for the real weights in tests,
demos and benchmarks (no machine here can download the real ones).

Values are a deterministic function of (seed, weight, layer), so the same seed written in both layouts is the same
model. Float weights are drawn on the bf16 grid (what the release stores), MoE weights as random MXFP4 codes with
scales that give a weight std of about 1/sqrt(fan-in). Tensors are produced one at a time, in row chunks.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import zlib

import ml_dtypes
import numpy as np

from gptoss_jax import params as params_lib
from gptoss_jax.checkpoint import layouts
from gptoss_jax.checkpoint.safetensors_io import write_safetensors
from gptoss_jax.config import ModelConfig
from gptoss_jax.progress import Progress

_CHUNK_ELEMS = 1 << 22


def draw(spec: params_lib.ParamSpec, seed: int, path: str, pair: int | None) -> np.ndarray:
    """The value of one weight of one layer (unstacked spec), deterministic in (seed, path, pair)."""
    rng = np.random.default_rng([seed, zlib.crc32(path.encode()), 0 if pair is None else pair + 1, 7])
    kind, arg = spec.init
    shape = spec.shape
    if kind == "mxfp4_blocks":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if kind == "mxfp4_scales":
        base = params_lib.mxfp4_scale_for_std(arg)
        return (base + rng.integers(0, 2, size=shape)).astype(np.uint8)
    out = np.empty(shape, ml_dtypes.bfloat16)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK_ELEMS):
        n = min(_CHUNK_ELEMS, flat.size - start)
        x = rng.standard_normal(n, dtype=np.float32) * np.float32(arg)
        if kind == "ones_noise":
            x += 1.0
        elif kind != "normal":
            raise ValueError(f"unknown init {spec.init}")
        flat[start:start + n] = x.astype(ml_dtypes.bfloat16)
    return out.astype(np.dtype(spec.dtype)) if np.dtype(spec.dtype) != out.dtype else out


def _producer(cfg: ModelConfig, seed: int, entries: list[layouts.TensorEntry], bar: Progress):
    specs = params_lib.flat_specs(cfg)
    by_name = {e.name: e for e in entries}

    def produce(name: str) -> np.ndarray:
        e = by_name[name]
        pieces = []
        for part in e.parts:
            spec = specs[part.param]
            if part.pair is not None:
                spec = spec.unstacked()
            # the part's own shape (a slice of the fused qkv), drawn under its own name: the same values as when
            # q, k and v were separate weights
            spec = dataclasses.replace(spec, shape=part.view_shape(spec.shape))
            value = draw(spec, seed, part.drawn_as or part.param, part.pair)
            pieces.append(value.reshape(part.row_stop - part.row_start, *e.shape[1:]))
        arr = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)
        arr = arr.astype(_np_dtype(e.dtype))
        bar.update(arr.nbytes, name)
        return arr

    return produce


def _np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def write_checkpoint(path: str, cfg: ModelConfig, layout: str = layouts.HF, *, seed: int = 0,
                     max_shard_bytes: int = 2 << 30, show_progress: bool = False) -> str:
    """Write a random checkpoint of `cfg` in `layout` ('original' or 'hf') into folder `path`; returns `path`.

    original: config.json with the reference implementation's field names; hf: config.json with HF's names and
    quantization_config mxfp4. Tensors go to one model.safetensors, or, past `max_shard_bytes`, to numbered shards
    plus model.safetensors.index.json, named as the release names them.
    """
    os.makedirs(path, exist_ok=True)
    entries = layouts.entries(cfg, layout)
    total = sum(math.prod(e.shape) * _np_dtype(e.dtype).itemsize for e in entries)
    bar = Progress(total, f"writing synthetic {layout} checkpoint", unit="B", enabled=show_progress)
    produce = _producer(cfg, seed, entries, bar)
    meta = {"format": "pt", "gptoss_jax_synthetic_seed": str(seed)}
    config = cfg.to_original_json() if layout == layouts.ORIGINAL else cfg.to_hf_json()
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shards: list[list[layouts.TensorEntry]] = [[]]
    size = 0
    for e in entries:
        nbytes = math.prod(e.shape) * _np_dtype(e.dtype).itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += nbytes
    # file names as the release has them: one model.safetensors when it fits, else numbered shards + an index
    # (HF: model-00001-of-00014.safetensors; original/: model--00001-of-00007.safetensors)
    sep = "-" if layout == layouts.HF else "--"
    weight_map = {}
    for i, group in enumerate(shards):
        fname = ("model.safetensors" if len(shards) == 1 else
                 f"model{sep}{i + 1:05d}-of-{len(shards):05d}.safetensors")
        write_safetensors(os.path.join(path, fname), [(e.name, e.shape, _np_dtype(e.dtype)) for e in group],
                          produce, meta)
        weight_map.update({e.name: fname for e in group})
    if len(shards) > 1:
        with open(os.path.join(path, layouts.HF_INDEX), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    bar.close()
    return path


def write_release(path: str, cfg: ModelConfig, *, seed: int = 0, max_shard_bytes: int = 2 << 30,
                  original_shard_bytes: int = 16 << 30, show_progress: bool = False) -> str:
    """Both layouts of one random model, arranged as the release repository is: HF at the top, original/ below."""
    write_checkpoint(path, cfg, layouts.HF, seed=seed, max_shard_bytes=max_shard_bytes, show_progress=show_progress)
    write_checkpoint(os.path.join(path, "original"), cfg, layouts.ORIGINAL, seed=seed,
                     max_shard_bytes=original_shard_bytes, show_progress=show_progress)
    return path


DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "gptoss_jax", "synthetic")


def cached_checkpoint(preset: str | ModelConfig, seed: int = 0, root: str | None = None, *,
                      show_progress: bool = True) -> str:
    """The synthetic HF-layout checkpoint of (preset, seed) under `root`, written on first use; returns its path.

    Every process of a multi-process job may call it (hosts need not share a disk): each writes into a folder of
    its own and renames it into place; the first rename wins.
    """
    from gptoss_jax import distributed
    from gptoss_jax.config import get_config

    cfg = get_config(preset) if isinstance(preset, str) else preset
    path = os.path.join(root or DEFAULT_ROOT, f"{cfg.name}-seed{seed}")
    if not os.path.exists(os.path.join(path, "config.json")):
        logging.info("writing synthetic %s checkpoint to %s", cfg.name, path)
        tmp = f"{path}.partial-{socket.gethostname()}-{os.getpid()}"
        write_checkpoint(tmp, cfg, seed=seed, show_progress=show_progress and distributed.is_main())
        try:
            os.replace(tmp, path)
        except OSError:
            if not os.path.exists(os.path.join(path, "config.json")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return path
