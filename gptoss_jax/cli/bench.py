"""gptoss bench: prefill and decode throughput of gpt-oss on one device, against the memory-bandwidth roofline.

    gptoss bench                                      # GPU: gpt-oss-20b and gpt-oss-120b, batch 1,8,64,256, 1k and 8k
    gptoss bench --model=tiny                         # any machine (CPU: batch 1,4 at context 128 by default;
                                                      # the kernels run in Pallas' interpreter), about 20 s
    gptoss bench --model=gpt-oss-120b --batch=1 --context=1024 --modes=decode --out=runs/b1.json

For each model it draws random full-size weights directly on the device (no disk), prints the memory plan (packed
weights, KV cache bytes a token, how many tokens of context fit), the device ops one layer pair of a batch-1 decode
step lowers to on a GPU per path (StableHLO, lowered abstractly: the glue around the kernels; cli/bench_program.py)
and, for every (mode, batch, context) case, runs
the REFERENCE path (jnp expert matmul, XLA attention) and the KERNEL path (--moe_impl / --attention_impl; "auto" is
the Pallas kernels on GPU, their interpret mode on CPU) in the same process, then prints tokens/s, ms a step, the
bytes a step must move and the flops it must do, the fraction of the roofline (ideal time / measured time, ideal =
max(bytes / --bandwidth, flops / --peak_flops)) and the kernel/reference ratio; with decode in --modes, last the
engine's round trips a token step and host time a round at the largest decode batch that fit (greedy, short
prompts). Results go to --out as JSON, rewritten after every case. A case whose KV cache and workspace do not fit
in device memory next to the weights is refused with the numbers, before anything is allocated.

Bytes and flops a step must move: gptoss_jax/engine/cost.py (decode is bandwidth-bound, prefill compute-bound).

Timing: warmup steps (compile excluded: everything is compiled ahead of time), then every step synchronised and
timed on the host; medians reported. Decode starts from a cache whose first `context` positions hold random values.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time

from absl import app, flags

from gptoss_jax import params as params_lib
from gptoss_jax.cli import flags as common
from gptoss_jax.cli.bench_report import _size, _write, print_plan, refusals
from gptoss_jax.engine.cost import decode_cost, distinct_experts, memory_plan, prefill_cost  # noqa: F401

FLAGS = flags.FLAGS

flags.DEFINE_list("batch", ["1", "8", "64", "256"], "Batch sizes (rows decoded together; prompts prefilled). "
                  "On CPU the default is 1,4.")
flags.DEFINE_list("context", ["1024", "8192"], "Context lengths: tokens in the cache when decoding, prompt length "
                  "when prefilling. On CPU the default is 128.")
flags.DEFINE_list("modes", ["prefill", "decode"], "Which of prefill, decode to run.")
flags.DEFINE_list("paths", ["reference", "kernel"], "Which of reference, kernel to run (the ratio needs both).")
flags.DEFINE_integer("timed_steps", 16, "Timed decode steps a case.")
flags.DEFINE_integer("warmup", 2, "Untimed steps (decode) or runs (prefill) before timing.")
flags.DEFINE_integer("prefill_repeats", 3, "Timed prefill runs a case.")
flags.DEFINE_integer("prefill_tokens", 8192, "Tokens a prefill call: a prompt longer than this is prefilled in "
                     "chunks, shorter prompts are batched up to it. Throughput is measured on one such group of "
                     "rows and holds for any batch.")
flags.DEFINE_float("bandwidth", 3.16e12, "Device memory bandwidth, bytes/s (default: H100 80GB measured from JAX).")
flags.DEFINE_float("peak_flops", 989e12, "Dense bf16 matrix rate, flop/s (default: H100 SXM datasheet).")
flags.DEFINE_float("mem_fraction", 0.95, "GPU memory JAX may take (sets XLA_PYTHON_CLIENT_MEM_FRACTION unless set); "
                   "JAX's default 0.75 leaves too little next to 120b's weights.")
flags.DEFINE_float("memory_gb", None, "Device memory budget in GB (default: what the device reports; on CPU the "
                   "host's available memory).")
flags.DEFINE_string("out", None, "JSON results path (default runs/bench-<time>.json).")

DEFAULT_MODELS = {"gpu": "gpt-oss-20b,gpt-oss-120b", "tpu": "gpt-oss-20b,gpt-oss-120b"}
# on CPU the kernel path runs Pallas' interpreter: the GPU grid of cases would take tens of minutes
DEFAULT_CASES = {"cpu": {"batch": ["1", "4"], "context": ["128"]}}
GB = 1e9


# --------------------------------------------------------------------------------------------- memory planning
def device_memory_budget() -> tuple[int | None, str]:
    """(bytes JAX may use on device 0, where the number comes from)."""
    import jax

    if FLAGS.memory_gb:
        return int(FLAGS.memory_gb * GB), "--memory_gb"
    stats = jax.devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), "device"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "host MemAvailable"
    except (OSError, KeyError, ValueError):
        return None, "unknown"


def fits(need: int, budget: int | None) -> bool:
    return budget is None or need <= budget


# ------------------------------------------------------------------------------------------------------ runners
@dataclasses.dataclass
class Case:
    mode: str
    batch: int
    context: int

    @property
    def name(self) -> str:
        return f"{self.mode} batch {self.batch} context {self.context}"


def _abstract(tree):
    import jax

    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def _compile(model, rows: int, tokens_per_row: int, cache_shapes, budget, resident: int, what: str):
    """AOT-compile one forward shape; returns (compiled, None) or (None, refusal message)."""
    import jax
    import jax.numpy as jnp

    s = jax.ShapeDtypeStruct
    args = (_abstract(model.params), s((rows, tokens_per_row), jnp.int32), s((rows, tokens_per_row), jnp.int32),
            cache_shapes, s((rows,), jnp.int32))
    compiled = model._apply.lower(*args, kv_len=None).compile()
    mem = compiled.memory_analysis()
    cache_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache_shapes))
    size = lambda name: int(getattr(mem, name, 0) or 0)
    # outputs beyond the cache, which is donated and comes back in place (aliased)
    work = size("temp_size_in_bytes") + max(0, size("output_size_in_bytes") - size("alias_size_in_bytes"))
    need = resident + cache_bytes + work
    if not fits(need, budget):
        per_row = cache_bytes / rows
        room = max(0, budget - resident - work)
        return None, (f"{what}: needs {_size(cache_bytes)} of KV cache + {_size(work)} of workspace next to "
                      f"{_size(resident)} of weights, over the {_size(budget)} budget; at most "
                      f"{int(room // per_row)} rows fit at this context")
    return compiled, None


def _random_tokens(shape, vocab: int, seed: int):
    import jax.numpy as jnp

    return (params_lib.hash_u32(shape, seed) % vocab).astype(jnp.int32)


def _fill_cache(cache, seed: int):
    """Random-valued cache (never time on zeros), written in place."""
    import jax
    import jax.numpy as jnp

    def fill(i, a):
        noise = (params_lib.hash_u32(a.shape, seed + i) >> 8).astype(jnp.float32)
        return (noise * (2.0 ** -23) - 1.0).astype(a.dtype)

    leaves, tree = jax.tree.flatten(cache)
    out = jax.jit(lambda ls: [fill(i, a) for i, a in enumerate(ls)], donate_argnums=0)(leaves)
    return jax.tree.unflatten(tree, out)


def run_decode(model, case: Case, budget, resident: int, *, warmup: int | None = None,
               timed_steps: int | None = None) -> dict:
    """Time decode steps of `case` (warmup / timed_steps default to the flags: benchmarks/gpu_suite.py passes its
    own)."""
    import jax
    import jax.numpy as jnp

    from gptoss_jax.model.transformer import KVCache

    warmup = FLAGS.warmup if warmup is None else warmup
    timed_steps = FLAGS.timed_steps if timed_steps is None else timed_steps
    b, ctx = case.batch, case.context
    max_len = ctx + warmup + timed_steps + 1
    shapes = KVCache.shapes(model.cfg, b, max_len, model.dtype)
    t0 = time.perf_counter()
    step, refusal = _compile(model, b, 1, shapes, budget, resident, case.name)
    if refusal:
        return {"refused": refusal}
    compile_s = time.perf_counter() - t0
    cache = _fill_cache(model.new_cache(b, max_len), seed=ctx)
    tokens = _random_tokens((b, 1), model.cfg.vocab_size, seed=b)
    first = jnp.zeros((b,), jnp.int32)
    next_token = jax.jit(lambda logits: jnp.argmax(logits, axis=-1).astype(jnp.int32)[:, None])
    times = []
    for i in range(warmup + timed_steps):
        positions = jnp.full((b, 1), ctx + i, jnp.int32)
        t = time.perf_counter()
        logits, cache = step(model.params, tokens, positions, cache, first)
        tokens = next_token(logits)
        tokens.block_until_ready()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    del cache
    sec = statistics.median(times)
    return {"seconds": sec, "ms_per_step": sec * 1e3, "tokens_per_s": b / sec, "compile_s": compile_s,
            "steps": len(times), "p10_ms": sorted(times)[len(times) // 10] * 1e3,
            "p90_ms": sorted(times)[(len(times) * 9) // 10] * 1e3}


def prefill_rows(case: Case, prefill_tokens: int | None = None) -> tuple[int, int]:
    """(rows prefilled together, tokens a call): one group of rows filling --prefill_tokens."""
    prefill_tokens = FLAGS.prefill_tokens if prefill_tokens is None else prefill_tokens
    chunk = min(case.context, prefill_tokens)
    return max(1, min(case.batch, prefill_tokens // chunk)), chunk


def run_prefill(model, case: Case, budget, resident: int, *, warmup: int | None = None, repeats: int | None = None,
                prefill_tokens: int | None = None) -> dict:
    """Time prefills of `case` (warmup / repeats / prefill_tokens default to the flags)."""
    import jax.numpy as jnp

    from gptoss_jax.model.transformer import KVCache

    warmup = FLAGS.warmup if warmup is None else warmup
    repeats = FLAGS.prefill_repeats if repeats is None else repeats
    rows, chunk = prefill_rows(case, prefill_tokens)
    ctx = case.context
    shapes = KVCache.shapes(model.cfg, rows, ctx, model.dtype)
    t0 = time.perf_counter()
    step, refusal = _compile(model, rows, chunk, shapes, budget, resident, case.name)
    if refusal:
        return {"refused": refusal}
    compile_s = time.perf_counter() - t0
    cache = model.new_cache(rows, ctx)
    calls = -(-ctx // chunk)
    tokens = [_random_tokens((rows, chunk), model.cfg.vocab_size, seed=1000 + c) for c in range(calls)]
    positions = []
    for c in range(calls):
        pos = c * chunk + jnp.arange(chunk, dtype=jnp.int32)
        positions.append(jnp.broadcast_to(jnp.where(pos < ctx, pos, -1)[None], (rows, chunk)))
    last = jnp.full((rows,), (ctx - 1) % chunk, jnp.int32)
    times = []
    for r in range(warmup + repeats):
        t = time.perf_counter()
        for c in range(calls):                         # positions restart at 0: the cache is simply rewritten
            logits, cache = step(model.params, tokens[c], positions[c], cache, last)
        logits.block_until_ready()
        if r >= warmup:
            times.append(time.perf_counter() - t)
    del cache
    sec = statistics.median(times)
    return {"seconds": sec, "ms_per_step": sec * 1e3, "tokens_per_s": rows * ctx / sec, "compile_s": compile_s,
            "rows_measured": rows, "tokens_per_call": chunk, "runs": len(times)}


# --------------------------------------------------------------------------------------------------------- main
def _path_kernels(path: str):
    """The Kernels of a path on this backend: the reference path runs plain jnp + XLA; the kernel path runs the
    flags' kernels, and where "auto" finds no compiled kernel (CPU) their interpret mode, to show the plumbing."""
    import jax

    from gptoss_jax.kernels import REFERENCE, Kernels

    if path == "reference":
        return REFERENCE
    chosen = common.kernels_from_flags()
    on_gpu = jax.default_backend() == "gpu"
    resolved = chosen.resolve()
    moe = resolved.moe
    if chosen.moe == "auto" and moe == "reference":
        moe = "pallas_gpu_interpret"
    attention = resolved.attention
    if chosen.attention == "auto" and not on_gpu:
        attention = "pallas_gpu_interpret"
    return Kernels(moe, attention, resolved.dequant)


