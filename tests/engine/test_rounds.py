"""Round trips: one device-to-host transfer a round, the next round in flight while the host reads the last, a
constrained request next to others without two dispatches a token for them, exact earliest-stop detection."""
import jax
import pytest

from gptoss_jax.engine import Request, SamplingParams
from gptoss_jax.engine.host_tokens import earliest_stop
from tests.engine.conftest import ENGINE_KW, prompt


class Counting:
    """Counts the engine's decode dispatches and its device-to-host transfers (jax.device_get calls)."""

    def __init__(self, engine, monkeypatch):
        self.dispatches, self.transfers, self.arrays, self.order = 0, 0, 0, []
        real_loop, real_get = engine.steps.decode_loop, jax.device_get

        def loop(*a, **kw):
            self.dispatches += 1
            self.order.append("dispatch")
            return real_loop(*a, **kw)

        def get(tree):
            self.transfers += 1
            self.arrays += len(jax.tree.leaves(tree))
            self.order.append("read")
            return real_get(tree)

        monkeypatch.setattr(engine.steps, "decode_loop", loop)
        monkeypatch.setattr(jax, "device_get", get)


def test_decode_rounds_are_one_transfer_each_and_double_buffered(engine, monkeypatch):
    reqs = [Request(prompt(200 + i, 6), SamplingParams(temperature=0.0, max_tokens=13)) for i in range(2)]
    [alone] = engine.generate(reqs[:1])
    n = Counting(engine, monkeypatch)
    out = engine.generate(reqs)
    assert out[0].token_ids == alone.token_ids            # reading a round late changes no token
    assert all(len(r.token_ids) == 13 for r in out)
    steps = ENGINE_KW["decode_steps"]
    # one prefill round (both prompts), then 12 decode tokens a request in rounds of 4: one transfer a round
    assert n.dispatches == 12 // steps and n.transfers == n.dispatches + 1 and n.arrays == n.transfers
    # each decode round after the first was dispatched before the previous round was read
    assert n.order == ["dispatch", "dispatch", "read", "read", "dispatch", "read", "read"]


class Parity:
    """Allows tokens of the parity of the number of tokens so far."""

    def __init__(self):
        self.n = 0

    def fill_bitmask(self, out):
        out[:] = 0x55555555 if self.n % 2 == 0 else -0x55555556

    def advance(self, token_id):
        self.n += 1

    def is_finished(self):
        return False


def test_a_constrained_request_costs_the_others_no_second_dispatch(engine, monkeypatch):
    free = Request(prompt(210, 5), SamplingParams(temperature=0.0, max_tokens=9))
    [alone] = engine.generate([free])
    n = Counting(engine, monkeypatch)
    c, f = engine.generate([Request(prompt(211, 7), SamplingParams(temperature=1.0, seed=3, max_tokens=9),
                                    constraint=Parity()), free])
    assert [t % 2 for t in c.token_ids] == [i % 2 for i in range(9)]
    assert f.token_ids == alone.token_ids
    # one dispatch a token of the constrained request (8 after the prefill's), the free request's tokens riding
    # along in the same dispatches (plus one round of 4 before the constrained request's second mask): never two
    # dispatches a token, one transfer a round (+ the prefill's)
    assert n.dispatches <= 9 and n.transfers == n.dispatches + 1


def test_the_stop_that_starts_first_ends_the_text(make_engine):
    letters = lambda ids: "".join(chr(97 + i % 26) for i in ids)
    engine = make_engine(detokenize=letters)
    p = prompt(220, 5)
    [ref] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=30))])
    text = letters(ref.token_ids)
    # a token index where the last 4 letters (and the last 2) appear for the first time: both stops complete at
    # that token, in one tail; the 4-letter one starts first
    i = next(i for i in range(4, 30) if text.find(text[i - 3:i + 1]) == i - 3 and text.find(text[i - 1:i + 1]) == i - 1)
    long_stop, short_stop = text[i - 3:i + 1], text[i - 1:i + 1]
    for stops in ([short_stop, long_stop], [long_stop, short_stop]):
        [r] = engine.generate([Request(p, SamplingParams(temperature=0.0, max_tokens=30, stop=stops))])
        assert r.token_ids == ref.token_ids[:i + 1] and r.finish_reason == "stop"
        assert r.stop_reason == long_stop and r.text == text[:i - 3]


