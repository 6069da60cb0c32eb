"""The two release layouts as name maps between checkpoint tensors and the weights of params.model_specs.

A checkpoint tensor is made of one or more row ranges, each one weight of one layer reshaped, or a slice of one
along the weight's axis 1: the fused qkv weight [Nkv, G+2, D, H] (params.py) takes its q heads (j < G), its k head
(j = G) and its v head (j = G+1) from three row ranges, of the original layout's one qkv tensor or of HF's q_proj,
k_proj and v_proj. The loader reads the map one way (weight <- rows of tensors), the synthetic writer the other
(tensor <- weights), so the two can never disagree.
"""
from __future__ import annotations

import dataclasses
import json
import os
import stat

from gptoss_jax import params as params_lib
from gptoss_jax.checkpoint.safetensors_io import CheckpointError, file_kind, open_regular
from gptoss_jax.config import ModelConfig

ORIGINAL = "original"
HF = "hf"
LAYOUTS = (ORIGINAL, HF)
HF_INDEX = "model.safetensors.index.json"


@dataclasses.dataclass(frozen=True)
class Part:
    """Rows [row_start, row_stop) of a checkpoint tensor are weight `param` of layer pair `pair` (None: unstacked),
    reshaped: the whole weight, or with `axis1` = (start, stop) the slice [:, start:stop] of the (unstacked) weight.

    drawn_as: the name the synthetic writer draws the rows' values under (default `param`): q, k and v keep the
    names they had as separate weights, so synthetic checkpoints stay byte-identical for a seed."""
    param: str
    pair: int | None
    row_start: int
    row_stop: int
    axis1: tuple[int, int] | None = None
    drawn_as: str | None = None

    def view_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape these rows take: the weight's (unstacked) `shape`, or its slice along axis 1."""
        if self.axis1 is None:
            return tuple(shape)
        return (shape[0], self.axis1[1] - self.axis1[0], *shape[2:])


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str                 # as the release stores it
    parts: tuple[Part, ...]
    alt_dtypes: tuple[str, ...] = ()   # also accepted (cast exactly or with a warning, see loader)


def _layer_param(layer: int, name: str) -> tuple[str, int]:
    kind = params_lib.PAIR_KINDS[layer % 2]
    return f"layers/{kind}/{name}", layer // 2


def _layout(cfg: ModelConfig, names: dict[str, str], fused_qkv: bool, norm_dtype: str) -> list[TensorEntry]:
    H, V, D, Nq, Nkv, E, I = (cfg.hidden_size, cfg.vocab_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads,
                              cfg.num_experts, cfg.intermediate_size)
    nb_h, nb_i = H // 32, I // 32
    floats = ("float32", "bfloat16")
    out = [
        TensorEntry(names["embed"], (V, H), "bfloat16", (Part("embed", None, 0, V),), floats),
        TensorEntry(names["final_norm"], (H,), norm_dtype, (Part("final_norm", None, 0, H),), floats),
        TensorEntry(names["unembed"], (V, H), "bfloat16", (Part("unembed", None, 0, V),), floats),
    ]
    for n in range(cfg.num_layers):
        def ent(key, shape, dtype, param, rows=None, alt=floats):
            path, pair = _layer_param(n, param)
            return TensorEntry(names[key].format(n=n), shape, dtype, (Part(path, pair, 0, rows or shape[0]),), alt)

        def qkv_part(x, suffix, start):
            """The rows of all q (or k or v) heads of this layer, from row `start`: a slice of axis 1 of qkv_w."""
            G = cfg.q_per_kv
            heads, j = {"q": (Nq, (0, G)), "k": (Nkv, (G, G + 1)), "v": (Nkv, (G + 1, G + 2))}[x]
            path, pair = _layer_param(n, f"attn/qkv_{suffix}")
            return Part(path, pair, start, start + heads * D, j, _layer_param(n, f"attn/{x}_{suffix}")[0])

        if fused_qkv:   # rows: every q head, then k, then v
            qkv = (Nq + 2 * Nkv) * D
            for suffix, shape in (("w", (qkv, H)), ("b", (qkv,))):
                parts = (qkv_part("q", suffix, 0), qkv_part("k", suffix, Nq * D), qkv_part("v", suffix, (Nq + Nkv) * D))
                out.append(TensorEntry(names[f"qkv_{suffix}"].format(n=n), shape, "bfloat16", parts, floats))
        else:
            for x, heads in (("q", Nq), ("k", Nkv), ("v", Nkv)):
                for suffix, shape in (("w", (heads * D, H)), ("b", (heads * D,))):
                    out.append(TensorEntry(names[f"{x}_{suffix}"].format(n=n), shape, "bfloat16",
                                           (qkv_part(x, suffix, 0),), floats))
        out += [
            ent("attn_norm", (H,), norm_dtype, "attn/norm"),
            ent("o_w", (H, Nq * D), "bfloat16", "attn/o_w"),
            ent("o_b", (H,), "bfloat16", "attn/o_b"),
            ent("sinks", (Nq,), "bfloat16", "attn/sinks"),
            ent("mlp_norm", (H,), norm_dtype, "mlp/norm"),
            ent("gate_w", (E, H), "bfloat16", "mlp/gate_w"),
            ent("gate_b", (E,), "bfloat16", "mlp/gate_b"),
            ent("mlp1_blocks", (E, 2 * I, nb_h, 16), "uint8", "mlp/mlp1_w/blocks", alt=()),
            ent("mlp1_scales", (E, 2 * I, nb_h), "uint8", "mlp/mlp1_w/scales", alt=()),
            ent("mlp1_b", (E, 2 * I), "bfloat16", "mlp/mlp1_b"),
            ent("mlp2_blocks", (E, H, nb_i, 16), "uint8", "mlp/mlp2_w/blocks", alt=()),
            ent("mlp2_scales", (E, H, nb_i), "uint8", "mlp/mlp2_w/scales", alt=()),
            ent("mlp2_b", (E, H), "bfloat16", "mlp/mlp2_b"),
        ]
    return out


