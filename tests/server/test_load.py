"""Acceptance under load (correctness, not speed: this runs on a loaded 2-core machine; benchmarks/serve_load.py
measures): 200 concurrent streams each equal to the same request alone; 50 clients that leave mid-stream free their
slots; a shared 1k-token head is reused (cached tokens reported, same tokens, shorter time to first token)."""
import asyncio
import statistics
import time

import numpy as np

from tests.server.conftest import MODEL, TINY, TINY_END, metric, start


def _configs(n: int = 20) -> list[dict]:
    """Mixed prompt lengths (some with message boundaries, so repeats hit the prefix cache) and output lengths."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        ids = rng.integers(8, 512, int(rng.integers(4, 36))).tolist()
        if i % 2:
            ids[len(ids) // 2] = TINY_END
        out.append(dict(prompt=ids, max_tokens=int(rng.integers(3, 25)), seed=100 + i, temperature=1.0))
    return out


def _job(i: int) -> int:
    """Request i of the load: every config, and config 1 (a head with a boundary) every other request, so some
    requests reuse a head computed by a request still in flight."""
    return i // 2 % 20 if i % 2 == 0 else 1


async def _stream_tokens(client, cfg) -> list[int]:
    toks = []
    async for chunk in await client.completions.create(model=TINY, stream=True, **cfg):
        toks += chunk.choices[0].token_ids if chunk.choices else []
    return toks


def test_200_concurrent_streams_equal_each_request_alone(tiny_server):
    import openai
    server = tiny_server
    configs = _configs()
    client = server.client(timeout=600)
    alone = [client.completions.create(model=TINY, **c).choices[0].token_ids for c in configs]
    assert all(len(a) == c["max_tokens"] for a, c in zip(alone, configs))

    async def run():
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=600)
        jobs = [configs[_job(i)] for i in range(200)]
        got = await asyncio.gather(*[_stream_tokens(aclient, c) for c in jobs])
        await aclient.close()
        return got

    hits_before = server.engine.prefix.hits
    got = asyncio.run(run())
    for i, toks in enumerate(got):
        assert toks == alone[_job(i)], i
    assert server.engine.prefix.hits > hits_before          # repeated heads were reused under load, still equal
    assert metric(server.url, "gptoss_busy_slots") == 0 and metric(server.url, "gptoss_queue_depth") == 0


def test_50_clients_that_disconnect_leave_no_slot_busy(tiny_server):
    import openai
    server = tiny_server
    before = metric(server.url, 'gptoss_requests_total{finish_reason="cancelled"}') if _has_cancelled(server) else 0

    async def leave_early(aclient, i):
        stream = await aclient.completions.create(model=TINY, prompt=[10 + i, 20, 30], max_tokens=61, stream=True)
        async for _ in stream:       # the first chunk, then go away
            break
        await stream.close()

    async def run():
        aclient = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)
        await asyncio.gather(*[leave_early(aclient, i) for i in range(50)])
        await aclient.close()

    asyncio.run(run())
    deadline = time.monotonic() + 120
    while metric(server.url, "gptoss_busy_slots") or metric(server.url, "gptoss_queue_depth"):
        assert time.monotonic() < deadline, "slots still busy after every client left"
        time.sleep(0.2)
    assert metric(server.url, 'gptoss_requests_total{finish_reason="cancelled"}') - before == 50
    assert not server.engine.has_work() and not server.ctx.loop._tickets
    r = server.client().completions.create(model=TINY, prompt=[1, 2, 3], max_tokens=4)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4


def _has_cancelled(server) -> bool:
    try:
        metric(server.url, 'gptoss_requests_total{finish_reason="cancelled"}')
        return True
    except KeyError:
        return False


def _head(i: int) -> list[dict]:
    words = " ".join(f"rule{i}-{k} applies." for k in range(230))
    return [{"role": "developer", "content": f"You follow these rules. {words}"}]


def test_a_shared_1k_token_head_is_cached_and_answers_the_same(server, demo_model):
    client = server.client(timeout=300)

    def ask(head, question, **kw):
        t0 = time.perf_counter()
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=head + [{"role": "user", "content": question}], max_tokens=1, temperature=0,
            stream=True, stream_options={"include_usage": True}, **kw))
        return time.perf_counter() - t0, chunks[-1].usage

    ask(_head(99), "warm up the compiled steps")
    first, second = [], []
    for i in range(3):
        t1, u1 = ask(_head(i), "What is rule 3?")
        t2, u2 = ask(_head(i), "And rule 7?")
        assert u1.prompt_tokens_details.cached_tokens < 100 and u2.prompt_tokens > 1000
        assert u2.prompt_tokens_details.cached_tokens >= 1000
        first.append(t1)
        second.append(t2)
    assert statistics.median(second) < statistics.median(first), (first, second)
    assert metric(server.url, "gptoss_cached_prompt_tokens_total") >= 3000
    # the same tokens as without the cache
    kw = dict(model=MODEL, messages=_head(0) + [{"role": "user", "content": "And rule 7?"}], max_tokens=8,
              temperature=0)
    cached = client.chat.completions.create(**kw)
    assert cached.usage.prompt_tokens_details.cached_tokens >= 1000
    plain = start(demo_model, prefix_cache=False)
    try:
        fresh = plain.client().chat.completions.create(**kw)
    finally:
        plain.stop()
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0
    assert fresh.choices[0].message.content == cached.choices[0].message.content
