"""Orbax: save a loaded model's weights (MXFP4 still packed) and restore them onto any mesh shape.

Folder layout: config.json (HF form), gptoss_jax.json (format marker), params/ (an Orbax StandardCheckpointer tree).
Restoring reads the abstract tree from params.abstract_params, so each device reads only its own shards.
"""
from __future__ import annotations

import json
import os

import jax
from jax.sharding import SingleDeviceSharding

from gptoss_jax import params as params_lib
from gptoss_jax.checkpoint.safetensors_io import CheckpointError
from gptoss_jax.config import ModelConfig

MARKER = "gptoss_jax.json"


def is_orbax(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def save(path: str, cfg: ModelConfig, params) -> str:
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "params")):
        raise CheckpointError(f"{path}/params already exists; choose an empty output folder")
    os.makedirs(path, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(path, "params"), params)
        ckptr.wait_until_finished()
    if jax.process_index() == 0:
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg.to_hf_json(), f, indent=2)
        with open(os.path.join(path, MARKER), "w") as f:
            json.dump({"format": "orbax", "mxfp4": "packed", "params": "params"}, f)
    return path


def restore(path: str, mesh=None) -> tuple[ModelConfig, object]:
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    cfg = ModelConfig.from_file(os.path.join(path, "config.json"))
    target = params_lib.abstract_params(cfg, mesh)
    if mesh is None:
        one = SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one), target)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore(os.path.join(path, "params"), target)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise CheckpointError(f"{path}: Orbax checkpoint does not match its config.json ({e})") from None
    return cfg, params
