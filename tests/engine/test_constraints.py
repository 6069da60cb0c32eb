"""Structured outputs: a constraint's packed bitmask is applied per slot inside the jitted sampler; masks are
computed on a host thread while the device runs; unconstrained slots are unaffected."""
import threading

import numpy as np

from gptoss_jax.engine import Request, SamplingParams
from tests.engine.conftest import CFG, prompt

V = CFG.vocab_size


def _set(words, ids):
    for t in ids:
        words[t // 32] |= np.int32(np.uint32(1 << (t % 32)).view(np.int32))


class Forced:
    """A grammar that accepts exactly one token sequence, then is finished."""

    def __init__(self, seq):
        self.seq, self.pos, self.threads = list(seq), 0, set()

    def fill_bitmask(self, out):
        self.threads.add(threading.current_thread().name)
        out[:] = 0
        _set(out, [self.seq[self.pos]])

    def advance(self, token_id):
        assert token_id == self.seq[self.pos], "sampled a token the mask forbids"
        self.pos += 1

    def is_finished(self):
        return self.pos == len(self.seq)


class Parity:
    """Even token ids at even steps, odd at odd steps; never finishes."""

    def __init__(self):
        self.step = 0

    def fill_bitmask(self, out):
        out[:] = 0
        _set(out, range(self.step % 2, V, 2))

    def advance(self, token_id):
        assert token_id % 2 == self.step % 2
        self.step += 1

    def is_finished(self):
        return False


class Nothing(Parity):
    def fill_bitmask(self, out):
        out[:] = 0


def test_constraints_are_obeyed_next_to_unconstrained_slots(engine):
    free = Request(prompt(80, 7), SamplingParams(temperature=0.0, max_tokens=10))
    [alone] = engine.generate([free])
    forced = Forced([3, 141, 59, 265, 358])
    out = engine.generate([
        Request(prompt(81, 12), SamplingParams(temperature=1.0, seed=1, max_tokens=20), constraint=forced),
        Request(prompt(82, 5), SamplingParams(temperature=1.0, seed=2, max_tokens=11), constraint=Parity()),
        free,
        Request(prompt(83, 4), SamplingParams(temperature=0.0, max_tokens=5), constraint=Nothing()),
    ])
    assert out[0].token_ids == forced.seq and out[0].finish_reason == "stop" and out[0].stop_reason == "constraint"
    assert [t % 2 for t in out[1].token_ids] == [i % 2 for i in range(11)] and out[1].finish_reason == "length"
    assert out[2].token_ids == alone.token_ids                  # the unconstrained slot is unaffected
    assert out[3].finish_reason == "error" and "no token is allowed" in out[3].error
    # masks after the first were computed off the main thread
    assert any(name.startswith("gptoss-mask") for name in forced.threads)


def test_greedy_under_an_all_ones_constraint_equals_unconstrained(engine):
    class Everything(Parity):
        def fill_bitmask(self, out):
            out[:] = -1

        def advance(self, token_id):
            pass

    p = prompt(84, 10)
    [a] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=9))])
    [b] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=9), constraint=Everything())])
    assert a.token_ids == b.token_ids
