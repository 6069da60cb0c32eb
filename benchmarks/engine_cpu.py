"""The engine's hot path on a CPU, in ratios measured within one run (a benchmark, not a test).

    PYTHONPATH=. python benchmarks/engine_cpu.py                     # every part, demo preset, 32 slots
    PYTHONPATH=. python benchmarks/engine_cpu.py --parts=step,rounds --timed=10

Parts (--parts, comma-separated):
  step        decode-step time over forward time at --num_slots (default 32) one-token rows: greedy, and full
              sampling (temperature 1, top_p 0.9, presence and frequency penalties). "forward" is `model(tokens)`
              on the same [slots, 1] tokens (no cache, logits of the whole vocabulary); "engine" is the wall time
              of 3 consecutive engine.step() calls and the wait for their last round, a token (host bookkeeping
              included; the engine reads a round a step after dispatching it); "device" is the jitted multi-token decode
              call alone, a token. Forward and step timings alternate, so machine load hits both alike.
  rounds      device round trips: device-to-host transfers (jax.device_get calls and the arrays they fetch) a
              decode round and a token, host time a round (step wall time outside the transfer waits), and the
              device dispatches a token when one of the slots is constrained (a token mask every step).
  prefill     prefill time of one 512, 2k and 8k-token prompt (--prefill_lens), to show attention's growth.
  prefill_memory
              the compiled prefill of one 8k-token chunk at gpt-oss-120b's shapes (abstract weights, nothing
              allocated): XLA's temporaries, the largest buffers, and any [.., chunk, keys]-sized attention buffer.
  depth       decode-step time of a 32-layer over a 4-layer model with gpt-oss-120b's attention head shapes
              (64 query heads, 8 KV heads of 64, window 128; small everything else), 32 slots, and the ratio.
  throughput  prefill, decode and mixed continuous-batching tokens/s (--prompt_len, --max_tokens, --requests).

--model picks the preset (default demo: the real 201,088-token vocabulary, tiny layers); weights are drawn on the
device (no checkpoint written). One JSON document is printed at the end; each part also prints a line as it ends.
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import gptoss_jax
from gptoss_jax.cli import flags as common
from gptoss_jax.cli import engine_flags as eflags
from gptoss_jax.config import get_config
from gptoss_jax.engine import Engine, Request, SamplingParams

PARTS = ("step", "rounds", "prefill", "prefill_memory", "depth", "throughput")
flags.DEFINE_list("parts", list(PARTS), "Which parts to run.")
flags.DEFINE_integer("memory_chunk", 8192, "Chunk length of the prefill_memory part.")
flags.DEFINE_integer("timed", 12, "Timed repetitions a measurement (medians are reported).")
flags.DEFINE_list("prefill_lens", ["512", "2048", "8192"], "Prompt lengths of the prefill part.")
flags.DEFINE_list("depths", ["4", "32"], "Layer counts of the depth part (the ratio is last over first).")
flags.DEFINE_integer("depth_context", 200, "Tokens in each slot's cache in the depth part.")
flags.DEFINE_integer("depth_max_len", 1024, "Context of every slot (the cache allocation) in the depth part.")
flags.DEFINE_integer("prompt_len", 256, "Prompt tokens of the throughput part's prefill run.")
flags.DEFINE_integer("requests", 32, "Requests of the throughput part's mixed run.")
FLAGS = flags.FLAGS

GREEDY = dict(temperature=0.0)
ENGINE_STEPS = 3            # consecutive engine steps a timing of the step part
FULL = dict(temperature=1.0, top_p=0.9, presence_penalty=0.5, frequency_penalty=0.5)


def _prompts(n, length, vocab, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, length).tolist() for _ in range(n)]


class TransferCounter:
    """Counts jax.device_get calls (device-to-host round trips), the arrays they fetch and the time spent in them
    (waiting for the device included), by wrapping jax.device_get while active."""

    def __init__(self):
        self.calls = self.arrays = 0
        self.wait_s = 0.0
        self._orig = None

    def __enter__(self):
        self._orig = jax.device_get

        def counted(tree):
            self.calls += 1
            self.arrays += sum(isinstance(x, jax.Array) for x in jax.tree.leaves(tree))
            t = time.perf_counter()
            try:
                return self._orig(tree)
            finally:
                self.wait_s += time.perf_counter() - t

        jax.device_get = counted
        return self

    def __exit__(self, *exc):
        jax.device_get = self._orig


class DispatchCounter:
    """Counts calls of an engine's jitted steps (device dispatches) while active."""
    NAMES = ("prefill", "decode_loop", "decode_forward", "decode_sample", "decode_round", "decode_masked")

    def __init__(self, steps):
        self.steps, self.calls = steps, {}

    def __enter__(self):
        self._orig = {n: getattr(self.steps, n) for n in self.NAMES if hasattr(self.steps, n)}
        for name, fn in self._orig.items():
            def counted(*a, _fn=fn, _name=name, **kw):
                self.calls[_name] = self.calls.get(_name, 0) + 1
                return _fn(*a, **kw)
            setattr(self.steps, name, counted)
        return self

    def __exit__(self, *exc):
        for name, fn in self._orig.items():
            setattr(self.steps, name, fn)

    @property
    def total(self) -> int:
        return sum(v for k, v in self.calls.items() if k != "prefill")


