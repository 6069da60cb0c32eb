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
from gptoss_jax.checkpoint import finite
from gptoss_jax.checkpoint.safetensors_io import CheckpointError
from gptoss_jax.config import ModelConfig

MARKER = "gptoss_jax.json"


def is_orbax(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def check_output(path: str) -> str:
    """The absolute output folder of a conversion, refused if it cannot take one (cheap: call it before loading)."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CheckpointError(f"{path} is a file; expected an output FOLDER for the Orbax checkpoint")
    if os.path.exists(os.path.join(path, "params")):
        raise CheckpointError(f"{path}/params already exists; choose an empty output folder")
    return path


def save(path: str, cfg: ModelConfig, params) -> str:
    import orbax.checkpoint as ocp

    path = check_output(path)
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


def restore(path: str, mesh=None, *, check_finite: bool = True) -> tuple[ModelConfig, object]:
    """(config, params) of an Orbax folder on `mesh`; check_finite: refuse weights holding NaN / inf (finite.py)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    cfg = ModelConfig.from_file(os.path.join(path, "config.json"))
    target = params_lib.abstract_params(cfg, mesh)
    if mesh is None:
        one = SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=one), target)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            stored = ckptr.metadata(os.path.join(path, "params")).item_metadata
            _check_stored(path, cfg, stored, target)  # before restoring: a failed restore leaves threads behind
            params = ckptr.restore(os.path.join(path, "params"), target)
    except (ValueError, KeyError, FileNotFoundError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: Orbax checkpoint does not match its config.json ({e})") from None
    if check_finite:
        finite.check(finite.flatten(params), params_lib.flat_specs(cfg), f"Orbax checkpoint {path}", mesh=mesh)
    return cfg, params


def _leaves(tree) -> dict[str, object]:
    def name(key) -> str:
        return str(getattr(key, "key", getattr(key, "name", key)))

    return {"/".join(name(k) for k in p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_stored(path: str, cfg: ModelConfig, stored, target) -> None:
    """Every weight the config expects is stored with its shape and dtype: one error listing what differs."""
    have, want = _leaves(stored), _leaves(target)
    if not have:
        raise CheckpointError(f"{path}/params: no readable Orbax weights there (missing or damaged); expected the "
                              f"params/ folder `gptoss convert` writes")
    if any(k.endswith("/attn/q_w") for k in have) and not any(k.endswith("/attn/qkv_w") for k in have):
        raise CheckpointError(f"{path}: saved by an older gptoss-jax, with q, k and v as separate weights (attn/q_w, "
                              f"k_w, v_w); this version holds them as one (attn/qkv_w): convert the original "
                              f"checkpoint again with `gptoss convert`")
    problems = [f"missing weight {k!r}" for k in want if k not in have]
    problems += [f"weight {k!r} is stored as {have[k].dtype}{list(have[k].shape)}, config.json expects "
                 f"{w.dtype}{list(w.shape)}" for k, w in want.items()
                 if k in have and (tuple(have[k].shape) != tuple(w.shape) or have[k].dtype != w.dtype)]
    problems += [f"weight {k!r} is not in the config" for k in have if k not in want]
    if problems:
        more = f" ... and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"{path}: Orbax weights do not match its config.json ({cfg.num_layers} layers, "
                              f"{cfg.num_experts} experts, hidden {cfg.hidden_size}): " + "; ".join(problems[:4])
                              + more)
