"""Does one costly constraint slow the others? A normal request's time alone vs beside adversarial ones, in one engine
(a benchmark, not a test; CPU is enough).

    python benchmarks/constraint_isolation.py [--max_len=512] [--repeats=5] [--out=isolation.json]

The `demo` preset (the real o200k_harmony vocabulary, tiny random layers). The normal request is 40 prompt tokens,
greedy, 16 new tokens (issue 13's case). Next to it, each time on another thread (as a server's request handler):
- the schemas of issue 13, `{"type": "string", "minLength": 1000000000}` and `{"type": "string", "pattern":
  "^[a-z]{5000}$"}`, as chat requests through chat.to_engine_request (refused when the constraint starts, or
  submitted if it is taken);
- a constraint whose masks each take `--slow_mask_s`, in native code (the GIL released, as llguidance computes)
  or in pure Python (the GIL held, as the old unbounded planner did), through the engine's mask pool;
- for reference, what any neighbour costs on a small CPU model: an unconstrained one-token request (its prefill is
  one more device call), an unconstrained sampled request with the adversaries' chat prompt and as many tokens as
  the pattern adversary writes (what the same request costs without its constraint), and a benign constrained
  chat request (json_object: one token a round while it runs).
The engine has its default settings (prefill chunks, decode_steps 8, constrained_slowdown 1.25) and 4 slots.
Prints the normal request's median time per case (cases interleaved), its ratio to running alone, how the adversary
ended, and the first (not yet cached) refusal time of each adversarial schema.
"""
import json
import statistics
import threading
import time

import numpy as np
from absl import app, flags

from gptoss_jax import api, chat
from gptoss_jax.engine import Engine, Request, RequestError, SamplingParams
from gptoss_jax.harmony import constrain, tokenizer as tok

flags.DEFINE_integer("max_len", 512, "Engine context.")
flags.DEFINE_integer("repeats", 5, "Runs per case (the median is reported).")
flags.DEFINE_float("slow_mask_s", 1.0, "Seconds of GIL-holding Python work per mask of the slow constraint.")
flags.DEFINE_string("out", None, "Also write the results as JSON here.")
FLAGS = flags.FLAGS

LONG_NEIGHBOUR_TOKENS = 386      # as many as the pattern adversary writes
ADVERSARIAL = {"minLength 1e9": {"type": "string", "minLength": 1_000_000_000},
               "pattern [a-z]{5000}": {"type": "string", "pattern": "^[a-z]{5000}$"}}


class SlowMasks:
    """Wraps a TokenConstraint; every mask first takes `seconds`: asleep (the GIL released) or burning Python."""

    def __init__(self, inner, seconds, hold_gil):
        self.inner, self.seconds, self.hold_gil = inner, seconds, hold_gil

    def fill_bitmask(self, out):
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            if self.hold_gil:
                sum(range(1000))
            else:
                time.sleep(end - time.perf_counter())
        self.inner.fill_bitmask(out)

    def advance(self, token):
        self.inner.advance(token)

    def is_finished(self):
        return self.inner.is_finished()


def _chat(fmt, max_tokens=None):
    return chat.ChatRequest([{"role": "user", "content": "Write it."}], response_format=fmt,
                            sampling=SamplingParams(temperature=1.0, seed=1, max_tokens=max_tokens))


