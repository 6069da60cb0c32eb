"""The parts of benchmarks/gpu_suite.py. Each runs in its own process (a hang or crash costs only that part) and
records its results case by case through `Part.record`, so what it measured survives a time-box kill.

Nothing here times anything itself: kernels are timed by benchmarks/kernel_sweep.py's `seconds_per_call`, models by
`gptoss bench`'s runners (gptoss_jax/cli/bench.py), bytes and flops come from gptoss_jax/engine/cost.py.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import tempfile
import time
import traceback

CONTEXT = 1024                 # decode context of the end-to-end cases
PREFILL_PROMPT = 8192          # prompt length of the end-to-end prefill case
LONG_CONTEXT = 131072          # the 128k-token context reserved for the peak-memory case


@dataclasses.dataclass
class Part:
    name: str
    out: str                   # this part's JSON file
    deadline: float            # time.time() after which no new case starts
    small: bool
    interpret: bool
    bandwidth: float           # bytes/s (measured by the device part, else assumed)
    matmul_rate: float         # flop/s
    results: dict = dataclasses.field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.time()

    def record(self, key: str, value) -> None:
        """Add one result and rewrite the part's JSON (atomically)."""
        self.results[key] = value
        tmp = self.out + ".partial"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, default=str)
        os.replace(tmp, self.out)

    def cases(self, items, estimate_s: float = 0.0):
        """Yield items while the time box lasts; record what was skipped."""
        items = list(items)
        for i, item in enumerate(items):
            if self.left() < estimate_s:
                self.record("skipped", [str(x[0] if isinstance(x, tuple) else x) for x in items[i:]])
                print(f"  [{self.name}] time box: skipping {len(items) - i} remaining case(s)", flush=True)
                return
            yield item

    def attempt(self, key: str, fn):
        """Run fn() for one case; a failure is recorded under `key` and the part goes on."""
        t = time.time()
        try:
            value = fn()
        except Exception as e:                                   # noqa: BLE001 - reported, never swallowed silently
            value = {"error": f"{type(e).__name__}: {e}"[:2000], "traceback": traceback.format_exc()[-3000:]}
            print(f"  [{self.name}] {key}: FAILED {value['error'][:300]}", flush=True)
        if isinstance(value, dict):
            value.setdefault("seconds_spent", round(time.time() - t, 1))
        self.record(key, value)
        return value


def _kernels(interpret: bool, route: str | None = None):
    from gptoss_jax.kernels import Kernels

    if interpret:
        return Kernels("pallas_gpu_interpret", "pallas_gpu_interpret", route or "auto").resolve()
    return Kernels("auto", "auto", route or "auto").resolve()


# ------------------------------------------------------------------------------------------------------ device
def device(p: Part) -> None:
    import jax

    from benchmarks import kernel_sweep as ks

    d = jax.devices()[0]
    stats = d.memory_stats() or {}
    p.record("env", {"device": f"{d.platform}: {d.device_kind}", "devices": jax.device_count(),
                     "jax": jax.__version__, "memory_limit_bytes": stats.get("bytes_limit")})
    nbytes = (64 << 20) if p.small else (2 << 30)
    p.attempt("copy_bandwidth", lambda: {"bytes_per_s": ks.copy_bandwidth(nbytes, repeats=5), "buffer_bytes": nbytes})
    n = 512 if p.small else 8192
    p.attempt("matmul", lambda: {"flops_per_s": ks.matmul_rate(n, repeats=5), "n": n})


