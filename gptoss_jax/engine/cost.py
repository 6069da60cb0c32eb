"""What one step of the model must move and compute: the numerator of a roofline.

Bytes a decode step: the weights actually read (attention and router of every layer; the routed experts only,
counted as the expected number of distinct experts hit by the batch's tokens under uniform routing, which random
weights approximate; embedding rows; the whole unembedding), the valid part of the KV cache (full layers: the
context; sliding layers: the window), the new keys/values written and the float32 logits written. Activations are
not counted. Prefill is compute-bound; its roofline is the flops term. `gptoss bench` and benchmarks/gpu_suite.py
divide these by the measured time.
"""
from __future__ import annotations

import dataclasses

from gptoss_jax import params as params_lib
from gptoss_jax.config import ModelConfig
from gptoss_jax.engine.memory import ring_bytes
from gptoss_jax.model.transformer import KVCache


def distinct_experts(num_experts: int, per_token: int, tokens: int) -> float:
    """Expected experts hit by `tokens` tokens that each pick `per_token` distinct experts uniformly."""
    return num_experts * (1.0 - (1.0 - per_token / num_experts) ** tokens)


@dataclasses.dataclass(frozen=True)
class LayerBytes:
    attention: int      # norm, q/k/v/o weights and biases, sinks
    router: int         # MoE norm, gate weight and bias
    expert: int         # ONE expert: both MXFP4 matrices (blocks + scales) and both bias rows
    embed_row: int
    unembed: int


def layer_bytes(cfg: ModelConfig) -> LayerBytes:
    block = params_lib.block_specs(cfg)
    attn = sum(s.nbytes for s in block["attn"].values())
    mlp = {k: v for k, v in block["mlp"].items()}
    router = sum(mlp[k].nbytes for k in ("norm", "gate_w", "gate_b"))
    experts = sum(s.nbytes for k in ("mlp1_w", "mlp2_w") for s in (mlp[k].blocks, mlp[k].scales))
    experts += mlp["mlp1_b"].nbytes + mlp["mlp2_b"].nbytes
    item = 2  # embed/unembed are bf16
    return LayerBytes(attn, router, experts // cfg.num_experts, cfg.hidden_size * item,
                      cfg.vocab_size * cfg.hidden_size * item)


def active_matmul_params(cfg) -> int:
    """Weights one token multiplies by in one layer: attention projections, router, its experts."""
    h, d = cfg.hidden_size, cfg.head_dim
    attn = h * d * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
    experts = cfg.experts_per_token * 3 * h * cfg.intermediate_size
    return attn + cfg.num_experts * h + experts


def decode_cost(cfg, batch: int, context: int, kv_itemsize: int) -> dict:
    """Bytes and flops of one decode step at `context` tokens already cached."""
    lb = layer_bytes(cfg)
    layers, pairs = cfg.num_layers, cfg.num_pairs
    hit = distinct_experts(cfg.num_experts, cfg.experts_per_token, batch)
    kv_token_layer = 2 * cfg.num_kv_heads * cfg.head_dim * kv_itemsize          # k and v of one token, one layer
    window = min(context + 1, cfg.sliding_window)
    kv_read = batch * kv_token_layer * pairs * ((context + 1) + window)
    kv_write = batch * kv_token_layer * layers
    weights = layers * (lb.attention + lb.router + hit * lb.expert) + batch * lb.embed_row + lb.unembed
    logits = batch * cfg.vocab_size * 4
    attn_flops = 4 * cfg.num_heads * cfg.head_dim * pairs * ((context + 1) + window)
    flops = batch * (2 * layers * active_matmul_params(cfg) + attn_flops + 2 * cfg.vocab_size * cfg.hidden_size)
    return {"bytes": int(weights + kv_read + kv_write + logits), "weight_bytes": int(weights),
            "kv_bytes": int(kv_read + kv_write), "logit_bytes": int(logits), "flops": int(flops),
            "experts_hit_per_layer": round(hit, 2)}


def prefill_cost(cfg, rows: int, context: int, kv_itemsize: int) -> dict:
    """Bytes and flops of prefilling `rows` prompts of `context` tokens (logits of the last token only)."""
    lb = layer_bytes(cfg)
    layers, pairs = cfg.num_layers, cfg.num_pairs
    tokens = rows * context
    hit = distinct_experts(cfg.num_experts, cfg.experts_per_token, tokens)
    kv_write = tokens * 2 * cfg.num_kv_heads * cfg.head_dim * kv_itemsize * layers
    weights = layers * (lb.attention + lb.router + hit * lb.expert) + tokens * lb.embed_row + lb.unembed
    # causal attention: full layers see (t+1) keys at position t, sliding layers min(t+1, W)
    full_keys = context * (context + 1) / 2
    w = cfg.sliding_window
    slide_keys = sum(min(t + 1, w) for t in range(min(context, w))) + max(0, context - w) * w
    attn_flops = rows * 4 * cfg.num_heads * cfg.head_dim * pairs * (full_keys + slide_keys)
    flops = tokens * 2 * layers * active_matmul_params(cfg) + attn_flops + rows * 2 * cfg.vocab_size * cfg.hidden_size
    return {"bytes": int(weights + kv_write + rows * cfg.vocab_size * 4), "weight_bytes": int(weights),
            "kv_bytes": int(kv_write), "flops": int(flops), "experts_hit_per_layer": round(hit, 2)}


def memory_plan(cfg: ModelConfig, dtype) -> dict:
    """Device bytes of the weights (packed experts apart) and of the KV cache, per token and per row."""
    specs = params_lib.flat_specs(cfg)
    total = sum(s.nbytes for s in specs.values())
    packed = sum(s.nbytes for p, s in specs.items() if p.endswith(("/blocks", "/scales")))
    return {"weights_bytes": total, "packed_expert_bytes": packed, "other_weight_bytes": total - packed,
            "kv_bytes_per_token": KVCache.bytes_per_token(cfg, dtype), "ring_bytes_per_row": ring_bytes(cfg, dtype)}