def main(argv):
    del argv
    model = api.random_model("demo", dtype="float32")
    # the engine's own defaults for everything but its size (prefill chunks, decode_steps, constrained_slowdown)
    engine = Engine(model, num_slots=4, max_len=FLAGS.max_len, max_top_logprobs=0,
                    detokenize=tok.get_encoding().decode)
    normal = lambda: Request(list(range(1000, 1040)), SamplingParams(temperature=0.0, max_tokens=16))

    def adversary_builder(name):
        """A function run on another thread: builds (and submits, if taken) the adversary; returns its outcome."""
        def build():
            t0 = time.perf_counter()
            try:
                if name in ADVERSARIAL:
                    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": ADVERSARIAL[name]}}
                    # the most the context allows (a chat prompt of ~80 tokens): a plan is searched, not refused at once
                    req = chat.to_engine_request(_chat(schema, engine.max_len - 100), max_len=engine.max_len)
                elif name.startswith("slow masks"):
                    inner = constrain.compile_json_object(envelope="final").new_constraint(max_tokens=24)
                    stops = sorted(tok.STOP_TOKENS_FOR_ASSISTANT_ACTIONS)
                    req = Request(tok.get_encoding().encode("Write it."), SamplingParams(
                        temperature=1.0, seed=1, max_tokens=24, stop_token_ids=stops),
                        constraint=SlowMasks(inner, FLAGS.slow_mask_s, hold_gil="GIL held" in name))
                elif name == "free 1-token neighbour":
                    req = Request(tok.get_encoding().encode("Write it."), SamplingParams(temperature=1.0, seed=1,
                                                                                          max_tokens=1))
                elif name == "free long neighbour":      # the adversaries' chat prompt, sampled, unconstrained
                    req = chat.to_engine_request(_chat(None, LONG_NEIGHBOUR_TOKENS), max_len=engine.max_len)
                else:
                    req = chat.to_engine_request(_chat({"type": "json_object"}, 64), max_len=engine.max_len)
                rid = engine.submit(req)
            except (constrain.ConstraintError, RequestError) as e:    # refused compiling, or fitted to its limit
                return {"refused": str(e), "build_s": time.perf_counter() - t0}
            return {"id": rid, "build_s": time.perf_counter() - t0}
        return build

    def run(name=None):
        outcome = {}
        if name is not None:
            th = threading.Thread(target=lambda: outcome.update(adversary_builder(name)()))
            th.start()
            time.sleep(0.05)           # the adversary is being built / has entered when the normal one arrives
        rid = engine.submit(normal())
        while rid not in engine.results:
            engine.step()
        res = engine.result(rid)
        if name is not None:
            th.join()
            if "id" in outcome:        # let the adversary finish (or fail) before the next run
                while outcome["id"] not in engine.results:
                    engine.step()
                adv = engine.result(outcome["id"])
                outcome.update(finish_reason=adv.finish_reason, error=adv.error, tokens=adv.completion_tokens,
                               total_s=adv.timings["total_s"])
        return res, outcome

    first_refusal = {}
    constrain.compile_json_object().new_constraint(max_tokens=8)   # one-time setup: llguidance's tokenizer view
    for name in ADVERSARIAL:           # the first build of each: nothing cached yet
        first_refusal[name] = adversary_builder(name)()
    for _ in range(2):
        run()                          # compile every shape the runs use
    run("benign json_object")
    run("free 1-token neighbour")
    run("free long neighbour")
    cases = [None, *ADVERSARIAL, "free 1-token neighbour", "free long neighbour", "slow masks, GIL released",
             "slow masks, GIL held", "benign json_object"]
    times = {name: [] for name in cases}
    outcomes = {}
    for _ in range(FLAGS.repeats):     # cases interleaved: a shared machine's load drifts alike for all
        for name in cases:
            res, outcomes[name] = run(name)
            assert res.finish_reason == "length" and res.completion_tokens == 16, res
            times[name].append(res.timings["total_s"])
    report = {name or "alone": {"normal_median_s": statistics.median(times[name]), "normal_s": times[name],
                                "adversary": outcomes[name]} for name in cases}
    alone = report["alone"]["normal_median_s"]
    print(f"{'case':26s} {'normal (median)':>16s} {'x alone':>8s}  adversary (last run)")
    for name, r in report.items():
        r["ratio_to_alone"] = r["normal_median_s"] / alone
        adv = r["adversary"]
        what = ("refused in {:.2f}s: {}".format(adv["build_s"], adv["refused"][:90]) if "refused" in adv else
                "{} after {} tokens in {:.1f}s{}".format(adv["finish_reason"], adv["tokens"], adv["total_s"],
                                                        f": {adv['error'][:80]}" if adv.get("error") else "")
                if adv else "")
        print(f"{name:26s} {r['normal_median_s']:15.3f}s {r['ratio_to_alone']:7.2f}x  {what}")
    for name, adv in first_refusal.items():
        print(f"first build of {name}: " + (f"refused in {adv['build_s']:.2f}s" if "refused" in adv else
                                            f"taken in {adv['build_s']:.2f}s"))
    report["first_build"] = first_refusal
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(report, f, indent=1, default=lambda x: np.asarray(x).tolist())


if __name__ == "__main__":
    app.run(main)
