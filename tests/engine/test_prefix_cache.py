"""Prompt caching: a request that shares a head with an earlier one reuses its KV entries, reports them as cached
tokens, and gets exactly the tokens it gets without the cache (tiny model: window 8, so heads run past the ring)."""
import numpy as np

from gptoss_jax.engine import Request, SamplingParams
from gptoss_jax.engine.prefix_cache import PrefixCacheConfig
from tests.engine.conftest import prompt

END = 7  # the boundary token of these tests (harmony's <|end|> in a server)


def _head(n: int, seed: int = 50) -> list[int]:
    ids = [t if t != END else END + 1 for t in prompt(seed, n - 1)]
    return ids + [END]


def _greedy(**kw):
    return SamplingParams(**{"temperature": 0.0, "max_tokens": 8, "logprobs": True, **kw})


def _cached_engine(make_engine, **kw):
    return make_engine(prefix_cache=PrefixCacheConfig(**{"entries": 8, "boundary_token_ids": (END,),
                                                         "min_tokens": 4, **kw}))


def test_a_shared_head_is_reused_and_changes_no_token(make_engine):
    head = _head(21)                                     # ends at a boundary; longer than the 8-token ring
    a = head + prompt(51, 5)
    b = head + prompt(52, 9)
    c = head + prompt(53, 3)
    plain = make_engine()
    want = {i: plain.generate([Request(p, _greedy(repetition_penalty=1.3))])[0] for i, p in enumerate((a, b, c))}
    engine = _cached_engine(make_engine)
    [ra] = engine.generate([Request(a, _greedy(repetition_penalty=1.3))])
    assert ra.cached_tokens == 0
    [rb] = engine.generate([Request(b, _greedy(repetition_penalty=1.3))])   # copied into an empty slot
    assert rb.cached_tokens == len(head)
    # c arrives while another slot is busy: the head is copied again (or used in place) from a slot holding it
    busy = engine.submit(Request(prompt(60, 30), _greedy(max_tokens=20)))
    engine.step()
    [rc] = engine.generate([Request(c, _greedy(repetition_penalty=1.3))])
    assert rc.cached_tokens == len(head)
    for i, r in enumerate((ra, rb, rc)):
        assert r.token_ids == want[i].token_ids, i
        np.testing.assert_allclose(r.logprobs, want[i].logprobs, rtol=1e-5, atol=1e-5)
    while engine.has_work():
        engine.step()
    assert engine.result(busy).finish_reason == "length"
    assert engine.prefix.hits == 2 and engine.prefix.cached_tokens == 2 * len(head)


def test_heads_without_a_boundary_are_cached_at_whole_chunks_and_a_repeat_leaves_one_token(make_engine):
    p = prompt(70, 37)                                   # chunk 16: snapshots at 16 and 32
    p = [t if t != END else END + 1 for t in p]
    engine = _cached_engine(make_engine)
    plain = make_engine()
    [want] = plain.generate([Request(p, _greedy())])
    [first] = engine.generate([Request(p, _greedy())])
    [again] = engine.generate([Request(p, _greedy())])
    [longer] = engine.generate([Request(p + [3, 4], _greedy())])
    assert (first.cached_tokens, again.cached_tokens, longer.cached_tokens) == (0, 32, 32)
    assert first.token_ids == again.token_ids == want.token_ids
    [want_longer] = plain.generate([Request(p + [3, 4], _greedy())])
    assert longer.token_ids == want_longer.token_ids


def test_a_head_whose_slot_was_overwritten_is_not_reused(make_engine):
    engine = _cached_engine(make_engine, entries=2)
    head = _head(12, seed=80)
    engine.generate([Request(head + prompt(81, 4), _greedy())])
    # fill every slot with other prompts: the head's row is overwritten, its snapshot can no longer be used
    engine.generate([Request(prompt(90 + i, 20), _greedy()) for i in range(4)])
    [r] = engine.generate([Request(head + prompt(82, 4), _greedy())])
    assert r.cached_tokens == 0
    [want] = make_engine().generate([Request(head + prompt(82, 4), _greedy())])
    assert r.token_ids == want.token_ids


def test_scoring_requests_prefill_their_whole_prompt(make_engine):
    engine = _cached_engine(make_engine)
    head = _head(20, seed=85)
    engine.generate([Request(head + [1, 2], _greedy())])
    [r] = engine.generate([Request(head + [3, 4, 5], SamplingParams(max_tokens=0), score_from=1)])
    assert r.cached_tokens == 0 and len(r.prompt_logprobs) == len(head) + 2


def test_snapshots_are_evicted_least_recently_used(make_engine):
    engine = _cached_engine(make_engine, entries=2)
    heads = [_head(10, seed=120 + i) for i in range(3)]       # one boundary snapshot each (chunk 16 > 10)
    for h in heads:
        engine.generate([Request(h + [1, 2], _greedy())])
    assert len(engine.prefix.snaps) == 2 and engine.prefix.snapshots_taken == 3
    [newest] = engine.generate([Request(heads[2] + [3], _greedy())])
    [oldest] = engine.generate([Request(heads[0] + [3], _greedy())])
    assert newest.cached_tokens == 10 and oldest.cached_tokens == 0
    plain = make_engine()
    for r, h in ((newest, heads[2]), (oldest, heads[0])):
        assert r.token_ids == plain.generate([Request(h + [3], _greedy())])[0].token_ids
