"""KV cache memory: the documented figures are the ones KVCache computes, and 120b at 131072 tokens is ~4.8 GB."""
import jax
import jax.numpy as jnp

from gptoss_jax.config import PRESETS
from gptoss_jax.engine import memory
from gptoss_jax.model.transformer import KVCache


def test_120b_one_sequence_of_131072_tokens_is_about_4_8_gb():
    cfg = PRESETS["gpt-oss-120b"]
    shapes = KVCache.shapes(cfg, 1, 131072, jnp.bfloat16)      # shapes only: nothing is allocated
    total = sum(s.size * s.dtype.itemsize for s in jax.tree.leaves(shapes))
    assert total == KVCache.nbytes(cfg, 1, 131072)
    assert abs(total - memory.DOCUMENTED["gpt-oss-120b"]["slot_131072"]) <= 0.1 * total
    assert abs(total - 4.8e9) <= 0.1 * 4.8e9                    # the figure


def test_documented_figures_match_the_cache_for_both_models():
    for name, doc in memory.DOCUMENTED.items():
        cfg = PRESETS[name]
        assert KVCache.bytes_per_token(cfg) == doc["bytes_per_token"]
        assert memory.ring_bytes(cfg) == doc["ring_bytes"]
        assert KVCache.nbytes(cfg, 1, 131072) == doc["slot_131072"]
        # context grows only the full layers: one more token costs bytes_per_token
        assert KVCache.nbytes(cfg, 1, 1001) - KVCache.nbytes(cfg, 1, 1000) == doc["bytes_per_token"]
        assert KVCache.nbytes(cfg, 3, 4096) == 3 * KVCache.nbytes(cfg, 1, 4096)


def test_engine_allocates_what_memory_reports(engine):
    cfg = engine.cfg
    got = sum(a.nbytes for a in jax.tree.leaves(engine.cache))
    assert got == memory.engine_bytes(cfg, engine.num_slots, engine.max_len, jnp.float32)["kv_cache"]
    st = sum(a.nbytes for a in jax.tree.leaves(engine.state))
    assert st == memory.engine_bytes(cfg, engine.num_slots, engine.max_len, jnp.float32)["slot_state"]


def test_max_slots_sizes_to_free_memory():
    cfg = PRESETS["gpt-oss-120b"]
    per = memory.engine_bytes(cfg, 1, 131072)["total"]
    assert memory.max_slots(cfg, 131072, 15 * 10**9) == 15 * 10**9 // per == 3
    assert memory.max_slots(cfg, 8192, 15 * 10**9, data_parallel=2) % 2 == 0
