"""The engine on a (data 2, expert 2, tensor 2) mesh of 8 CPU devices gives the single-device tokens."""
import jax

import gptoss_jax
from gptoss_jax.engine import Engine, Request, SamplingParams
from tests.engine.conftest import prompt

KW = dict(num_slots=4, max_len=32, prefill_chunk=16, min_prefill_chunk=16, decode_steps=4, max_top_logprobs=2)


def _requests():
    return [Request(prompt(90, 11), SamplingParams(temperature=0.0, max_tokens=12, top_logprobs=2)),
            Request(prompt(91, 20), SamplingParams(temperature=1.0, seed=3, top_p=0.9, max_tokens=9)),
            Request(prompt(92, 3), SamplingParams(temperature=0.0, max_tokens=5, presence_penalty=1.0))]


def test_sharded_engine_matches_one_device(tiny_checkpoint, engine):
    one = engine.generate(_requests())                          # one device (the shared test engine)
    model = gptoss_jax.load(tiny_checkpoint, dtype="float32", mesh="2,2,2", show_progress=False)
    engine = Engine(model, **KW)
    assert engine.buckets.rows_for(16) == 2                       # prefill rows split over data=2
    assert engine.cache.full_k.sharding.spec[1] == "data"         # slots are spread over the data axis
    got = engine.generate(_requests())
    assert [r.token_ids for r in got] == [r.token_ids for r in one]
    for a, b in zip(got[0].top_logprobs, one[0].top_logprobs):
        assert [t for t, _ in a] == [t for t, _ in b] and max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4
    # the first call of each step compiled the program every later call uses
    held = engine.compilations()
    assert held["prefill"] <= len(engine.buckets.kv_sizes) and held["decode_loop"] <= len(engine.buckets.kv_sizes)
    assert len(jax.tree.leaves(engine.cache)[0].sharding.device_set) == 8
