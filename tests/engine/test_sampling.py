"""The sampler on crafted logits (exact sets and adjustments), and sampling controls end to end in the engine."""
import collections

import jax
import jax.numpy as jnp
import numpy as np

from gptoss_jax.engine import Request, SamplingParams
from gptoss_jax.engine import sampling
from gptoss_jax.engine.slots import SlotState
from tests.engine.conftest import prompt


def rows(n, v, **kw):
    st = SlotState.zeros(n, v, 2)
    fields = {k: np.broadcast_to(np.asarray(val, getattr(st, k).dtype), getattr(st, k).shape)
              for k, val in kw.items()}
    return SlotState(**{**{f: getattr(st, f) for f in st.__dataclass_fields__}, **fields})


_filter = jax.jit(sampling.filter_top)
_sample = jax.jit(sampling.sample, static_argnums=(3,))
_adjust = jax.jit(sampling.adjust_logits)

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def kept(top_k=0, top_p=1.0, min_p=0.0):
    x = jnp.log(jnp.asarray(PROBS, jnp.float32))[None]
    out = _filter(x, jnp.array([top_k]), jnp.array([top_p], jnp.float32), jnp.array([min_p], jnp.float32))
    return set(np.flatnonzero(np.isfinite(np.asarray(out[0]))).tolist())


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert kept(top_p=0.4) == {0}            # 0.5 alone reaches 0.4
    assert kept(top_p=0.5) == {0}            # ... and exactly 0.5
    assert kept(top_p=0.75) == {0, 1}        # 0.5 < 0.75 <= 0.8
    assert kept(top_p=0.81) == {0, 1, 2}     # 0.8 < 0.81 <= 0.95
    assert kept(top_p=0.96) == {0, 1, 2, 3}
    assert kept(top_p=1.0) == {0, 1, 2, 3}


def test_top_k_and_min_p_sets():
    assert kept(top_k=1) == {0} and kept(top_k=3) == {0, 1, 2} and kept(top_k=0) == {0, 1, 2, 3}
    assert kept(top_k=3, top_p=0.75) == {0, 1}    # top_p on what top_k kept (renormalized: 0.526, 0.842)
    assert kept(top_k=2, top_p=0.6) == {0}        # renormalized by top_k: 0.5/0.8 = 0.625 alone reaches 0.6
    assert kept(min_p=0.2) == {0, 1, 2}           # p >= 0.2 * 0.5
    assert kept(min_p=0.7) == {0}


def test_sampled_tokens_stay_in_the_top_p_set_and_follow_the_distribution():
    n, v = 2000, PROBS.size
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS, jnp.float32)), (n, v))
    r = rows(n, v, temperature=1.0, top_p=0.75, key=np.stack([np.zeros(n), np.arange(n)], 1))
    tok = np.asarray(_sample(logits, r, None, sampling.SamplerPlan())[0])
    c = collections.Counter(tok.tolist())
    assert set(c) == {0, 1}
    assert abs(c[0] / n - 0.5 / 0.8) < 0.04      # renormalized over the kept set


def test_top_k_1_equals_greedy():
    n, v = 64, 97
    logits = jax.random.normal(jax.random.key(0), (n, v)) * 3
    r = rows(n, v, temperature=1.3, top_k=1, key=np.stack([np.zeros(n), np.arange(n)], 1))
    greedy = rows(n, v, temperature=0.0)
    assert (np.asarray(_sample(logits, r, None, sampling.SamplerPlan())[0]) == np.asarray(_sample(logits, greedy, None, sampling.SamplerPlan())[0])).all()
    assert (np.asarray(_sample(logits, greedy, None, sampling.SamplerPlan())[0]) == np.asarray(logits).argmax(-1)).all()


def test_penalty_and_bias_adjustments_are_the_documented_formulas():
    v = 6
    logits = jnp.array([[2.0, -2.0, 1.0, 1.0, 0.5, 3.0]])
    counts = np.array([[2, 1, 0, 0, 0, 0]], np.int32)
    seen = np.array([[False, False, True, False, False, False]])
    bias = np.array([[0, 0, 0, 0, -100, 0]], np.float32)
    r = rows(1, v, frequency=0.5, presence=0.25, repetition=2.0, counts=counts, seen=seen, bias=bias)
    got = np.asarray(_adjust(logits, r))[0]
    # token 0: seen in output twice: 2/2 (repetition) - 2*0.5 - 0.25; token 1: -2*2 - 0.5 - 0.25;
    # token 2: in the prompt only: repetition, no presence/frequency; token 4: bias
    np.testing.assert_allclose(got, [1.0 - 1.0 - 0.25, -4.0 - 0.5 - 0.25, 0.5, 1.0, 0.5 - 100, 3.0], atol=1e-6)


