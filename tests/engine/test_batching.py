"""Continuous batching: requests joining and leaving at different times get exactly the tokens they get alone."""
from gptoss_jax.engine import Request, SamplingParams
from tests.engine.conftest import prompt


def _requests():
    return [
        Request(prompt(20, 3), SamplingParams(temperature=0.0, max_tokens=10, logprobs=True)),
        Request(prompt(21, 20), SamplingParams(temperature=1.0, top_p=0.9, seed=5, max_tokens=12)),
        Request(prompt(22, 9), SamplingParams(temperature=0.7, top_k=20, min_p=0.05, seed=11, max_tokens=15)),
        Request(prompt(23, 30), SamplingParams(temperature=0.0, presence_penalty=1.0, max_tokens=8)),
        Request(prompt(24, 14), SamplingParams(temperature=1.2, frequency_penalty=0.5, seed=3, max_tokens=18,
                                               logit_bias={5: 3.0})),
        Request(prompt(25, 41), SamplingParams(temperature=0.9, repetition_penalty=1.3, seed=8, max_tokens=6)),
    ]


def test_batched_requests_get_the_tokens_they_get_alone(make_engine):
    alone = []
    solo = make_engine()
    for r in _requests():
        [res] = solo.generate([r])
        alone.append(res)

    engine = make_engine()                 # 4 slots for 6 requests: some wait for a free slot
    reqs = _requests()
    schedule = {0: [0, 1], 2: [2], 3: [3, 4], 6: [5]}    # step -> requests submitted before it
    ids, streamed, step = {}, {}, 0
    while step <= max(schedule) or engine.has_work():
        for i in schedule.get(step, []):
            ids[i] = engine.submit(reqs[i], on_token=lambda ev: streamed.setdefault(ev.request_id, []).append(ev))
        engine.step()
        step += 1
    for i, want in enumerate(alone):
        got = engine.result(ids[i])
        assert got.token_ids == want.token_ids, i
        assert got.finish_reason == want.finish_reason == "length"
        assert got.prompt_tokens == len(reqs[i].prompt) and got.completion_tokens == len(want.token_ids)
        events = streamed[ids[i]]
        assert [e.token_id for e in events] == got.token_ids and [e.index for e in events] == list(range(len(events)))
        assert events[-1].finish_reason == "length" and all(e.finish_reason is None for e in events[:-1])
        if reqs[i].sampling.logprobs:
            assert got.logprobs == want.logprobs
        assert {"queued_s", "ttft_s", "prefill_s", "decode_s", "total_s"} <= set(got.timings)
    # a request that joined late started decoding while others were mid-generation, yet matched
    assert engine.stats.decode_calls < sum(len(a.token_ids) for a in alone)   # several tokens per round trip


def test_stream_iterator_yields_tokens_as_they_come(engine):
    r = Request(prompt(30, 6), SamplingParams(temperature=0.0, max_tokens=9))
    events = list(engine.stream(r))
    [ref] = engine.generate([Request(prompt(30, 6), SamplingParams(temperature=0.0, max_tokens=9))])
    assert [e.token_id for e in events] == ref.token_ids and events[-1].finish_reason == "length"


def test_closing_a_stream_early_cancels_its_request(engine):
    it = engine.stream(Request(prompt(31, 6), SamplingParams(temperature=0.0, max_tokens=40)))
    first = next(it)
    it.close()
    engine.step()
    r = engine.result(first.request_id)
    assert r.finish_reason == "cancelled" and 1 <= r.completion_tokens < 40 and not engine.has_work()
