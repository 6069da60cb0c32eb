"""ModelConfig: the static, hashable description of a gpt-oss network.

Built from a preset name or from either form of config.json that the release ships: the original one (field names
of OpenAI's reference implementation, in `original/config.json`) and the Hugging Face one (`num_local_experts`,
`layer_types`, `rope_scaling` or `rope_parameters`, ...).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from gptoss_jax.errors import ConfigError
SLIDING = "sliding_attention"
FULL = "full_attention"



@dataclasses.dataclass(frozen=True)
class ModelConfig:
    num_layers: int
    num_experts: int
    experts_per_token: int
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    head_dim: int
    num_heads: int
    num_kv_heads: int
    sliding_window: int
    initial_context_length: int = 4096
    rope_theta: float = 150000.0
    rope_scaling_factor: float = 32.0
    rope_ntk_alpha: float = 1.0
    rope_ntk_beta: float = 32.0
    swiglu_limit: float = 7.0
    swiglu_alpha: float = 1.702
    rms_norm_eps: float = 1e-5
    name: str = "custom"

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def max_context(self) -> int:
        return int(self.initial_context_length * max(self.rope_scaling_factor, 1.0))

    @property
    def num_pairs(self) -> int:
        """Layers come in (sliding, full) pairs; the model scans over pairs."""
        return self.num_layers // 2

    @property
    def q_per_kv(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def layer_types(self) -> tuple[str, ...]:
        return tuple(SLIDING if i % 2 == 0 else FULL for i in range(self.num_layers))

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        def need(ok: bool, what: str):
            if not ok:
                raise ConfigError(f"invalid gpt-oss config {self.name!r}: {what}")

        for f in ("num_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                  "intermediate_size", "head_dim", "num_heads", "num_kv_heads", "sliding_window",
                  "initial_context_length"):
            need(isinstance(getattr(self, f), int) and getattr(self, f) > 0, f"{f} must be a positive int, "
                 f"got {getattr(self, f)!r}")
        need(self.num_layers % 2 == 0, f"num_layers must be even (sliding and full layers alternate), "
             f"got {self.num_layers}")
        need(self.experts_per_token <= self.num_experts,
             f"experts_per_token ({self.experts_per_token}) > num_experts ({self.num_experts})")
        need(self.hidden_size % 32 == 0, f"hidden_size must be a multiple of 32 (MXFP4 blocks), got {self.hidden_size}")
        need(self.intermediate_size % 32 == 0,
             f"intermediate_size must be a multiple of 32 (MXFP4 blocks), got {self.intermediate_size}")
        need(self.head_dim % 2 == 0, f"head_dim must be even (rotary halves), got {self.head_dim}")
        need(self.num_heads % self.num_kv_heads == 0,
             f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        need(self.rope_theta > 1.0, f"rope_theta must be > 1, got {self.rope_theta}")
        if self.rope_scaling_factor > 1.0:
            low, high = yarn_band(self)
            need(0 < low < high < self.head_dim / 2 - 1,
                 f"YaRN band low={low:.3f} high={high:.3f} must satisfy 0 < low < high < head_dim/2 - 1 "
                 f"(head_dim={self.head_dim}, ntk_alpha={self.rope_ntk_alpha}, ntk_beta={self.rope_ntk_beta})")

    # ------------------------------------------------------------ config.json io
    @classmethod
    def from_json(cls, data: dict[str, Any], *, name: str = "custom") -> "ModelConfig":
        """Either form of config.json: HF if it names HF fields, else the original form."""
        if not isinstance(data, dict):
            raise ConfigError(f"config.json must hold a JSON object, got {type(data).__name__}")
        if "num_local_experts" in data or "model_type" in data or "layer_types" in data:
            return cls._from_hf(data, name=name)
        return cls._from_original(data, name=name)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ModelConfig":
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no config.json there (expected the checkpoint's config file)") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, name=os.path.basename(os.path.dirname(os.path.abspath(path))) or "custom")

    @classmethod
    def _from_original(cls, d: dict[str, Any], *, name: str) -> "ModelConfig":
        required = ("num_hidden_layers", "num_experts", "experts_per_token", "vocab_size", "hidden_size",
                    "intermediate_size", "head_dim", "num_attention_heads", "num_key_value_heads", "sliding_window")
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"config.json (original layout) lacks {missing}; expected the fields of "
                              f"gpt_oss.torch.model.ModelConfig")
        return cls(
            num_layers=d["num_hidden_layers"], num_experts=d["num_experts"],
            experts_per_token=d["experts_per_token"], vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"], head_dim=d["head_dim"], num_heads=d["num_attention_heads"],
            num_kv_heads=d["num_key_value_heads"], sliding_window=d["sliding_window"],
            initial_context_length=d.get("initial_context_length", 4096),
            rope_theta=_num(d, "rope_theta", 150000.0), rope_scaling_factor=_num(d, "rope_scaling_factor", 32.0),
            rope_ntk_alpha=_num(d, "rope_ntk_alpha", 1.0), rope_ntk_beta=_num(d, "rope_ntk_beta", 32.0),
            swiglu_limit=_num(d, "swiglu_limit", 7.0), name=name)

    @classmethod
    def _from_hf(cls, d: dict[str, Any], *, name: str) -> "ModelConfig":
        required = ("num_hidden_layers", "num_local_experts", "vocab_size", "hidden_size", "intermediate_size",
                    "num_attention_heads", "num_key_value_heads")
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"config.json (Hugging Face layout) lacks {missing}")
        if d.get("model_type", "gpt_oss") != "gpt_oss":
            raise ConfigError(f"config.json has model_type={d['model_type']!r}; expected 'gpt_oss'")
        n = d["num_hidden_layers"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"config.json num_hidden_layers={n!r}: expected a positive integer")
        head_dim = d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"]
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise ConfigError(f"config.json rope_scaling={rope!r}: expected an object such as {{\"rope_type\": "
                              f"\"yarn\", \"factor\": 32.0, ...}}")
        rope_type = rope.get("rope_type", rope.get("type", "yarn"))
        if rope_type not in ("yarn", "default"):
            raise ConfigError(f"config.json rope type {rope_type!r} is not supported; expected 'yarn'")
        if rope.get("truncate", False):
            raise ConfigError("config.json rope_scaling.truncate=true is not gpt-oss's YaRN (expected false)")
        factor = _num(rope, "factor", 1.0) if rope_type == "yarn" else 1.0
        layer_types = d.get("layer_types")
        expected = [SLIDING if i % 2 == 0 else FULL for i in range(n)]
        if layer_types is not None and not isinstance(layer_types, list):
            raise ConfigError(f"config.json layer_types={layer_types!r}: expected a list with one entry a layer")
        if layer_types is not None and len(layer_types) != n:
            raise ConfigError(f"config.json layer_types lists {len(layer_types)} layers but num_hidden_layers is {n}; "
                              f"expected one entry a layer")
        if layer_types is not None and list(layer_types) != expected:
            raise ConfigError(f"config.json layer_types {layer_types} is not the alternating pattern gpt-oss uses "
                              f"(sliding on even layers, full on odd); this model supports only that pattern")
        if d.get("tie_word_embeddings", False):
            raise ConfigError("config.json tie_word_embeddings=true; gpt-oss has a separate unembedding")
        return cls(
            num_layers=n, num_experts=d["num_local_experts"],
            experts_per_token=d.get("num_experts_per_tok", d.get("experts_per_token", 4)),
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
            head_dim=head_dim, num_heads=d["num_attention_heads"], num_kv_heads=d["num_key_value_heads"],
            sliding_window=d.get("sliding_window") or 128,
            initial_context_length=_num(rope, "original_max_position_embeddings",
                                        d.get("initial_context_length", 4096), int),
            rope_theta=_num(rope, "rope_theta", d.get("rope_theta", 150000.0)), rope_scaling_factor=factor,
            rope_ntk_alpha=_num(rope, "beta_slow", 1.0), rope_ntk_beta=_num(rope, "beta_fast", 32.0),
            swiglu_limit=_num(d, "swiglu_limit", 7.0), swiglu_alpha=_num(d, "swiglu_alpha", 1.702),
            rms_norm_eps=_num(d, "rms_norm_eps", 1e-5), name=name)

    def to_original_json(self) -> dict[str, Any]:
        """The original layout's config.json (exactly the reference implementation's fields)."""
        return {
            "num_hidden_layers": self.num_layers, "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token, "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "intermediate_size": self.intermediate_size,
            "swiglu_limit": self.swiglu_limit, "head_dim": self.head_dim,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "sliding_window": self.sliding_window, "initial_context_length": self.initial_context_length,
            "rope_theta": self.rope_theta, "rope_scaling_factor": self.rope_scaling_factor,
            "rope_ntk_alpha": self.rope_ntk_alpha, "rope_ntk_beta": self.rope_ntk_beta,
        }

    def to_hf_json(self) -> dict[str, Any]:
        """The Hugging Face layout's config.json, as the release writes it."""
        return {
            "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
            "attention_bias": True, "attention_dropout": 0.0,
            # the release's <|return|> / <|endoftext|> ids; small test vocabularies have neither
            "eos_token_id": 200002 if self.vocab_size > 200002 else None,
            "pad_token_id": 199999 if self.vocab_size > 199999 else None,
            "experts_per_token": self.experts_per_token, "num_experts_per_tok": self.experts_per_token,
            "head_dim": self.head_dim, "hidden_act": "silu", "hidden_size": self.hidden_size,
            "initial_context_length": self.initial_context_length, "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size, "layer_types": list(self.layer_types),
            "max_position_embeddings": self.max_context, "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers, "num_key_value_heads": self.num_kv_heads,
            "num_local_experts": self.num_experts, "output_router_logits": False,
            "quantization_config": {
                "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                           "model.embed_tokens", "lm_head"],
                "quant_method": "mxfp4"},
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": {"beta_fast": self.rope_ntk_beta, "beta_slow": self.rope_ntk_alpha,
                             "factor": self.rope_scaling_factor,
                             "original_max_position_embeddings": self.initial_context_length,
                             "rope_type": "yarn", "truncate": False},
            "rope_theta": self.rope_theta, "router_aux_loss_coef": 0.9, "sliding_window": self.sliding_window,
            "swiglu_limit": self.swiglu_limit, "tie_word_embeddings": False, "use_cache": True,
            "vocab_size": self.vocab_size,
        }

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)


