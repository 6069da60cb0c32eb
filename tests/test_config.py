import json
import re

import pytest

from gptoss_jax.config import PRESETS, ConfigError, ModelConfig, get_config
from gptoss_jax.params import count_params


def test_presets_match_the_model_card():
    big, small = PRESETS["gpt-oss-120b"], PRESETS["gpt-oss-20b"]
    assert (big.num_layers, big.num_experts, small.num_layers, small.num_experts) == (36, 128, 24, 32)
    # 117B / 21B total parameters (the model card's rounding)
    assert round(count_params(big) / 1e9) == 117
    assert round(count_params(small) / 1e9) == 21
    assert PRESETS["gpt-oss-safeguard-20b"].replace(name="x") == small.replace(name="x")
    assert hash(big) != hash(small)


@pytest.mark.parametrize("name", ["gpt-oss-120b", "gpt-oss-20b", "tiny", "tiny-4l"])
def test_both_json_forms_round_trip(name):
    cfg = PRESETS[name]
    assert ModelConfig.from_json(cfg.to_original_json(), name=cfg.name) == cfg
    assert ModelConfig.from_json(json.loads(json.dumps(cfg.to_hf_json())), name=cfg.name) == cfg


def test_hf_rope_parameters_form_is_read():
    d = PRESETS["gpt-oss-20b"].to_hf_json()
    d["rope_parameters"] = dict(d.pop("rope_scaling"), rope_theta=d.pop("rope_theta"))
    assert ModelConfig.from_json(d, name="gpt-oss-20b") == PRESETS["gpt-oss-20b"]


def test_release_hf_config_fields():
    """The field values of the released gpt-oss-20b config.json give the 20b preset."""
    released = {
        "architectures": ["GptOssForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
        "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
        "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
        "layer_types": ["sliding_attention", "full_attention"] * 12, "max_position_embeddings": 131072,
        "model_type": "gpt_oss", "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
        "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": False, "pad_token_id": 199999,
        "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                           "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                         "rope_type": "yarn", "truncate": False},
        "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
        "tie_word_embeddings": False, "transformers_version": "4.55.0.dev0", "use_cache": True, "vocab_size": 201088}
    assert ModelConfig.from_json(released, name="gpt-oss-20b") == PRESETS["gpt-oss-20b"]
    assert PRESETS["gpt-oss-20b"].max_context == 131072


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(num_hidden_layers=3), "even"),
    (lambda d: d.update(hidden_size=100), "multiple of 32"),
    (lambda d: d.update(num_attention_heads=6, num_key_value_heads=4), "multiple of num_key_value|num_kv_heads"),
    (lambda d: d.pop("num_experts"), "lacks"),
    (lambda d: d.update(head_dim=4), "YaRN band"),
])
def test_bad_original_configs_are_named(mutate, match):
    d = PRESETS["tiny"].to_original_json()
    mutate(d)
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_json(d)


def test_bad_hf_configs_are_named():
    d = PRESETS["tiny"].to_hf_json()
    d["layer_types"] = ["full_attention", "sliding_attention"]
    with pytest.raises(ConfigError, match="layer_types"):
        ModelConfig.from_json(d)
    d = PRESETS["tiny"].to_hf_json()
    d["rope_scaling"]["truncate"] = True
    with pytest.raises(ConfigError, match="truncate"):
        ModelConfig.from_json(d)
    with pytest.raises(ConfigError, match="model_type"):
        ModelConfig.from_json(dict(PRESETS["tiny"].to_hf_json(), model_type="llama"))


@pytest.mark.parametrize("form,field,value,match", [
    ("hf", "rope_theta", "abc", "rope_theta='abc': expected a number"),
    ("hf", "swiglu_limit", None, "swiglu_limit=None: expected a number"),
    ("hf", "rope_scaling", "yarn", "rope_scaling='yarn': expected an object"),
    ("hf", "num_hidden_layers", None, "num_hidden_layers=None: expected a positive integer"),
    ("hf", "layer_types", ["sliding_attention", "full_attention"] * 2, "lists 4 layers but num_hidden_layers is 2"),
    ("original", "rope_ntk_beta", [32], "rope_ntk_beta=[32]: expected a number"),
])
def test_fields_of_the_wrong_type_or_length_are_named(form, field, value, match):
    d = PRESETS["tiny"].to_hf_json() if form == "hf" else PRESETS["tiny"].to_original_json()
    d[field] = value
    with pytest.raises(ConfigError, match=re.escape(match)):
        ModelConfig.from_json(d)


def test_get_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown model config"):
        get_config("gpt-oss-7b")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        get_config(str(tmp_path))