_ORIGINAL_NAMES = {
    "embed": "embedding.weight", "final_norm": "norm.scale", "unembed": "unembedding.weight",
    "qkv_w": "block.{n}.attn.qkv.weight", "qkv_b": "block.{n}.attn.qkv.bias",
    "attn_norm": "block.{n}.attn.norm.scale", "o_w": "block.{n}.attn.out.weight", "o_b": "block.{n}.attn.out.bias",
    "sinks": "block.{n}.attn.sinks", "mlp_norm": "block.{n}.mlp.norm.scale",
    "gate_w": "block.{n}.mlp.gate.weight", "gate_b": "block.{n}.mlp.gate.bias",
    "mlp1_blocks": "block.{n}.mlp.mlp1_weight.blocks", "mlp1_scales": "block.{n}.mlp.mlp1_weight.scales",
    "mlp1_b": "block.{n}.mlp.mlp1_bias",
    "mlp2_blocks": "block.{n}.mlp.mlp2_weight.blocks", "mlp2_scales": "block.{n}.mlp.mlp2_weight.scales",
    "mlp2_b": "block.{n}.mlp.mlp2_bias",
}

_HF_NAMES = {
    "embed": "model.embed_tokens.weight", "final_norm": "model.norm.weight", "unembed": "lm_head.weight",
    "q_w": "model.layers.{n}.self_attn.q_proj.weight", "q_b": "model.layers.{n}.self_attn.q_proj.bias",
    "k_w": "model.layers.{n}.self_attn.k_proj.weight", "k_b": "model.layers.{n}.self_attn.k_proj.bias",
    "v_w": "model.layers.{n}.self_attn.v_proj.weight", "v_b": "model.layers.{n}.self_attn.v_proj.bias",
    "attn_norm": "model.layers.{n}.input_layernorm.weight",
    "o_w": "model.layers.{n}.self_attn.o_proj.weight", "o_b": "model.layers.{n}.self_attn.o_proj.bias",
    "sinks": "model.layers.{n}.self_attn.sinks", "mlp_norm": "model.layers.{n}.post_attention_layernorm.weight",
    "gate_w": "model.layers.{n}.mlp.router.weight", "gate_b": "model.layers.{n}.mlp.router.bias",
    "mlp1_blocks": "model.layers.{n}.mlp.experts.gate_up_proj_blocks",
    "mlp1_scales": "model.layers.{n}.mlp.experts.gate_up_proj_scales",
    "mlp1_b": "model.layers.{n}.mlp.experts.gate_up_proj_bias",
    "mlp2_blocks": "model.layers.{n}.mlp.experts.down_proj_blocks",
    "mlp2_scales": "model.layers.{n}.mlp.experts.down_proj_scales",
    "mlp2_b": "model.layers.{n}.mlp.experts.down_proj_bias",
}