# ------------------------------------------------------------------------------------------------- correctness
def _moe_cases(small: bool, timing: bool):
    """(shape, tokens), most telling first: a time box cuts the tail."""
    from benchmarks.kernel_sweep import PREFILL_TOKENS as P

    if small:
        return [("small", 1)]
    if timing:
        return [("120b mlp1", 1), ("20b mlp1", 1), ("120b mlp2", 1), ("120b mlp1", 256), ("20b mlp1", 256),
                ("120b mlp1", 64), ("20b mlp1", 64), ("120b mlp1", 8), ("20b mlp1", 8), ("120b mlp1", P),
                ("20b mlp1", P)]
    return [("120b mlp1", 1), ("120b mlp2", 1), ("20b mlp1", 1), ("20b mlp2", 1), ("120b mlp1", 256),
            ("20b mlp2", 256), ("120b mlp1", P), ("120b mlp2", 64), ("20b mlp1", 8)]


def correctness(p: Part) -> None:
    """Before any timing: every MXFP4 route against the reference at real shapes, every code x scale byte through
    the kernel, and the decode-attention kernel against XLA."""
    import jax

    from benchmarks import kernel_sweep as ks
    from gptoss_jax.kernels import DEQUANT_ROUTES, moe_gpu

    for route in DEQUANT_ROUTES[:1] if p.small else DEQUANT_ROUTES:
        p.attempt(f"exact_decode {route}", lambda: ks.exact_decode_mismatches(route, p.interpret))
    for name, tokens in p.cases(_moe_cases(p.small, timing=False), estimate_s=5):
        prob = ks.moe_problem(name, tokens, iters=1)
        g, n, k = prob.w.shape
        for route in DEQUANT_ROUTES:
            tiles = moe_gpu.pick_tiles(4 * tokens, n, k, g, route)
            p.attempt(f"moe {name} tokens={tokens} {route}",
                      lambda: {"max_rel_err": ks.moe_error(prob, tiles, p.interpret), "tiles": str(tiles)})
        del prob
        jax.clear_caches()
    contexts = [64] if p.small else [1024, 8192]
    for ctx in p.cases(contexts, estimate_s=5):
        p.attempt(f"attention batch=8 context={ctx}",
                  lambda: {"max_rel_err": ks.attention_row(2 if p.small else 8, ctx, 1, p.interpret, p.small)["err"]})


# ---------------------------------------------------------------------------------------------------- MoE speed
def moe(p: Part) -> None:
    """Each route side by side (and the reference) at 120b/20b decode batches and a prefill chunk: GB/s over the
    routed experts' packed bytes as a fraction of the measured bandwidth; TFLOP/s against the measured matmul rate."""
    from benchmarks import kernel_sweep as ks
    from gptoss_jax.kernels import DEQUANT_ROUTES, moe_gpu

    iters, repeats = (2, 1) if p.small else (10, 3)
    for name, tokens in p.cases(_moe_cases(p.small, timing=True), estimate_s=10):
        prob = ks.moe_problem(name, tokens, iters)
        g, n, k = prob.w.shape
        impls = [(r, moe_gpu.pick_tiles(4 * tokens, n, k, g, r)) for r in DEQUANT_ROUTES]
        if tokens <= 256 or p.small:                            # the reference at prefill takes seconds a call
            impls.append(("reference", None))
        for label, tiles in impls:
            def run():
                sec = ks.moe_seconds(prob, tiles, p.interpret, repeats)
                gbs = prob.routed_bytes / sec
                return {"us": sec * 1e6, "gb_per_s": gbs / 1e9, "of_bandwidth": gbs / p.bandwidth,
                        "tflops": prob.flops / sec / 1e12, "of_matmul_rate": prob.flops / sec / p.matmul_rate,
                        "routed_bytes": prob.routed_bytes, "tiles": str(tiles) if tiles else "reference"}
            r = p.attempt(f"{name} tokens={tokens} {label}", run)
            if "us" in r:
                print(f"  [moe] {name:10s} tokens {tokens:5d} {label:9s} {r['us']:10.1f} us {r['gb_per_s']:8.1f} GB/s "
                      f"{r['of_bandwidth'] * 100:5.1f}% of BW", flush=True)
        del prob