def _engine(model, slots, max_len, **kw) -> Engine:
    return Engine(model, num_slots=slots, max_len=max_len, prefill_chunk=FLAGS.prefill_chunk,
                  min_prefill_chunk=FLAGS.min_prefill_chunk, decode_steps=FLAGS.decode_steps,
                  max_top_logprobs=FLAGS.max_top_logprobs, seed=FLAGS.seed, **kw)


def _fill(engine, sampling: dict, prompt_len: int = 16, constraint_for=None) -> None:
    """Submit one endless request a slot and step until every slot decodes."""
    v = engine.cfg.vocab_size
    for i, p in enumerate(_prompts(engine.num_slots, prompt_len, v, 7)):
        c = constraint_for(i) if constraint_for else None
        room = engine.max_len + 1 - prompt_len         # endless: the whole context (no default limit)
        engine.submit(Request(p, SamplingParams(seed=i, max_tokens=room, **sampling), constraint=c))
    for _ in range(1000):
        engine.step()
        if all(s is not None and s.decoding for s in engine.slots):
            return
    raise RuntimeError("slots never all reached decoding")


def _device_step_s(engine, n_steps: int) -> float:
    """One jitted multi-token decode call over every slot, seconds a token (the device's work alone)."""
    keep = np.ones((engine.num_slots,), bool)
    lives = [s for s in engine.slots if s is not None]
    kv = engine._decode_kv(lives, n_steps)
    jax.block_until_ready(engine.cache)             # nothing of the engine's in flight
    t = time.perf_counter()
    engine.cache, engine.state, outs, _ = engine.steps.decode_loop(
        engine.model.params, engine.cache, engine.state, keep, kv_len=kv, n_steps=n_steps, plan=engine._plan(lives))
    jax.block_until_ready(outs)
    return (time.perf_counter() - t) / n_steps