def _line(model_name: str, case: Case, path: str, r: dict, cost: dict) -> str:
    if "refused" in r:
        return f"{model_name:13s} {case.name:32s} {path:9s} REFUSED: {r['refused']}"
    ideal = max(cost["bytes"] / FLAGS.bandwidth, cost["flops"] / FLAGS.peak_flops)
    r["roofline_fraction"] = ideal / r["seconds"]
    r["bandwidth_fraction"] = cost["bytes"] / r["seconds"] / FLAGS.bandwidth
    r["achieved_tflops"] = cost["flops"] / r["seconds"] / 1e12
    return (f"{model_name:13s} {case.name:32s} {path:9s} {r['tokens_per_s']:11,.1f} tok/s {r['ms_per_step']:9.2f} ms "
            f"{_size(cost['bytes']):>10s} {r['bandwidth_fraction'] * 100:6.1f}% BW "
            f"{r['achieved_tflops']:7.1f} TFLOP/s {r['roofline_fraction'] * 100:6.1f}% roofline")


def case_sizes(backend: str) -> tuple[list[int], list[int]]:
    """(batch sizes, context lengths) to run: the flags, or where not given the backend's defaults."""
    given = {k: FLAGS[k].value if FLAGS[k].present else DEFAULT_CASES.get(backend, {}).get(k, FLAGS[k].value)
             for k in ("batch", "context")}
    try:
        batches, contexts = [int(b) for b in given["batch"]], [int(c) for c in given["context"]]
    except ValueError:
        raise app.UsageError(f"--batch and --context take integers, got {given['batch']} and "
                         f"{given['context']}") from None
    if not batches or not contexts or min(batches + contexts) < 1:
        raise app.UsageError("--batch and --context must be positive")
    return batches, contexts