def _num(d: dict[str, Any], key: str, default, kind=float):
    """A numeric config.json field (default when absent); a value that is not a number names the field."""
    value = d.get(key, default)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config.json {key}={value!r}: expected a number") from None


def yarn_band(cfg: ModelConfig) -> tuple[float, float]:
    """YaRN's NTK-by-parts band (low, high) in rotary-dimension units, unrounded as gpt-oss computes it."""
    d_half = cfg.head_dim / 2
    low = d_half * math.log(cfg.initial_context_length / (cfg.rope_ntk_beta * 2 * math.pi)) / math.log(cfg.rope_theta)
    high = d_half * math.log(cfg.initial_context_length / (cfg.rope_ntk_alpha * 2 * math.pi)) / math.log(cfg.rope_theta)
    return low, high


_BIG = dict(vocab_size=201088, hidden_size=2880, intermediate_size=2880, head_dim=64, num_heads=64, num_kv_heads=8,
            sliding_window=128, experts_per_token=4)

PRESETS: dict[str, ModelConfig] = {
    "gpt-oss-120b": ModelConfig(num_layers=36, num_experts=128, name="gpt-oss-120b", **_BIG),
    "gpt-oss-20b": ModelConfig(num_layers=24, num_experts=32, name="gpt-oss-20b", **_BIG),
    "gpt-oss-safeguard-20b": ModelConfig(num_layers=24, num_experts=32, name="gpt-oss-safeguard-20b", **_BIG),
    # Small configs for tests, demos and CPU benchmarks: every feature of the big ones (GQA, sinks, a window
    # shorter than the test sequences, top-4 of several experts, MXFP4 blocks), tiny sizes.
    "tiny": ModelConfig(num_layers=2, num_experts=8, experts_per_token=4, vocab_size=512, hidden_size=64,
                        intermediate_size=64, head_dim=16, num_heads=4, num_kv_heads=2, sliding_window=8,
                        name="tiny"),
    "tiny-4l": ModelConfig(num_layers=4, num_experts=16, experts_per_token=4, vocab_size=384, hidden_size=96,
                           intermediate_size=64, head_dim=16, num_heads=8, num_kv_heads=2, sliding_window=6,
                           name="tiny-4l"),
    # The embedded default of `gptoss demo`: the real o200k_harmony vocabulary, tiny everything else.
    "demo": ModelConfig(num_layers=2, num_experts=8, experts_per_token=4, vocab_size=201088, hidden_size=64,
                        intermediate_size=64, head_dim=16, num_heads=4, num_kv_heads=2, sliding_window=128,
                        name="demo"),
}


def get_config(name_or_path: str) -> ModelConfig:
    """The one config reader: a preset name, a config.json path, or a checkpoint folder holding one (either release
    layout, config.json at the top or in original/, or an Orbax conversion). Reads no weights, so input can be
    checked against the model before a load that takes minutes."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    if os.path.isdir(name_or_path):
        for candidate in ("config.json", os.path.join("original", "config.json")):
            p = os.path.join(name_or_path, candidate)
            if os.path.exists(p):
                return ModelConfig.from_file(p)
        raise ConfigError(f"{name_or_path}: no config.json in this folder or in original/ (expected a checkpoint "
                          f"folder: config.json + *.safetensors)")
    if os.path.isfile(name_or_path):
        if name_or_path.endswith(".json"):
            return ModelConfig.from_file(name_or_path)
        raise ConfigError(f"{name_or_path}: expected a checkpoint FOLDER (config.json + *.safetensors) or a "
                          f"config.json, got a file")
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise ConfigError(f"{name_or_path}: no such checkpoint folder")
    raise ConfigError(f"unknown model config {name_or_path!r}: expected one of {sorted(PRESETS)} or a path to "
                      f"a config.json / checkpoint folder")
