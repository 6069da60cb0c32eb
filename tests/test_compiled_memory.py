"""What the compiled forward holds, checked in XLA's compiled program on CPU (abstract weights, nothing allocated):
a decode step writes the KV caches in place (no copy of the stacked rings or caches, whose cost would grow with depth
squared), and a long prefill chunk holds no chunk x key-length attention buffer."""
import re

import jax
import jax.numpy as jnp

import gptoss_jax
from gptoss_jax import params as params_lib
from gptoss_jax.cli import bench_program
from gptoss_jax.config import get_config
from gptoss_jax.model.transformer import KVCache

S = jax.ShapeDtypeStruct


def heads_120b(layers: int, **kw):
    """gpt-oss-120b's attention (64 query heads, 8 KV heads of 64, window 128), small everything else."""
    return get_config("gpt-oss-120b").replace(num_layers=layers, num_experts=4, experts_per_token=2, vocab_size=512,
                                              hidden_size=128, intermediate_size=128, name="120b-heads", **kw)


def compiled_forward(cfg, batch, chunk, max_len, kv_len=None):
    model = gptoss_jax.GptOss(cfg, None)
    args = (params_lib.abstract_params(cfg), S((batch, chunk), jnp.int32), S((batch, chunk), jnp.int32),
            KVCache.shapes(cfg, batch, max_len), S((batch,), jnp.int32))
    return model._apply.lower(*args, kv_len=kv_len).compile()


def copies_of(text: str, shapes) -> list[str]:
    wanted = {f"bf16[{','.join(map(str, s))}]" for s in shapes}
    return [line.strip()[:160] for line in text.splitlines()
            if re.search(r"\bcopy(-start)?\(", line) and any(w in line.split("=")[1][:80] for w in wanted)]


def test_decode_step_updates_the_stacked_caches_in_place():
    cfg = heads_120b(8)
    cache = KVCache.shapes(cfg, 32, 512)
    text = compiled_forward(cfg, 32, 1, 512, kv_len=256).as_text()
    assert copies_of(text, [cache.sliding_k.shape, cache.full_k.shape]) == []


def test_prefill_chunk_holds_no_chunk_by_keys_buffer():
    cfg = heads_120b(2)
    chunk = 8192
    compiled = compiled_forward(cfg, 1, chunk, chunk, kv_len=chunk)
    assert bench_program.quadratic_buffers(compiled.as_text(), chunk, 1024) == []
    temp = compiled.memory_analysis().temp_size_in_bytes
    assert temp < 2e9, temp            # [64 heads, 8k, 8k] f32 scores alone would be 17 GB
