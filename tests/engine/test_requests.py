"""Bad input gets one clear error naming the field; one failing request never stops the others."""
import numpy as np
import pytest

from gptoss_jax.api import InputError
from gptoss_jax.engine import Request, RequestError, SamplingParams, score
from tests.engine.conftest import CFG, MAX_LEN, prompt

V = CFG.vocab_size
BAD = [
    (Request([]), "prompt", "empty"),
    (Request(list(range(MAX_LEN + 1))), "prompt", "do not fit"),
    (Request([1, V]), "prompt", "outside the vocabulary"),
    (Request([1, -3]), "prompt", "outside the vocabulary"),
    (Request([1, 2.5]), "prompt", "integer"),
    (Request("hello"), "prompt", "sequence of token ids"),
    (Request([1], SamplingParams(temperature=-0.1)), "temperature", "0 = greedy"),
    (Request([1], SamplingParams(temperature=float("nan"))), "temperature", "finite"),
    (Request([1], SamplingParams(top_p=0.0)), "top_p", "(0.0, 1.0]"),
    (Request([1], SamplingParams(top_p=1.5)), "top_p", "(0.0, 1.0]"),
    (Request([1], SamplingParams(top_k=-1)), "top_k", "0 = off"),
    (Request([1], SamplingParams(top_k=2.0)), "top_k", "integer"),
    (Request([1], SamplingParams(min_p=1.2)), "min_p", "[0.0, 1.0]"),
    (Request([1], SamplingParams(presence_penalty=3)), "presence_penalty", "[-2.0, 2.0]"),
    (Request([1], SamplingParams(frequency_penalty=-2.5)), "frequency_penalty", "[-2.0, 2.0]"),
    (Request([1], SamplingParams(repetition_penalty=0)), "repetition_penalty", "1 = off"),
    (Request([1], SamplingParams(logit_bias={"abc": 1})), "logit_bias", "not a token id"),
    (Request([1], SamplingParams(logit_bias={V: 1})), "logit_bias", "outside the vocabulary"),
    (Request([1], SamplingParams(logit_bias={3: 101})), "logit_bias[3]", "[-100.0, 100.0]"),
    (Request([1], SamplingParams(logit_bias=[(3, 1)])), "logit_bias", "dict"),
    (Request([1], SamplingParams(seed=-1)), "seed", "integer in [0"),
    (Request([1], SamplingParams(stop_token_ids=[V + 5])), "stop_token_ids", "outside the vocabulary"),
    (Request([1], SamplingParams(stop_token_ids=list(range(9)))), "stop_token_ids", "at most 8"),
    (Request([1], SamplingParams(stop=["x"])), "stop", "detokenizer"),
    (Request([1], SamplingParams(max_tokens=-1)), "max_tokens", "integer in [0"),
    (Request([1], SamplingParams(max_tokens=0)), "max_tokens", "generates nothing"),
    (Request([1] * 10, SamplingParams(max_tokens=MAX_LEN)), "max_tokens", "do not fit"),   # an error, not a cap
    (Request([1], SamplingParams(logprobs="yes")), "logprobs", "True or False"),
    (Request([1], SamplingParams(top_logprobs=V + 1)), "top_logprobs", "max_top_logprobs"),
    (Request([1, 2], score_from=3), "score_from", "index into the prompt"),
    (Request([1], constraint=object()), "constraint", "fill_bitmask"),
]


@pytest.mark.parametrize("req,field,words", BAD, ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD)])
def test_bad_requests_raise_one_error_naming_the_field(engine, req, field, words):
    with pytest.raises(RequestError) as e:
        engine.submit(req)
    assert e.value.field == field and words in str(e.value) and str(e.value).startswith(field)
    assert isinstance(e.value, InputError) and not engine.has_work()


def test_engine_sizes_are_checked(tiny_model):
    from gptoss_jax.engine import Engine
    with pytest.raises(ValueError, match="max_len"):
        Engine(tiny_model, max_len=CFG.max_context + 1)
    with pytest.raises(ValueError, match="num_slots"):
        Engine(tiny_model, num_slots=0)


def test_a_bad_request_in_a_batch_fails_alone(engine):
    good = Request(prompt(40, 5), SamplingParams(temperature=0.0, max_tokens=4))
    [ref] = engine.generate([good])
    out = engine.generate([Request([1], SamplingParams(top_p=2.0)), good, Request([])])
    assert [r.finish_reason for r in out] == ["error", "length", "error"]
    assert "top_p" in out[0].error and "prompt" in out[2].error
    assert out[1].token_ids == ref.token_ids