# ----------------------------------------------------------------------------------------------------- attention
def attention(p: Part) -> None:
    from benchmarks import kernel_sweep as ks

    contexts = [64] if p.small else [1024, 8192, 32768]
    batches = [2] if p.small else [1, 8]
    for ctx in p.cases(contexts, estimate_s=5):
        for b in batches:
            r = p.attempt(f"batch={b} context={ctx}",
                          lambda: ks.attention_row(b, ctx, 1 if p.small else 5, p.interpret, p.small))
            if "xla_us" in r:
                print(f"  [attention] batch {b} context {ctx}: kernel {r['kernel_us']:.1f} us, xla {r['xla_us']:.1f} us"
                      f" ({r['speedup']:.2f}x), err {r['err']:.1e}", flush=True)


# ---------------------------------------------------------------------------------------------- end to end
def _budget() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("bytes_limit")


def _roofline(result: dict, cost: dict, p: Part) -> dict:
    ideal = max(cost["bytes"] / p.bandwidth, cost["flops"] / p.matmul_rate)
    return {**result, "bytes": cost["bytes"], "flops": cost["flops"], "roofline_s": ideal,
            "of_roofline": ideal / result["seconds"], "of_bandwidth": cost["bytes"] / result["seconds"] / p.bandwidth}


def kernel_launches(model, batch: int, context: int, max_len: int, budget, steps: int = 4) -> dict:
    """Device kernels a decode step runs, counted by JAX's profiler (kernel events on the GPU's stream lines)."""
    import jax
    import jax.numpy as jnp
    from jax.profiler import ProfileData

    from gptoss_jax.cli import bench
    from gptoss_jax.model.transformer import KVCache

    steps = min(steps, max_len - context - 2)
    step, refusal = bench._compile(model, batch, 1, KVCache.shapes(model.cfg, batch, max_len, model.dtype), budget,
                                   model.param_bytes(), "launch count")
    if refusal:
        return {"refused": refusal}
    cache = model.new_cache(batch, max_len)
    tokens = jnp.zeros((batch, 1), jnp.int32)
    first = jnp.zeros((batch,), jnp.int32)
    run = lambda i, cache: step(model.params, tokens, jnp.full((batch, 1), context + i, jnp.int32), cache, first)
    for i in range(2):
        logits, cache = run(i, cache)
    jax.block_until_ready(logits)
    trace_dir = tempfile.mkdtemp(prefix="gptoss_suite_trace_")
    with jax.profiler.trace(trace_dir):
        for i in range(steps):
            logits, cache = run(2 + i, cache)
        jax.block_until_ready(logits)
    [path] = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    kernels, lines = 0, set()
    for plane in ProfileData.from_file(path).planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        for line in plane.lines:
            if line.name.startswith("Stream"):
                names = [e.name for e in line.events]
                kernels += sum(1 for n in names if not n.lower().startswith(("memcpy", "memset")))
                lines.add(line.name)
    if not lines:
        return {"kernels_per_step": None, "note": f"no GPU device plane in the profile ({jax.default_backend()})",
                "steps": steps}
    return {"kernels_per_step": kernels / steps, "kernels_per_token": kernels / steps / batch, "steps": steps,
            "batch": batch, "stream_lines": sorted(lines)}


