"""What the engine's device memory holds beyond the weights, per model: the KV cache and the slot state.

KV cache (bf16; KVCache.bytes_per_token / KVCache.nbytes compute these from the config):
  model         full layers  per token of context        sliding rings (fixed, per slot)   one 131072-token slot
  gpt-oss-120b  18           2*18*8*64*2 = 36,864 B      2*18*128*8*64*2 = 4.72 MB          4.84 GB (4.50 GiB)
  gpt-oss-20b   12           2*12*8*64*2 = 24,576 B      2*12*128*8*64*2 = 3.15 MB          3.22 GB (3.00 GiB)
Only the full-attention layers grow with the context; the sliding-window layers keep 128-slot rings.
Slot state (SlotState): 9 bytes a vocabulary entry (penalty counts, prompt flags, logit bias): 1.81 MB a slot for
the 201088-token vocabulary.

The cache is one contiguous [layer pairs, slots, max_len, kv heads, head dim] array per kind, not paged. A paged
layout would let slots of very different lengths share one pool, but XLA has no paged attention: reading a page table
is a gather per step, which only a dedicated kernel makes fast; with kv_len buckets (buckets.py) the contiguous
layout already reads only the positions a step needs, so paging would buy capacity, not bandwidth. Size
num_slots * max_len to the memory left after the weights (`max_slots`).
"""
from __future__ import annotations

import jax.numpy as jnp

from gptoss_jax.config import ModelConfig
from gptoss_jax.engine.slots import SlotState
from gptoss_jax.model.transformer import KVCache

# The figures documented above (bytes), checked against KVCache by tests/engine/test_memory.py.
DOCUMENTED = {
    "gpt-oss-120b": {"bytes_per_token": 36_864, "ring_bytes": 4_718_592, "slot_131072": 4_836_556_800},
    "gpt-oss-20b": {"bytes_per_token": 24_576, "ring_bytes": 3_145_728, "slot_131072": 3_224_371_200},
}


def ring_bytes(cfg: ModelConfig, dtype=jnp.bfloat16) -> int:
    """The sliding layers' rings of one slot (a fixed cost, whatever the context)."""
    return KVCache.nbytes(cfg, 1, 0, dtype)


def engine_bytes(cfg: ModelConfig, num_slots: int, max_len: int, dtype=jnp.bfloat16, max_stop: int = 8) -> dict:
    """Device bytes an Engine allocates besides the weights: {'kv_cache', 'slot_state', 'total'}."""
    kv = KVCache.nbytes(cfg, num_slots, max_len, dtype)
    st = num_slots * SlotState.nbytes_per_slot(cfg.vocab_size, max_stop)
    return {"kv_cache": kv, "slot_state": st, "total": kv + st}


def max_slots(cfg: ModelConfig, max_len: int, free_bytes: int, dtype=jnp.bfloat16, data_parallel: int = 1) -> int:
    """How many slots of max_len tokens fit in free_bytes (a multiple of data_parallel; 0 if none)."""
    per = engine_bytes(cfg, 1, max_len, dtype)["total"]
    n = free_bytes // per
    return int(n - n % data_parallel)