def _median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------------------------------------------------ parts
def part_step(model, slots: int) -> dict:
    tokens = jnp.asarray(_prompts(1, slots, model.cfg.vocab_size, 1)[0], jnp.int32)[:, None]

    def forward_s():
        t = time.perf_counter()
        model._apply(model.params, tokens, None, None, None)[0].block_until_ready()
        return time.perf_counter() - t

    out = {}
    for label, sampling in (("greedy", GREEDY), ("full_sampling", FULL)):
        engine = _engine(model, slots,
                         max_len=FLAGS.decode_steps * ((ENGINE_STEPS + 3) * FLAGS.timed + 8 + slots) + 64)
        _fill(engine, sampling)
        for _ in range(2):                                # warm-up: compiles the step and the forward
            engine.step(), forward_s(), _device_step_s(engine, FLAGS.decode_steps)
        fwd, eng, dev = [], [], []
        settle = lambda: jax.block_until_ready(engine.cache)     # no round of the engine's left in flight
        for _ in range(FLAGS.timed):
            settle()
            fwd.append(forward_s())
            # the engine double buffers (a step reads the round before the one it dispatches): time ENGINE_STEPS
            # steps and the wait for the last round, i.e. exactly ENGINE_STEPS rounds of device work
            settle()
            t = time.perf_counter()
            for _ in range(ENGINE_STEPS):
                engine.step()
            settle()
            eng.append((time.perf_counter() - t) / (ENGINE_STEPS * FLAGS.decode_steps))
            fwd.append(forward_s())
            dev.append(_device_step_s(engine, FLAGS.decode_steps))
        engine.close()
        f = _median(fwd)
        out[label] = {"forward_ms": f * 1e3, "engine_step_ms": _median(eng) * 1e3,
                      "device_step_ms": _median(dev) * 1e3, "engine_over_forward": _median(eng) / f,
                      "device_over_forward": _median(dev) / f}
        r = out[label]
        print(f"step {label:14s} forward {r['forward_ms']:8.2f} ms  engine step {r['engine_step_ms']:8.2f} ms "
              f"({r['engine_over_forward']:5.2f}x)  device step {r['device_step_ms']:8.2f} ms "
              f"({r['device_over_forward']:5.2f}x)", flush=True)
    return out


class _AllowAll:
    """A constraint that allows every token and never finishes: it only forces the constrained-slot path."""

    def __init__(self, words: int):
        self.words = words

    def fill_bitmask(self, out):
        out[:] = -1

    def advance(self, tok):
        pass

    def is_finished(self):
        return False