class _Exploding:
    """A constraint that allows everything and raises on its n-th token."""

    def __init__(self, n):
        self.n = n

    def fill_bitmask(self, out):
        out[:] = -1

    def advance(self, token_id):
        self.n -= 1
        if self.n == 0:
            raise RuntimeError("grammar exploded")

    def is_finished(self):
        return False


def test_a_failure_inside_a_step_finishes_only_its_request(engine):
    reqs = [Request(prompt(41 + i, 4 + 3 * i), SamplingParams(temperature=0.0, max_tokens=8)) for i in range(3)]
    alone = [engine.generate([r])[0].token_ids for r in reqs]
    failing = Request(prompt(50, 6), SamplingParams(temperature=0.0, max_tokens=8), constraint=_Exploding(3))

    def bad_callback(ev):
        if ev.index == 2:
            raise ValueError("consumer went away")

    ids = [engine.submit(r) for r in reqs[:2]]
    ids.append(engine.submit(reqs[2], on_token=bad_callback))
    bad = engine.submit(failing)
    while engine.has_work():
        engine.step()
    r_bad = engine.result(bad)
    assert r_bad.finish_reason == "error" and "grammar exploded" in r_bad.error and len(r_bad.token_ids) == 3
    r_cb = engine.result(ids[2])
    assert r_cb.finish_reason == "error" and "consumer went away" in r_cb.error
    assert r_cb.token_ids == alone[2][:3]
    for rid, want in zip(ids[:2], alone[:2]):
        r = engine.result(rid)
        assert r.finish_reason == "length" and r.token_ids == want


def test_cancel_waiting_and_running_requests(engine):
    ids = [engine.submit(Request(prompt(60 + i, 5), SamplingParams(temperature=0.0, max_tokens=30)))
           for i in range(engine.num_slots + 1)]                     # the last one waits for a slot
    running, waiting = ids[0], ids[-1]
    while not any(e.request_id == running for e in engine.step()):  # (rounds are read a step after dispatch)
        pass
    engine.cancel(running)
    engine.cancel(waiting)
    events = engine.step()
    assert {e.request_id: e.finish_reason for e in events if e.finish_reason} == {running: "cancelled",
                                                                                   waiting: "cancelled"}
    assert engine.result(running).completion_tokens > 0 and engine.result(waiting).completion_tokens == 0
    while engine.has_work():
        engine.step()
    assert all(engine.result(i).finish_reason == "length" for i in ids[1:-1])


def test_score_validates_and_matches_generation_logprobs(engine):
    p, c = prompt(70, 9), prompt(71, 5)
    [s] = score(engine, [p], [c])
    [r] = engine.generate([Request(p + c, SamplingParams(temperature=0.0, max_tokens=1), score_from=len(p))])
    assert s.num_tokens == 5 and s.error is None
    np.testing.assert_allclose(s.token_logprobs, r.prompt_logprobs, atol=1e-6)
    assert abs(s.logprob - sum(r.prompt_logprobs)) < 1e-5
    with pytest.raises(RequestError, match="continuation"):
        score(engine, [p], [[]])
    with pytest.raises(RequestError, match="item 1 continuation: token id 512"):   # names the pair and the part
        score(engine, [p, p], [c, [V]])


def test_a_failing_device_call_fails_its_requests_and_the_engine_goes_on(engine, monkeypatch):
    import jax

    p = prompt(72, 6)
    [ref] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=6))])
    real = engine.steps.decode_loop

    def broken(params, cache, state, *a, **kw):
        jax.tree.map(lambda x: x.delete(), cache)          # as if the donated buffers were consumed
        raise RuntimeError("device fell over")

    waiting = Request(prompt(73, 5), SamplingParams(temperature=0.0, max_tokens=4))
    first = engine.submit(Request(p, SamplingParams(temperature=0.0, max_tokens=6)))
    monkeypatch.setattr(engine.steps, "decode_loop", broken)
    engine.step()                                          # prefill works, the decode call fails
    monkeypatch.setattr(engine.steps, "decode_loop", real)
    r = engine.result(first)
    assert r.finish_reason == "error" and "device fell over" in r.error
    assert not engine.has_work() and not any(a.is_deleted() for a in jax.tree.leaves(engine.cache))
    [again, other] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=6)), waiting])
    assert again.token_ids == ref.token_ids and other.finish_reason == "length"