def main(argv):
    del argv
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(FLAGS.mem_fraction))
    import jax
    import jax.numpy as jnp

    import gptoss_jax
    from gptoss_jax.cli import bench_program
    from gptoss_jax.config import get_config
    from gptoss_jax.kernels import REFERENCE
    from gptoss_jax.progress import Progress

    backend = jax.default_backend()
    model_names = FLAGS.model if FLAGS["model"].present else DEFAULT_MODELS.get(backend, "tiny")
    models = [get_config(m.strip()) for m in model_names.split(",") if m.strip()]
    unknown = set(FLAGS.modes) - {"prefill", "decode"} | set(FLAGS.paths) - {"reference", "kernel"}
    if unknown:
        raise app.UsageError(f"unknown mode/path {sorted(unknown)}; expected modes prefill,decode and "
                         f"paths reference,kernel")
    batches, contexts = case_sizes(backend)
    dtype = jnp.dtype(FLAGS.dtype)
    out_path = FLAGS.out or os.path.join("runs", f"bench-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    paths = {p: _path_kernels(p) for p in FLAGS.paths}
    device = jax.devices()[0]
    report = {"device": f"{device.platform}: {device.device_kind}", "jax": jax.__version__,
              "host": platform.node(), "when": datetime.datetime.now().isoformat(timespec="seconds"),
              "flags": {**{k: FLAGS[k].value for k in ("modes", "paths", "dtype", "moe_impl", "attention_impl", "moe_dequant",
                                                       "timed_steps", "warmup", "prefill_repeats", "prefill_tokens",
                                                       "bandwidth", "peak_flops")},
                        "batch": batches, "context": contexts},
              "paths": {p: {"moe": k.moe, "attention": k.attention} for p, k in paths.items()},
              "kernels": {p: str(k) for p, k in paths.items()}, "models": {}}
    print(f"gptoss bench on {report['device']} (jax {jax.__version__}); paths: "
          + ", ".join(f"{p} = {k}" for p, k in paths.items()))
    if backend == "cpu":
        print("   (CPU: the kernel path runs Pallas' interpreter; its speed means nothing, the plumbing is real)")
    cases = [Case(m, b, c) for m in FLAGS.modes for c in contexts for b in batches]
    for cfg in models:
        budget, source = device_memory_budget()
        plan = memory_plan(cfg, dtype)
        print_plan(cfg, plan, budget, source, dtype)
        entry = report["models"][cfg.name] = {"plan": plan, "budget_bytes": budget, "cases": []}
        entry["layer_pair_ops"] = bench_program.report_pair_ops(
            cfg, {p: REFERENCE if p == "reference" else common.kernels_from_flags() for p in paths}, FLAGS.dtype)
        if budget is not None and plan["weights_bytes"] > budget:
            print(f"   REFUSED: {cfg.name}'s weights ({_size(plan['weights_bytes'])}) exceed the budget")
            entry["refused"] = "weights exceed the device memory budget"
            continue
        t0 = time.perf_counter()
        params = params_lib.init_params(cfg, FLAGS.seed, show_progress=FLAGS.progress)
        print(f"   weights drawn on {device.platform} in {time.perf_counter() - t0:.1f}s")
        resident = plan["weights_bytes"]
        bar = Progress(len(cases) * len(paths), f"bench {cfg.name}", enabled=FLAGS.progress)
        for case in cases:
            cost = (decode_cost(cfg, case.batch, case.context, dtype.itemsize) if case.mode == "decode"
                    else prefill_cost(cfg, prefill_rows(case)[0], case.context, dtype.itemsize))
            row = {"mode": case.mode, "batch": case.batch, "context": case.context, "cost": cost, "paths": {}}
            for path, kernels in paths.items():
                model = gptoss_jax.GptOss(cfg, params, dtype=FLAGS.dtype, kernels=kernels)
                run = run_decode if case.mode == "decode" else run_prefill
                result = run(model, case, budget, resident)
                bar.update(1, f"{case.name} {path}")
                if FLAGS.progress:
                    sys.stderr.write("\n")
                print(_line(cfg.name, case, path, result, cost), flush=True)
                row["paths"][path] = result
            ref, ker = row["paths"].get("reference", {}), row["paths"].get("kernel", {})
            if "tokens_per_s" in ref and "tokens_per_s" in ker:
                row["kernel_over_reference"] = ker["tokens_per_s"] / ref["tokens_per_s"]
                print(f"{cfg.name:13s} {case.name:32s} kernel/reference = {row['kernel_over_reference']:.2f}x")
            entry["cases"].append(row)
            _write(out_path, report)
        bar.close()
        measured = [r["batch"] for r in entry["cases"] if r["mode"] == "decode"
                    and any("tokens_per_s" in x for x in r["paths"].values())]
        if measured:   # the engine around the last path's model at the largest decode batch that fit
            entry["engine"] = bench_program.report_engine_rounds(
                gptoss_jax.GptOss(cfg, params, dtype=FLAGS.dtype, kernels=paths[list(paths)[-1]]), max(measured))
        del params
    _write(out_path, report)
    print(f"results: {out_path}")
    refused = refusals(report)
    if refused:
        print(f"gptoss bench: {len(refused)} refused ({'; '.join(refused[:3])}{'; ...' if len(refused) > 3 else ''}): "
              f"nothing was measured there", file=sys.stderr)
        sys.exit(1)
