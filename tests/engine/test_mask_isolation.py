"""A constraint whose mask is slow holds back its own request only: the other requests decode on (at full speed,
several tokens a call), get exactly the tokens they get alone, and the slow one resumes with the tokens it would
have had. The slow mask here waits on an event the test sets only once the others are done, so an engine that
waited for it would stall until the event's timeout (and the test fails), never hang."""
import threading

import pytest

from gptoss_jax.engine import Request, SamplingParams
from tests.engine.conftest import prompt
from tests.engine.test_constraints import Forced, Parity

GATE_TIMEOUT_S = 30.0


class Gated(Forced):
    """Forced tokens; the mask for token `at` waits for `gate` (records whether it had to time out)."""

    def __init__(self, seq, at, gate):
        super().__init__(seq)
        self.at, self.gate, self.timed_out = at, gate, False

    def fill_bitmask(self, out):
        if self.pos == self.at and not self.gate.wait(GATE_TIMEOUT_S):
            self.timed_out = True
        super().fill_bitmask(out)


def _run_until(engine, done_ids):
    steps = 0
    while not all(i in engine.results for i in done_ids):
        engine.step()
        steps += 1
        assert steps < 500


@pytest.mark.parametrize("at", [0, 3])   # the first mask (blocks the prefill's sample) or a later one
def test_a_slow_mask_never_holds_back_other_requests(engine, at):
    free_req = Request(prompt(90, 9), SamplingParams(temperature=1.0, seed=4, max_tokens=12))
    fast_req = Request(prompt(91, 6), SamplingParams(temperature=1.0, seed=5, max_tokens=9), constraint=Parity())
    [free_alone, fast_alone] = engine.generate([free_req, fast_req])
    engine.results.clear()
    gate = threading.Event()
    slow = Gated([7, 8, 9, 10, 11, 12], at, gate)
    fast_req = Request(prompt(91, 6), SamplingParams(temperature=1.0, seed=5, max_tokens=9), constraint=Parity())
    slow_id = engine.submit(Request(prompt(92, 5), SamplingParams(temperature=1.0, seed=6, max_tokens=20),
                                    constraint=slow))
    ids = [engine.submit(free_req), engine.submit(fast_req)]
    _run_until(engine, ids)
    assert not slow.timed_out and slow_id not in engine.results      # the others finished while it waited
    free, fast = engine.result(ids[0]), engine.result(ids[1])
    assert free.token_ids == free_alone.token_ids and fast.token_ids == fast_alone.token_ids
    # with nothing else to run, waiting for the mask costs no device calls (the engine blocks, it does not spin)
    before = engine.stats.decode_calls
    for _ in range(3):
        engine.step()
    assert engine.stats.decode_calls == before and slow_id not in engine.results
    gate.set()
    _run_until(engine, [slow_id])
    res = engine.result(slow_id)
    assert res.token_ids == slow.seq and res.finish_reason == "stop" and not slow.timed_out


def test_while_the_only_constrained_request_waits_the_others_decode_several_tokens_a_call(engine):
    gate = threading.Event()
    slow = Gated([7, 8, 9], 1, gate)
    slow_id = engine.submit(Request(prompt(95, 5), SamplingParams(temperature=0.0, max_tokens=5), constraint=slow))
    while len(slow.threads) < 1 or slow.pos < 1:     # its first token is out; the mask for the second waits
        engine.step()
    calls = engine.stats.decode_calls
    [free] = engine.generate([Request(prompt(96, 5), SamplingParams(temperature=0.0, max_tokens=16))])
    assert free.finish_reason == "length" and len(free.token_ids) == 16
    assert engine.stats.decode_calls - calls <= 16 // 4 + 1         # decode_steps (4) tokens a call, not one
    gate.set()
    _run_until(engine, [slow_id])
    assert engine.result(slow_id).token_ids == slow.seq and not slow.timed_out


def test_a_failing_mask_fails_its_request_with_the_constraints_message(engine):
    class Failing(Parity):
        def fill_bitmask(self, out):
            if self.step == 2:
                raise ValueError("schema budget spent")
            super().fill_bitmask(out)

    free = Request(prompt(93, 7), SamplingParams(temperature=0.0, max_tokens=6))
    [alone] = engine.generate([free])
    bad, ok = engine.generate([Request(prompt(94, 7), SamplingParams(temperature=1.0, seed=1, max_tokens=8),
                                       constraint=Failing()), free])
    assert bad.finish_reason == "error" and bad.error == "constraint failed: ValueError: schema budget spent"
    assert len(bad.token_ids) == 2 and ok.token_ids == alone.token_ids