def part_rounds(model, slots: int) -> dict:
    out = {}
    words = -(-model.cfg.vocab_size // 32)
    cases = (("unconstrained", None), ("one_constrained", lambda i: _AllowAll(words) if i == 0 else None))
    for label, constraint_for in cases:
        engine = _engine(model, slots, max_len=FLAGS.decode_steps * (FLAGS.timed + 8 + slots) + 64)
        _fill(engine, GREEDY, constraint_for=constraint_for)
        for _ in range(2):
            engine.step()
        tok0 = engine.stats.decode_tokens
        with TransferCounter() as tc, DispatchCounter(engine.steps) as dc:
            t = time.perf_counter()
            for _ in range(FLAGS.timed):
                engine.step()
            wall, wait = time.perf_counter() - t, tc.wait_s
            for _ in range(4):           # rounds still in flight (a double-buffered engine) come home
                if engine.step() == []:
                    break
        tokens = engine.stats.decode_tokens - tok0
        engine.close()
        token_steps = tokens / slots
        r = out[label] = {
            "token_steps": token_steps, "transfers": tc.calls, "arrays_fetched": tc.arrays,
            "round_trips_per_token_step": tc.calls / token_steps,
            "arrays_per_transfer": tc.arrays / max(tc.calls, 1),
            "decode_dispatches_per_token_step": dc.total / token_steps, "dispatches": dc.calls,
            "host_ms_per_round": (wall - wait) / FLAGS.timed * 1e3,
            "wall_ms_per_token_step": wall / token_steps * 1e3}
        print(f"rounds {label:16s} {r['round_trips_per_token_step']:.3f} transfers a token step "
              f"({r['arrays_per_transfer']:.1f} arrays each), {r['decode_dispatches_per_token_step']:.2f} decode "
              f"dispatches a token step, host {r['host_ms_per_round']:.2f} ms a round", flush=True)
    return out


def part_prefill(model) -> dict:
    lens = [int(x) for x in FLAGS.prefill_lens]
    engine = _engine(model, 1, max_len=max(lens) + 16)
    out = {}
    for n in lens:
        req = lambda: Request(_prompts(1, n, model.cfg.vocab_size, n)[0], SamplingParams(max_tokens=1, **GREEDY))
        engine.generate([req()])                              # compiles this length's buckets
        times = []
        for _ in range(max(2, FLAGS.timed // 4)):
            t = time.perf_counter()
            engine.generate([req()])
            times.append(time.perf_counter() - t)
        s = _median(times)
        out[str(n)] = {"s": s, "ms_per_1k_tokens": s / n * 1e6}
        print(f"prefill {n:6d} tokens {s * 1e3:9.1f} ms  ({s / n * 1e6:7.2f} ms a 1k tokens)", flush=True)
    engine.close()
    return out


def depth_config(layers: int):
    return get_config("gpt-oss-120b").replace(
        num_layers=layers, num_experts=8, experts_per_token=4, vocab_size=512, hidden_size=128,
        intermediate_size=128, name=f"120b-heads-{layers}L")


def part_depth(slots: int) -> dict:
    out = {}
    for layers in [int(x) for x in FLAGS.depths]:
        cfg = depth_config(layers)
        model = gptoss_jax.api.random_model(cfg, seed=FLAGS.seed, kernels=common.kernels_from_flags())
        engine = _engine(model, slots, max_len=FLAGS.depth_max_len)
        _fill(engine, GREEDY, prompt_len=FLAGS.depth_context)
        _device_step_s(engine, FLAGS.decode_steps)
        s = _median([_device_step_s(engine, FLAGS.decode_steps) for _ in range(FLAGS.timed)])
        engine.close()
        out[str(layers)] = {"device_step_ms": s * 1e3}
        print(f"depth {layers:3d} layers: {s * 1e3:9.2f} ms a decode step", flush=True)
        del engine, model
    ds = [int(x) for x in FLAGS.depths]
    out["ratio"] = out[str(ds[-1])]["device_step_ms"] / out[str(ds[0])]["device_step_ms"]
    print(f"depth {ds[-1]} layers over {ds[0]}: {out['ratio']:.2f}x (linear growth: {ds[-1] / ds[0]:.1f}x)")
    return out


def part_prefill_memory() -> dict:
    """The compiled prefill of one 8k-token chunk (cache of 8k) at gpt-oss-120b's shapes, abstract weights: the
    temporaries XLA plans, the largest buffers, and any attention-like buffer of chunk x (>= 1024) keys."""
    from gptoss_jax import params as params_lib
    from gptoss_jax.cli import bench_program
    from gptoss_jax.model.transformer import KVCache

    cfg, chunk = get_config("gpt-oss-120b"), FLAGS.memory_chunk
    model = gptoss_jax.GptOss(cfg, None, dtype=FLAGS.dtype, kernels=common.kernels_from_flags())
    s = jax.ShapeDtypeStruct
    args = (params_lib.abstract_params(cfg), s((1, chunk), jnp.int32), s((1, chunk), jnp.int32),
            KVCache.shapes(cfg, 1, chunk, model.dtype), s((1,), jnp.int32))
    t = time.perf_counter()
    compiled = model._apply.lower(*args, kv_len=chunk).compile()
    text = compiled.as_text()
    mem = compiled.memory_analysis()
    out = {"chunk": chunk, "compile_s": time.perf_counter() - t,
           "temp_bytes": int(getattr(mem, "temp_size_in_bytes", 0) or 0),
           "largest": [f"{shape} {b / 1e6:.1f} MB" for b, shape in bench_program.buffers(text)[:4]],
           "quadratic": bench_program.quadratic_buffers(text, chunk, 1024)}
    print(f"prefill memory 120b {chunk}-token chunk: temp {out['temp_bytes'] / 1e9:.2f} GB; largest "
          f"{', '.join(out['largest'])}; chunk x keys buffers: {out['quadratic'] or 'none'}", flush=True)
    return out


def part_throughput(model, slots: int) -> dict:
    engine = _engine(model, slots, max_len=FLAGS.max_len)
    v, n_tok = model.cfg.vocab_size, FLAGS.max_tokens
    greedy = lambda m: SamplingParams(temperature=0.0, max_tokens=m)

    def run(reqs):
        s0 = dict(vars(engine.stats))
        t0 = time.perf_counter()
        res = engine.generate(reqs)
        return res, time.perf_counter() - t0, {k: vars(engine.stats)[k] - s0[k] for k in s0}

    rng = np.random.default_rng(4)
    mixed_lengths = [(int(rng.integers(8, FLAGS.prompt_len)), int(rng.integers(4, n_tok)))
                     for _ in range(FLAGS.requests)]
    workloads = {
        "prefill": lambda: [Request(p, greedy(1)) for p in _prompts(slots, FLAGS.prompt_len, v, 2)],
        "decode": lambda: [Request(p, greedy(n_tok)) for p in _prompts(slots, 8, v, 3)],
        "mixed": lambda: [Request(_prompts(1, n, v, 10 + i)[0], SamplingParams(temperature=1.0, top_p=0.9, seed=i,
                                                                               max_tokens=m))
                          for i, (n, m) in enumerate(mixed_lengths)],
    }
    for make in workloads.values():   # warm-up: compiles every shape the measured runs use
        run(make())
    _, wall, d = run(workloads["prefill"]())
    prefill = {"tokens": d["prefill_tokens"], "s": wall, "tokens_per_s": d["prefill_tokens"] / wall}
    res, wall, d = run(workloads["decode"]())
    n_out = sum(r.completion_tokens for r in res)
    decode = {"tokens": n_out, "s": wall, "tokens_per_s": n_out / wall, "batch": slots}
    res, wall, d = run(workloads["mixed"]())
    mixed = {"requests": len(res), "s": wall, "output_tokens_per_s": sum(r.completion_tokens for r in res) / wall,
             "total_tokens_per_s": sum(r.completion_tokens + r.prompt_tokens for r in res) / wall,
             "mean_ttft_s": float(np.mean([r.timings["ttft_s"] for r in res]))}
    engine.close()
    print(f"throughput prefill {prefill['tokens_per_s']:.0f} tok/s, decode {decode['tokens_per_s']:.0f} tok/s, "
          f"mixed {mixed['output_tokens_per_s']:.0f} output tok/s", flush=True)
    return {"prefill": prefill, "decode": decode, "mixed": mixed, "compilations": engine.compilations()}


def main(argv):
    del argv
    eflags.setup_compilation_cache()
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"unknown --parts {sorted(unknown)}; expected some of {', '.join(PARTS)}")
    slots = FLAGS.num_slots or 32
    report = {"jax": jax.__version__, "device": jax.devices()[0].device_kind, "slots": slots,
              "decode_steps": FLAGS.decode_steps}
    model = None
    if set(FLAGS.parts) - {"depth", "prefill_memory"}:
        source = common.model_source()
        if gptoss_jax.api.is_preset(source):       # weights drawn on the device: no checkpoint written
            model = gptoss_jax.api.random_model(source, seed=FLAGS.seed, dtype=FLAGS.dtype,
                                                kernels=common.kernels_from_flags())
        else:
            model = common.load_model()
        report["model"] = model.cfg.name
    if "step" in FLAGS.parts:
        report["step"] = part_step(model, slots)
    if "rounds" in FLAGS.parts:
        report["rounds"] = part_rounds(model, slots)
    if "prefill" in FLAGS.parts:
        report["prefill"] = part_prefill(model)
    if "depth" in FLAGS.parts:
        report["depth"] = part_depth(slots)
    if "prefill_memory" in FLAGS.parts:
        report["prefill_memory"] = part_prefill_memory()
    if "throughput" in FLAGS.parts:
        report["throughput"] = part_throughput(model, slots)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    app.run(main)
