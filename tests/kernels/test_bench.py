"""`gptoss bench`: its byte accounting against an independent count, and one tiny end-to-end run on CPU (both
paths, JSON written, an oversized case refused before anything is allocated)."""
import json
import os
import subprocess
import sys

import pytest

from gptoss_jax.cli import bench
from gptoss_jax.config import PRESETS


def test_decode_bytes_of_120b_batch1():
    cfg = PRESETS["gpt-oss-120b"]
    h, i, e, v, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.vocab_size, cfg.num_layers
    nq, nkv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    attention = 2 * (nq * d * h * 2 + 2 * nkv * d * h + nq * d + 2 * nkv * d + h + nq) + 4 * h   # bf16 + f32 norm
    router = 2 * (e * h + e) + 4 * h
    one_expert = (2 * i * h + h * i) // 2 + (2 * i * h + h * i) // 32 + 2 * (2 * i + h)      # MXFP4 + bf16 biases
    want = layers * (attention + router + 4 * one_expert) + 2 * h + 2 * v * h
    cost = bench.decode_cost(cfg, batch=1, context=1024, kv_itemsize=2)
    assert cost["weight_bytes"] == want
    assert 4.9e9 < cost["bytes"] < 5.1e9            # ~5.0 GB a token: about 630 tokens/s at 3.16 TB/s
    assert cost["experts_hit_per_layer"] == pytest.approx(4.0)
    kv = 2 * nkv * d * 2 * (cfg.num_pairs * (1025 + cfg.sliding_window) + layers)
    assert cost["kv_bytes"] == kv


def test_distinct_experts():
    assert bench.distinct_experts(128, 4, 1) == pytest.approx(4)
    assert bench.distinct_experts(32, 4, 256) == pytest.approx(32, abs=1e-6)
    assert 4 < bench.distinct_experts(128, 4, 8) < 32


def test_tiny_bench_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "bench", "--model=tiny", "--batch=1,4096", "--context=16",
           "--modes=decode", "--timed_steps=2", "--warmup=1", "--progress=false", "--memory_gb=0.004",
           f"--out={out}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    # the batch of 4096 does not fit the 4 MB budget: refused, named, and the exit status says so (1); the rest is kept
    assert r.returncode == 1 and "gptoss bench: 2 refused (tiny decode batch 4096" in r.stderr, r.stderr[-3000:]
    report = json.loads(out.read_text())
    [ok, big] = report["models"]["tiny"]["cases"]
    assert ok["batch"] == 1 and set(ok["paths"]) == {"reference", "kernel"}
    assert report["paths"]["kernel"] == {"moe": "pallas_gpu_interpret", "attention": "pallas_gpu_interpret"}
    for path in ok["paths"].values():
        assert path["tokens_per_s"] > 0 and path["steps"] == 2
    assert ok["kernel_over_reference"] > 0
    assert ok["cost"] == bench.decode_cost(PRESETS["tiny"], 1, 16, 2)
    assert all("refused" in p and "rows fit" in p["refused"] for p in big["paths"].values())
    assert "REFUSED" in r.stdout and "kernel/reference" in r.stdout
    # the engine at the largest batch that fit (1): decode rounds of 8 tokens, one transfer a round
    engine = report["models"]["tiny"]["engine"]
    assert engine["transfers_per_token_step"] == 1 / 8 and engine["tokens_per_round"] == 8
    assert "round trips a token step" in r.stdout