def test_earliest_stop():
    assert earliest_stop("abcdef", ["de", "bcd", "x"]) == (1, "bcd")
    assert earliest_stop("abcdef", ["cd", "cde"]) == (2, "cde")         # same start: the longer one
    assert earliest_stop("abc", ["x"]) is None


def test_beside_a_constrained_request_the_others_get_the_round_clocks_length(make_engine, monkeypatch):
    """The constrained request takes one token a round, its neighbour as many as the clock allows (3 here), in the
    same dispatches; both get exactly their tokens alone."""
    engine = make_engine(mask_wait_s=10.0)             # no round without the constrained request, however loaded
    free = Request(prompt(212, 5), SamplingParams(temperature=0.0, max_tokens=13))
    con = lambda: Request(prompt(213, 7), SamplingParams(temperature=1.0, seed=3, max_tokens=4), constraint=Parity())
    [free_alone, con_alone] = [engine.generate([r])[0] for r in (free, con())]
    monkeypatch.setattr(engine.clock, "constrained_steps", lambda: 3)
    n = Counting(engine, monkeypatch)
    c, f = engine.generate([con(), free])
    assert c.token_ids == con_alone.token_ids and f.token_ids == free_alone.token_ids
    # the prefill samples the first tokens; then 3 constrained rounds give the free request 3 tokens each (9),
    # then full rounds of 4 for its last 3: 4 dispatches in all (1-step rounds would have needed 5)
    assert n.dispatches == 4


def test_round_clock_picks_the_fewest_steps_within_the_slowdown():
    from gptoss_jax.engine.round_clock import RoundClock

    clock = RoundClock(8, 1.25)
    assert clock.constrained_steps() == 1              # nothing measured: one step first
    clock.record(1, 0.024)
    assert clock.constrained_steps() == 8              # then a full round, for the fit's other end
    clock.record(8, 0.058)                             # fixed ~19 ms, 4.9 ms a step: as a small model on a CPU
    fixed, per_step = clock.fit()
    assert abs(fixed - 0.0191) < 1e-3 and abs(per_step - 0.00486) < 1e-4
    n = clock.constrained_steps()
    assert fixed / n + per_step <= 1.25 * 0.058 / 8 < fixed / (n - 1) + per_step
    clock.record_free(0.040)         # double buffered, a full round costs the neighbours less than read serially
    assert clock.constrained_steps() == 8    # no length keeps within 1.25x of 5 ms a token: full rounds
    clock.free = 0.052
    m = clock.constrained_steps()
    assert m < 8 and fixed / m + per_step <= 1.25 * 0.052 / 8 < fixed / (m - 1) + per_step
    gpu = RoundClock(8, 1.25)                          # a large model: the fixed part is small next to a step
    gpu.record(1, 0.0105)
    gpu.record(8, 0.0805)
    assert gpu.constrained_steps() == 1
    assert RoundClock(8, None).constrained_steps() == 1
    with pytest.raises(ValueError, match="constrained_slowdown"):
        RoundClock(8, 0.5)


def test_a_short_prompt_rides_in_a_longer_ones_prefill_call(make_engine):
    """Prompts of different chunk buckets arriving together share one prefill call (the shorter padded), and each
    gets the tokens it gets alone."""
    engine = make_engine(min_prefill_chunk=4)          # buckets 4 (4 rows a call), 8 (2 rows), 16 (1 row)
    short, longer = (Request(prompt(214 + i, n), SamplingParams(temperature=0.0, max_tokens=5))
                     for i, n in enumerate((3, 7)))
    alone = [engine.generate([r])[0] for r in (short, longer)]
    calls = engine.stats.prefill_calls
    together = engine.generate([short, longer])
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert engine.stats.prefill_calls - calls == 1


def test_group_chunks_keeps_admission_order_and_the_rows_limit():
    from gptoss_jax.engine.rounds import _group_chunks

    rows_for = lambda t: max(1, 64 // t)
    assert _group_chunks([8, 16, 64, 8], lambda s: s, rows_for) == (16, [8, 16, 8])   # 64 would leave 1 row
    assert _group_chunks([64, 8], lambda s: s, rows_for) == (64, [64])
    assert _group_chunks([32, 8, 8, 8], lambda s: s, rows_for) == (32, [32, 8])
