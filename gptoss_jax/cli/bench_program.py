"""What a compiled program holds, on any machine: the device ops a layer pair lowers to (the per-layer glue `gptoss
bench` reports beside its timings), and the largest buffers of a compiled program (the prefill memory check).

The model's decode forward (batch 1, one token a row, a cache of `context` slots) is lowered for an abstract GPU on
any machine, and the StableHLO ops inside the body of the scan over layer pairs are counted: every op once, nested
loops' bodies once, called functions at each call (constants and region terminators are not ops that run). The
count is what one pair costs in launches and fusion boundaries before XLA's optimizations, and the breakdown by op
name shows where glue (sorts, gathers, scatters, copies) sits.
"""
from __future__ import annotations

import collections
import math
import re

_FREE = {"stablehlo.constant", "stablehlo.return", "func.return"}


def _count(op, funcs: dict, out: collections.Counter) -> None:
    name = op.operation.name
    if name == "func.call":
        callee = str(op.attributes["callee"]).lstrip("@")
        for inner in funcs[callee].regions[0].blocks[0].operations:
            _count(inner, funcs, out)
        return
    if name not in _FREE:
        out[name] += 1
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                _count(inner, funcs, out)


def _outer_while(func):
    """The first top-level stablehlo.while of a function (or of the functions it calls): the pair scan."""
    for op in func.regions[0].blocks[0].operations:
        if op.operation.name == "stablehlo.while":
            return op
    return None


def layer_pair_ops(lowered) -> collections.Counter:
    """Ops by name in the body of the outermost while loop (the layer-pair scan) of a lowered forward."""
    module = lowered.compiler_ir("stablehlo")
    funcs = {str(op.attributes["sym_name"]).strip('"'): op for op in module.body.operations
             if op.operation.name == "func.func"}
    todo, seen = ["main"], set()
    while todo:                                     # main may reach the scan through calls
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        loop = _outer_while(funcs[name])
        if loop is not None:
            out: collections.Counter = collections.Counter()
            for block in loop.regions[1].blocks:   # regions: [condition, body]
                for inner in block.operations:
                    _count(inner, funcs, out)
            return out
        todo += [str(op.attributes["callee"]).lstrip("@") for op in funcs[name].regions[0].blocks[0].operations
                 if op.operation.name == "func.call"]
    raise ValueError("no layer-pair loop in the lowered forward")


def decode_pair_ops(cfg, kernels, *, context: int = 1024, dtype="bfloat16") -> collections.Counter:
    """Ops of one layer pair of a batch-1 decode step of `cfg`, lowered for an abstract H100 with `kernels`
    (resolved for "gpu": "auto" picks the GPU kernels; an interpret-mode name lowers its compiled kernel) and
    abstract weights."""
    import jax
    import jax.numpy as jnp

    from gptoss_jax import params as params_lib
    from gptoss_jax.kernels import Kernels, offline
    from gptoss_jax.model.transformer import KVCache, Transformer

    s = jax.ShapeDtypeStruct
    dt = jnp.dtype(dtype)
    on_gpu = Kernels(*(name.replace("_interpret", "") for name in (kernels.moe, kernels.attention, kernels.dequant)))
    module = Transformer(cfg, dt, None, on_gpu.resolve("gpu"))

    def forward(params, tokens, positions, cache, index):
        return module.apply({"params": params}, tokens, positions, cache, logits_index=index)

    args = (params_lib.abstract_params(cfg), s((1, 1), jnp.int32), s((1, 1), jnp.int32),
            KVCache.shapes(cfg, 1, context, dt), s((1,), jnp.int32))
    return layer_pair_ops(offline.lower_for("gpu", forward, *args))


def summary(ops: collections.Counter, top: int = 8) -> str:
    common = ", ".join(f"{name.split('.')[-1]} {n}" for name, n in ops.most_common(top))
    return f"{sum(ops.values())} ops ({common}, ...)"


_SHAPE = re.compile(r"\b(pred|s8|u8|s16|u16|s32|u32|s64|u64|bf16|f16|f32|f64)\[([0-9,]+)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4,
          "s64": 8, "u64": 8, "f64": 8}


def buffers(hlo_text: str) -> list[tuple[int, str]]:
    """(bytes, 'dtype[dims]') of every distinct array shape in an HLO module's text, largest first."""
    seen = {}
    for dtype, dims in _SHAPE.findall(hlo_text):
        shape = tuple(int(d) for d in dims.split(","))
        seen[f"{dtype}[{dims}]"] = math.prod(shape) * _BYTES[dtype]
    return sorted(((b, s) for s, b in seen.items()), reverse=True)


def quadratic_buffers(hlo_text: str, rows: int, cols: int) -> list[str]:
    """Attention-like shapes (rank >= 4: [batch, heads..., queries, keys]) with two dimensions whose product reaches
    rows * cols, e.g. a chunk x key-length score block; the MoE's 2-D row buffers are not counted."""
    out = []
    for _, shape in buffers(hlo_text):
        dims = sorted((int(d) for d in shape[shape.index("[") + 1:-1].split(",")), reverse=True)
        if len(dims) >= 4 and dims[0] * dims[1] >= rows * cols:
            out.append(shape)
    return out


def engine_rounds(model, slots: int, rounds: int = 6, prompt_len: int = 16) -> dict:
    """Round trips and host time of the engine decoding `slots` greedy requests (short prompts) for `rounds`
    rounds after a warm-up: device-to-host transfers a token step (a step = one token for every slot) and the
    host's time a round outside its waits for the device."""
    import numpy as np

    from gptoss_jax.engine import Engine, Request, SamplingParams

    steps = 8
    max_len = prompt_len + steps * (rounds + 4 + slots)
    engine = Engine(model, num_slots=slots, max_len=max_len, decode_steps=steps, prefill_chunk=max(prompt_len, 32))
    rng = np.random.default_rng(0)
    for i in range(slots):     # endless requests: the whole context (no default limit ends one mid-measurement)
        engine.submit(Request(rng.integers(0, model.cfg.vocab_size, prompt_len).tolist(),
                              SamplingParams(temperature=0.0, seed=i, max_tokens=max_len + 1 - prompt_len)))
    while not all(s is not None and s.decoding for s in engine.slots):
        engine.step()
    for _ in range(2):
        engine.step()
    before = dict(vars(engine.stats))
    for _ in range(rounds):
        engine.step()
    d = {k: v - before[k] for k, v in vars(engine.stats).items()}
    engine.close()
    token_steps = d["decode_tokens"] / slots
    return {"transfers_per_token_step": d["transfers"] / max(token_steps, 1e-9),
            "host_ms_per_round": d["host_s"] / rounds * 1e3, "tokens_per_round": d["decode_tokens"] / rounds}


def report_pair_ops(cfg, kernels_by_path: dict, dtype: str) -> dict:
    """Print and return the ops of a batch-1 decode layer pair on a GPU, per path (name -> Kernels)."""
    out = {}
    for path, kernels in kernels_by_path.items():
        ops = decode_pair_ops(cfg, kernels, dtype=dtype)
        out[path] = dict(ops)
        print(f"   layer pair, batch-1 decode on a GPU ({path} path): {summary(ops)}")
    return out


def report_engine_rounds(model, slots: int) -> dict:
    """Print and return engine_rounds for `slots` slots."""
    r = engine_rounds(model, slots)
    print(f"   engine, {slots} slots: {r['transfers_per_token_step']:.3f} round trips a token step, host "
          f"{r['host_ms_per_round']:.2f} ms a round ({r['tokens_per_round']:.0f} tokens a round)")
    return r
