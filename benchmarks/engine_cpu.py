"""Engine speed on a small synthetic model, runnable on a CPU: prefill and decode tokens/s (a benchmark, not a test).

    python benchmarks/engine_cpu.py --model=tiny-4l --num_slots=8 --prompt_len=256 --max_tokens=64

Three runs, each after a warm-up run that compiles every shape it uses: prefill alone (max_tokens=1), decode with every slot busy
(short prompts, long outputs), and a mixed continuous-batching load (requests of random lengths arriving as slots
free up). The big-model GPU benchmark is `gptoss bench`.
"""
import json
import time

import numpy as np
from absl import app, flags

from gptoss_jax.cli import flags as common
from gptoss_jax.engine import Request, SamplingParams
from gptoss_jax.cli import engine_flags as eflags

flags.DEFINE_integer("prompt_len", 256, "Prompt tokens of the prefill run.")
flags.DEFINE_integer("requests", 32, "Requests of the mixed run.")
FLAGS = flags.FLAGS


def _prompts(n, length, vocab, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, length).tolist() for _ in range(n)]


def main(argv):
    del argv
    eflags.setup_compilation_cache()
    model = common.load_model()
    slots = FLAGS.num_slots or 8
    engine = eflags.build_engine(model, num_slots=slots)
    v, n_tok = model.cfg.vocab_size, FLAGS.max_tokens
    greedy = lambda m: SamplingParams(temperature=0.0, max_tokens=m)

    def run(reqs):
        s0 = dict(vars(engine.stats))
        t0 = time.perf_counter()
        res = engine.generate(reqs)
        wall = time.perf_counter() - t0
        d = {k: vars(engine.stats)[k] - s0[k] for k in s0}
        return res, wall, d

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
    out = sum(r.completion_tokens for r in res)
    decode = {"tokens": out, "s": wall, "tokens_per_s": out / wall, "batch": slots,
              "tokens_per_round_trip": d["decode_tokens"] / max(d["decode_calls"], 1)}
    res, wall, d = run(workloads["mixed"]())
    mixed = {"requests": len(res), "s": wall, "output_tokens_per_s": sum(r.completion_tokens for r in res) / wall,
             "total_tokens_per_s": sum(r.completion_tokens + r.prompt_tokens for r in res) / wall,
             "mean_ttft_s": float(np.mean([r.timings["ttft_s"] for r in res]))}
    print(json.dumps({"model": model.cfg.name, "dtype": FLAGS.dtype, "prefill": prefill, "decode": decode,
                      "mixed": mixed, "compilations": engine.compilations()}, indent=1))


if __name__ == "__main__":
    app.run(main)