def entries(cfg: ModelConfig, layout: str) -> list[TensorEntry]:
    if layout == ORIGINAL:
        return _layout(cfg, _ORIGINAL_NAMES, fused_qkv=True, norm_dtype="float32")
    if layout == HF:
        return _layout(cfg, _HF_NAMES, fused_qkv=False, norm_dtype="bfloat16")
    raise ValueError(f"unknown layout {layout!r}: expected one of {LAYOUTS}")


def _check_regular(path: str, what: str) -> None:
    """Refuse a FIFO, device or folder where a file belongs (opening a FIFO would block forever)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: is {file_kind(mode)}, not a regular file; expected {what}")


def _read_index(index: str) -> dict[str, str]:
    """The weight_map of a sharded checkpoint's index: tensor name -> shard file name in the same folder."""
    fd = open_regular(index, "a JSON index")
    try:
        with os.fdopen(fd, "rb") as f:
            weight_map = json.loads(f.read())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: malformed index ({e!r}); expected {{'weight_map': {{...}}}}") from None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map is not an object; expected {{tensor name: shard file name}}")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or os.path.basename(shard) != shard or shard in (".", ".."):
            raise CheckpointError(f"{index}: tensor {name!r} maps to {shard!r}; expected a file name in the "
                                  "index's folder")
    return weight_map


@dataclasses.dataclass(frozen=True)
class Located:
    """A checkpoint found on disk: its layout, the folder holding its safetensors, and its config.json."""
    layout: str
    folder: str
    config_path: str
    files: tuple[str, ...]


def locate(path: str) -> Located:
    """Find the checkpoint at `path` and tell its layout apart by its tensor names.

    Accepts a Hugging Face folder (config.json + model.safetensors.index.json + shards, or one model.safetensors),
    an original folder (config.json + *.safetensors with `block.N...` names), or a release folder whose original/
    subfolder holds the original layout (the HF files at the top are preferred when both are there).
    """
    from gptoss_jax.checkpoint.safetensors_io import SafetensorsFile

    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: expected a checkpoint FOLDER (config.json + *.safetensors), got a file")
    candidates = [path]
    if os.path.isdir(os.path.join(path, "original")):
        candidates.append(os.path.join(path, "original"))
    for folder in candidates:
        files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
        config = os.path.join(folder, "config.json")
        if not files:
            continue
        if not os.path.exists(config):
            raise CheckpointError(f"{folder}: has {len(files)} .safetensors files but no config.json")
        _check_regular(config, "a JSON config")
        index = os.path.join(folder, HF_INDEX)
        if os.path.exists(index):  # sharded: the index names the shards (both layouts ship one for big models)
            weight_map = _read_index(index)
            names = set(weight_map)
            files = sorted(set(weight_map.values()))
            missing = [s for s in files if not os.path.exists(os.path.join(folder, s))]
            if missing:
                raise CheckpointError(f"{index}: lists shard files that are not there: {missing}")
        else:
            first = SafetensorsFile(os.path.join(folder, files[0]))
            names = set(first.tensors)
            first.close()
        if any(n.startswith("model.") or n == "lm_head.weight" for n in names):
            return Located(HF, folder, config, tuple(files))
        if any(n.startswith("block.") or n in ("embedding.weight", "unembedding.weight") for n in names):
            return Located(ORIGINAL, folder, config, tuple(files))
        raise CheckpointError(f"{folder}: unknown checkpoint layout; tensor names such as {sorted(names)[:4]} are "
                              f"neither the original gpt-oss layout (block.N.attn.qkv.weight, ...) nor the Hugging "
                              f"Face one (model.layers.N.self_attn.q_proj.weight, ...)")
    raise CheckpointError(f"{path}: no .safetensors files here or in original/ (expected a gpt-oss checkpoint)")
