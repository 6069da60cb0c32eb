"""Round trips: one device-to-host transfer a round, the next round in flight while the host reads the last, a
constrained request next to others without two dispatches a token for them, exact earliest-stop detection."""
import jax

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
