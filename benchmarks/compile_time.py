"""Compile time of the full gpt-oss forward, with abstract weights (nothing is allocated), for the released configs
and for the 120b shape at several depths: the model scans over layer pairs, so compile time should stay flat as
layers are added.

    PYTHONPATH=. python -m benchmarks.compile_time                  # CPU is fine: XLA compiles, nothing runs
    PYTHONPATH=. python -m benchmarks.compile_time --depths=2,36 --shapes=decode

For each config and shape it times jax.jit(forward).lower(ShapeDtypeStructs) and .compile() separately and prints
one line each, plus the compiled program's temporary memory. Shapes: prefill = one 128-token prompt (no cache),
decode = one token a row for 8 rows against a 1024-slot cache. The MoE/attention kernels are the backend's
defaults (on CPU: the jnp reference and XLA attention).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import gptoss_jax
from gptoss_jax import params as params_lib
from gptoss_jax.config import PRESETS
from gptoss_jax.model.transformer import KVCache

S = jax.ShapeDtypeStruct


def shapes_for(cfg, shape: str):
    if shape == "prefill":
        return S((1, 128), jnp.int32), S((1, 128), jnp.int32), None, S((1,), jnp.int32)
    return S((8, 1), jnp.int32), S((8, 1), jnp.int32), KVCache.shapes(cfg, 8, 1024), S((8,), jnp.int32)


def time_compile(cfg, shape: str) -> dict:
    model = gptoss_jax.GptOss(cfg, None)
    args = (params_lib.abstract_params(cfg), *shapes_for(cfg, shape))
    t0 = time.perf_counter()
    lowered = model._apply.lower(*args, kv_len=None)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", 0) or 0
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "temp_bytes": temp}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="gpt-oss-20b,gpt-oss-120b")
    ap.add_argument("--depths", default="2,12,24,36", help="layer counts of the 120b shape to compare")
    ap.add_argument("--shapes", default="prefill,decode")
    args = ap.parse_args()
    runs = [(PRESETS[name], name) for name in args.configs.split(",") if name]
    base = PRESETS["gpt-oss-120b"]
    runs += [(base.replace(num_layers=int(d), name=f"120b-shape-{d}L"), f"120b shape, {d} layers")
             for d in args.depths.split(",") if d]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; abstract weights, nothing allocated")
    print(f"{'config':26s} {'shape':8s} {'lower s':>8s} {'compile s':>10s} {'temp MB':>9s}")
    for cfg, label in runs:
        for shape in args.shapes.split(","):
            r = time_compile(cfg, shape)
            print(f"{label:26s} {shape:8s} {r['lower_s']:8.2f} {r['compile_s']:10.2f} {r['temp_bytes'] / 1e6:9.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
