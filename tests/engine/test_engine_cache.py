"""Cache consistency: the engine's chunked prefill + multi-step decode see exactly what a plain forward sees."""
import numpy as np

from gptoss_jax.engine import Request, SamplingParams
from tests.engine.conftest import CFG, MAX_LEN, full_logprobs, prompt


def test_prefill_and_decode_logprobs_equal_full_forward(engine, tiny_model):
    v, w = CFG.vocab_size, CFG.sliding_window
    # inside the first window; ending mid-window past it; exactly two prefill chunks; three chunks, mid-window
    lengths = [5, 13, 32, 37]
    assert 5 < w and 13 % w and 37 % w and 37 > 2 * engine.buckets.chunk
    reqs = [Request(prompt(i, n), SamplingParams(temperature=0.0, logprobs=True, top_logprobs=v), score_from=1)
            for i, n in enumerate(lengths)]
    results = engine.generate(reqs)
    seqs = []
    for req, res in zip(reqs, results):
        # no max_tokens: generation runs until the context is full (far past the window)
        assert res.finish_reason == "length" and res.completion_tokens == MAX_LEN + 1 - len(req.prompt)
        seqs.append(list(req.prompt) + res.token_ids)
    ref = full_logprobs(tiny_model, [s[:MAX_LEN] for s in seqs])
    for req, res, seq, lp in zip(reqs, results, seqs, ref):
        n = len(req.prompt)
        # every prompt position (chunked prefill): log p(prompt[i] | prompt[:i])
        want = [lp[i - 1, seq[i]] for i in range(1, n)]
        np.testing.assert_allclose(res.prompt_logprobs, want, atol=1e-4, rtol=0)
        # every generated position: the whole next-token distribution (top_logprobs over the full vocabulary)
        for j, top in enumerate(res.top_logprobs):
            got = np.full(v, np.nan)
            got[[t for t, _ in top]] = [x for _, x in top]
            assert not np.isnan(got).any()
            np.testing.assert_allclose(got, lp[n - 1 + j], atol=1e-4, rtol=0)
            assert res.logprobs[j] == top[0][1]
        # greedy picks the argmax of the full forward at every step
        assert res.token_ids == [int(lp[n - 1 + j].argmax()) for j in range(len(res.token_ids))]


def test_greedy_equals_repeated_full_forward_argmax(engine, tiny_model):
    p = prompt(11, 13)
    [res] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=30))])
    seq = list(p)
    for _ in range(30):
        seq.append(int(full_logprobs(tiny_model, [seq])[0, len(seq) - 1].argmax()))
    assert res.token_ids == seq[len(p):]
    assert res.finish_reason == "length" and res.completion_tokens == 30