def _e2e(p: Part, preset: str) -> None:
    import jax
    import jax.numpy as jnp

    import gptoss_jax
    from gptoss_jax.cli import bench
    from gptoss_jax.config import get_config
    from gptoss_jax.engine.cost import decode_cost, prefill_cost

    cfg = get_config("tiny" if p.small else preset)
    kernels = _kernels(p.interpret)
    budget = _budget()
    t = time.time()
    model = gptoss_jax.random_model(cfg, kernels=kernels)
    resident = model.param_bytes()
    p.record("model", {"config": cfg.name, "kernels": str(kernels), "weights_bytes": resident,
                       "init_s": round(time.time() - t, 1), "budget_bytes": budget})
    print(f"  [{p.name}] {cfg.name} drawn in {time.time() - t:.1f}s; kernels {kernels}", flush=True)
    itemsize = jnp.dtype(model.dtype).itemsize
    steps = dict(warmup=1, timed_steps=2) if p.small else dict(warmup=2, timed_steps=10)
    context = 32 if p.small else CONTEXT
    prompt = 32 if p.small else PREFILL_PROMPT
    long = 256 if p.small else LONG_CONTEXT

    def decode(b):
        r = _roofline(bench.run_decode(model, bench.Case("decode", b, context), budget, resident, **steps),
                      decode_cost(cfg, b, context, itemsize), p)
        print(f"  [{p.name}] decode batch {b}: {r['tokens_per_s']:,.1f} tokens/s, {r['of_roofline'] * 100:.1f}% of "
              "the roofline", flush=True)
        return r

    def prefill():
        case = bench.Case("prefill", 1, prompt)
        rows, _ = bench.prefill_rows(case, prompt)
        r = _roofline(bench.run_prefill(model, case, budget, resident, warmup=1, repeats=1 if p.small else 2,
                                        prefill_tokens=prompt), prefill_cost(cfg, rows, prompt, itemsize), p)
        print(f"  [{p.name}] prefill {prompt}: {r['tokens_per_s']:,.0f} tokens/s, {r['of_roofline'] * 100:.1f}% of "
              "the roofline", flush=True)
        return r

    def launches():
        # the batch-1 decode program again (same cache length: a compilation-cache hit), under the profiler
        r = kernel_launches(model, 1, context, context + steps["warmup"] + steps["timed_steps"] + 1, budget,
                            steps=2 if p.small else 4)
        if r.get("kernels_per_step") is not None:
            print(f"  [{p.name}] {r['kernels_per_step']:.0f} device kernels a decode step", flush=True)
        return r

    # most telling first: the time box cuts the tail
    cases = [(f"decode batch=1 context={context}", lambda: decode(1)), ("kernel launches batch=1", launches)]
    if not p.small:
        cases += [(f"decode batch=256 context={context}", lambda: decode(256)),
                  (f"decode batch=64 context={context}", lambda: decode(64))]
    if preset == "gpt-oss-120b":
        cases.append((f"peak memory context={long}", lambda: peak_memory(model, long, budget)))
    cases.append((f"prefill prompt={prompt}", prefill))
    for key, fn in p.cases(cases, estimate_s=10):
        p.attempt(key, fn)
    del model
    jax.clear_caches()


def peak_memory(model, context: int, budget) -> dict:
    """Device memory with the weights resident and one row's cache of `context` tokens, after a decode step there."""
    import jax
    import jax.numpy as jnp

    from gptoss_jax.cli import bench
    from gptoss_jax.model.transformer import KVCache

    shapes = KVCache.shapes(model.cfg, 1, context, model.dtype)
    step, refusal = bench._compile(model, 1, 1, shapes, budget, model.param_bytes(), f"context {context}")
    if refusal:
        return {"refused": refusal}
    mem = step.memory_analysis()
    cache = model.new_cache(1, context)
    logits, cache = step(model.params, jnp.zeros((1, 1), jnp.int32), jnp.full((1, 1), context - 1, jnp.int32), cache,
                         jnp.zeros((1,), jnp.int32))
    jax.block_until_ready(logits)
    stats = jax.devices()[0].memory_stats() or {}
    return {"context": context, "weights_bytes": model.param_bytes(),
            "cache_bytes": sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes)),
            "step_temp_bytes": int(getattr(mem, "temp_size_in_bytes", 0) or 0),
            "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_limit": stats.get("bytes_limit")}


def e2e_20b(p: Part) -> None:
    _e2e(p, "gpt-oss-20b")


def e2e_120b(p: Part) -> None:
    _e2e(p, "gpt-oss-120b")


PARTS = {"device": device, "correctness": correctness, "moe": moe, "e2e_120b": e2e_120b, "e2e_20b": e2e_20b,
         "attention": attention}
