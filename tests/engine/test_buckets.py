"""Compilations stay bounded by the buckets, whatever the prompt lengths."""
import pytest

from gptoss_jax.engine import COUNTER, Buckets, Request, SamplingParams
from tests.engine.conftest import prompt


def test_bucket_math():
    b = Buckets(max_len=131072, chunk=512, min_chunk=32, num_slots=8, data_parallel=2)
    assert b.chunk_sizes == (32, 64, 128, 256, 512)
    assert b.kv_sizes == (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
    assert [b.chunk_for(n) for n in (1, 32, 33, 500, 512)] == [32, 32, 64, 512, 512]
    assert [b.kv_for(n) for n in (1, 512, 513, 100_000, 131072)] == [512, 512, 1024, 131072, 131072]
    assert [b.rows_for(t) for t in (32, 256, 512)] == [8, 2, 2]      # <= slots, multiple of data parallelism
    assert Buckets(max_len=100, chunk=48, min_chunk=16, num_slots=4).kv_sizes == (48, 96, 100)
    with pytest.raises(ValueError, match="min_chunk"):
        Buckets(max_len=64, chunk=128, min_chunk=8, num_slots=1)


def test_many_prompt_lengths_compile_at_most_once_per_bucket(engine):
    b = engine.buckets
    lengths = list(range(1, 61, 3)) + [16, 32, 48, 64]
    before = COUNTER.by_function()
    room = lambda n: engine.max_len + 1 - n            # a limit past the context is refused (test_bad_input)
    results = engine.generate([Request(prompt(100 + n, n), SamplingParams(temperature=0.0, max_tokens=min(3, room(n))))
                               for n in lengths])
    assert all(r.finish_reason == "length" and r.completion_tokens == min(3, room(r.prompt_tokens)) for r in results)
    new = {k: v - before.get(k, 0) for k, v in COUNTER.by_function().items()}
    held = engine.compilations()
    bound = b.max_compilations
    assert len(set(lengths)) > 3 * bound["prefill"] // 2
    print("compiled during the run:", new, "held:", held, "bound:", bound)
    # what XLA compiled during this run, and every variant these steps hold (tests share them; scoring doubles
    # the prefill variants)
    assert new.get("jit(_prefill)", 0) <= bound["prefill"] and held["prefill"] <= 2 * bound["prefill"]
    # (held: every variant of the session's tests; sampler plans and masked rounds each compile their own)
    assert new.get("jit(_decode_loop)", 0) <= bound["decode"]
    assert held["admit"] <= 2
    # and joining / leaving requests compiled nothing else: only the engine's own steps were compiled
    assert set(k for k, v in new.items() if v) <= {"jit(_prefill)", "jit(_decode_loop)", "jit(_admit)"}