def test_constraint_bitmask_unpacks_low_bit_first():
    v = 70
    words = np.zeros((1, 3), np.int32)
    allowed = [0, 31, 33, 69]
    for t in allowed:
        words[0, t // 32] |= np.int32(np.uint32(1 << (t % 32)).view(np.int32))
    got = np.asarray(sampling.unpack_bitmask(jnp.asarray(words), v))[0]
    assert np.flatnonzero(got).tolist() == allowed


# ------------------------------------------------------------------------------------------------- in the engine
def _gen(engine, p, **kw):
    [res] = engine.generate([Request(p, SamplingParams(**kw))])
    assert res.finish_reason != "error", res.error
    return res.token_ids


def test_engine_top_k_1_and_greedy_agree(engine):
    p = prompt(3, 10)
    assert _gen(engine, p, temperature=0.0, max_tokens=12) == _gen(engine, p, temperature=1.5, top_k=1, seed=4,
                                                                   max_tokens=12)


def test_logit_bias_bans_and_forces_tokens(engine):
    p = prompt(4, 9)
    greedy = _gen(engine, p, temperature=0.0, max_tokens=12)
    banned = set(greedy[:4])
    out = _gen(engine, p, temperature=0.0, max_tokens=12, logit_bias={t: -100 for t in banned})
    assert not banned & set(out)
    out = _gen(engine, p, temperature=0.8, seed=1, max_tokens=12, logit_bias={str(t): -100 for t in banned})
    assert not banned & set(out)                       # string keys, as JSON carries them
    assert _gen(engine, p, temperature=1.0, seed=2, max_tokens=6, logit_bias={77: 100}) == [77] * 6


def test_penalties_move_repetition_the_right_way(engine):
    p = prompt(5, 6)
    kw = dict(temperature=0.0, max_tokens=40)
    plain = _gen(engine, p, **kw)
    fewer = _gen(engine, p, frequency_penalty=2.0, presence_penalty=2.0, **kw)
    more = _gen(engine, p, frequency_penalty=-2.0, presence_penalty=-2.0, **kw)
    rep_less = _gen(engine, p, repetition_penalty=3.0, **kw)
    distinct = lambda t: len(set(t))
    assert distinct(more) < distinct(plain) < distinct(fewer)
    assert distinct(plain) < distinct(rep_less)
    assert max(collections.Counter(fewer).values()) <= max(collections.Counter(plain).values())


def test_a_seed_reproduces_and_seeds_differ(engine):
    p = prompt(6, 7)
    kw = dict(temperature=1.0, top_p=0.95, min_p=0.01, max_tokens=16)
    a = _gen(engine, p, seed=123, **kw)
    assert a == _gen(engine, p, seed=123, **kw)
    assert a != _gen(engine, p, seed=124, **kw)
    [r1, r2] = engine.generate([Request(p, SamplingParams(**kw)), Request(p, SamplingParams(**kw))])
    assert r1.seed != r2.seed                           # unseeded requests get distinct, reported seeds
    assert _gen(engine, p, seed=r1.seed, **kw) == r1.token_ids


def test_stop_tokens_stop_strings_and_max_tokens(make_engine):
    detok = lambda ids: "".join(f"<{i}>" for i in ids)
    engine = make_engine(detokenize=detok)
    p = prompt(8, 5)
    ref = _gen(engine, p, temperature=0.0, max_tokens=20)
    stop_at = next(i for i in range(3, 20) if ref[i] not in ref[:i])
    [r] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=20,
                                                      stop_token_ids=[ref[stop_at]]))])
    assert r.token_ids == ref[:stop_at + 1] and r.finish_reason == "stop" and r.stop_reason == ref[stop_at]
    assert r.text == detok(ref[:stop_at])               # the stop token is not part of the text
    s = f"<{ref[stop_at]}><{ref[stop_at + 1]}>"
    [r] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=20, stop=[s, "never"]))])
    assert r.token_ids == ref[:stop_at + 2] and r.stop_reason == s and r.text == detok(ref[:stop_at])
    [r] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=3))])
    assert r.token_ids == ref[:3] and r.finish_reason == "length"
