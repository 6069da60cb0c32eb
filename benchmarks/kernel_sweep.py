"""GPU check-and-time of the Pallas kernels at gpt-oss shapes: run this first on a GPU (nothing was measured yet).

    PYTHONPATH=. python -m benchmarks.kernel_sweep                    # everything below, about 3-5 minutes on an H100
    PYTHONPATH=. python -m benchmarks.kernel_sweep --parts=moe --sweep  # also try other tile configs
    PYTHONPATH=. python -m benchmarks.kernel_sweep --interpret --parts=moe --small   # CPU smoke test of this script

Parts (each prints a table; numbers are medians of --repeats timed programs, each program running --iters
operations back to back inside one jit, so dispatch overhead is excluded):
- moe: `pallas_gpu` (default tiles with each dequantization, "e4m3" and "asm") against the jnp reference for 120b and 20b expert matmuls at decode batch 1/8/64/256 and a
  prefill chunk. Every iteration routes to different experts (drawn per iteration), so repeated calls cannot be
  served from L2. Correctness first (max |kernel - reference| / max |reference|, must be ~1e-6: both accumulate
  exact bf16 products in f32), then time: us a call, GB/s over the packed bytes of the experts actually routed,
  and that as a fraction of --bandwidth.
- scan: the model's situation: 18 layers of stacked 120b mlp1 weights in a lax.scan, batch-1 decode routing.
  "sliced" passes each layer's slice (what nn.scan does today); "indexed" passes the stacked weights and the layer
  index (kernels.expert_matmul(..., layer=i)). If sliced is far slower, XLA copies every layer's whole expert
  tensor each step (it does on CPU: see kernels/README.md) and the model should pass stacked weights.
- attention: the decode-attention kernel against the XLA `attend` path on 120b's cache shape (18 full layers,
  8 KV heads, head dim 64) at batch 1/8/64, contexts 1k and 8k.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gptoss_jax import kernels, mxfp4
from gptoss_jax.kernels import attention_gpu, moe_gpu
from gptoss_jax.kernels.moe_gpu import GpuTiles
from gptoss_jax.model.attention import attend

H = I = 2880


def _time(fn, *args, repeats: int) -> float:
    """Median seconds of fn(*args) (already compiled by a first call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _weights(key, g, n, k, layers=None):
    lead = () if layers is None else (layers,)
    blocks = jax.random.bits(key, (*lead, g, n, k // 32, 16), jnp.uint8)
    scales = jax.random.randint(jax.random.fold_in(key, 1), (*lead, g, n, k // 32), 116, 125).astype(jnp.uint8)
    return mxfp4.Mxfp4Weight(blocks, scales)


def _routings(key, iters, tokens, g, k=4):
    """[iters, g] group sizes: each token picks k distinct experts, fresh every iteration."""
    scores = jax.random.uniform(key, (iters, tokens, g))
    top = lax.top_k(scores, k)[1]
    return jax.vmap(lambda t: jnp.bincount(t.reshape(-1), length=g))(top).astype(jnp.int32)


def _routed_bytes(sizes: np.ndarray, n: int, k: int) -> float:
    per_expert = n * k // 2 + n * k // 32
    return float((sizes > 0).sum(axis=1).mean()) * per_expert


def moe_part(args):
    cases = [("120b mlp1", 128, 2 * I, H), ("120b mlp2", 128, H, I), ("20b mlp1", 32, 2 * I, H)]
    batches = [1, 8, 64, 256] if not args.small else [1, 8]
    if args.small:
        cases = [("small", 8, 256, 128)]
    key = jax.random.key(0)
    print(f"\n== moe: kernel vs reference ({args.iters} routed calls a program)")
    print(f"{'case':12s} {'rows':>5s} {"tiles":58s} {'err':>8s} {'ref us':>9s} {'kern us':>9s} {'x':>6s} "
          f"{'GB/s':>7s} {'of BW':>6s}")
    for name, g, n, k in cases:
        w = _weights(key, g, n, k)
        for b in batches + ([] if args.small else [2048]):
            m = 4 * b
            sizes = _routings(jax.random.fold_in(key, b), args.iters, b, g)
            x = jax.random.normal(jax.random.fold_in(key, 7), (m, k), jnp.bfloat16)

            def program(impl, tiles, x, w, sizes):
                def body(acc, gs):
                    if impl == "reference":
                        y = kernels.expert_matmul(x, w, gs, impl="reference")
                    else:
                        y = moe_gpu.mxfp4_matmul_pallas(x, w.blocks, w.scales, gs, tiles=tiles,
                                                        interpret=args.interpret)
                    return acc + y[0, 0], None
                return lax.scan(body, jnp.float32(0), sizes)[0]

            ref_once = jax.jit(lambda x, w, gs: kernels.expert_matmul(x, w, gs, impl="reference"))(x, w, sizes[0])
            ref_t = _time(jax.jit(functools.partial(program, "reference", None)), x, w, sizes,
                          repeats=args.repeats) / args.iters
            default = moe_gpu.pick_tiles(m, n, k, g)
            other = dataclasses.replace(default, dequant="asm" if default.dequant == "e4m3" else "e4m3")
            configs = [default, other] + (SWEEP if args.sweep else [])
            for tiles in configs:
                t = tiles or moe_gpu.pick_tiles(m, n, k, g)
                got = moe_gpu.mxfp4_matmul_pallas(x, w.blocks, w.scales, sizes[0], tiles=t, interpret=args.interpret)
                err = float(jnp.max(jnp.abs(got - ref_once)) / jnp.max(jnp.abs(ref_once)))
                kt = _time(jax.jit(functools.partial(program, "kernel", t)), x, w, sizes,
                           repeats=args.repeats) / args.iters
                gbs = _routed_bytes(np.asarray(sizes), n, k) / kt / 1e9
                print(f"{name:12s} {m:5d} {str(t):58s} {err:8.1e} {ref_t * 1e6:9.1f} {kt * 1e6:9.1f} "
                      f"{ref_t / kt:6.1f} {gbs:7.0f} {gbs * 1e9 / args.bandwidth * 100:5.1f}%", flush=True)


SWEEP = [GpuTiles(16, 64, 4, 4, 3), GpuTiles(16, 64, 8, 4, 3), GpuTiles(16, 128, 4, 8, 3), GpuTiles(16, 128, 2, 4, 4),
         GpuTiles(16, 32, 4, 2, 4), GpuTiles(16, 64, 4, 4, 4, split_k=2), GpuTiles(16, 64, 4, 4, 4, split_k=4),
         GpuTiles(16, 64, 4, 4, 4, "asm", split_k=4), GpuTiles(32, 64, 4, 4, 4), GpuTiles(64, 128, 2, 4, 3),
         GpuTiles(128, 128, 2, 8, 3), GpuTiles(128, 128, 4, 8, 3), GpuTiles(128, 256, 2, 8, 3)]


def scan_part(args):
    layers, g, n, k = (18, 128, 2 * I, H) if not args.small else (3, 8, 256, 128)
    impl = args.impl or ("pallas_gpu_interpret" if args.interpret else "pallas_gpu")

    @jax.jit
    def sliced(x, w, sizes):
        def body(acc, layer_w_gs):
            lw, gs = layer_w_gs
            return acc + kernels.expert_matmul(x, lw, gs, impl=impl)[0, 0], None
        return lax.scan(body, jnp.float32(0), (w, sizes))[0]

    @jax.jit
    def indexed(x, w, sizes):
        def body(acc, i):
            return acc + kernels.expert_matmul(x, w, sizes[i], impl=impl, layer=i)[0, 0], None
        return lax.scan(body, jnp.float32(0), jnp.arange(layers))[0]

    S = jax.ShapeDtypeStruct
    abstract = (S((4, k), jnp.bfloat16), mxfp4.Mxfp4Weight(S((layers, g, n, k // 32, 16), jnp.uint8),
                                                           S((layers, g, n, k // 32), jnp.uint8)),
                S((layers, g), jnp.int32))
    print(f"\n== scan over {layers} layers of stacked expert weights, MoE impl {impl}: XLA's temporaries "
          "(a copy of one layer's experts is " f"{(n * k // 2 + n * k // 32) * g / 1e9:.2f} GB)")
    for name, fn in (("sliced", sliced), ("indexed", indexed)):
        mem = fn.lower(*abstract).compile().memory_analysis()
        print(f"{name:8s} temp {mem.temp_size_in_bytes / 1e9:8.3f} GB")
    if args.analyze_only:
        return
    key = jax.random.key(1)
    w = _weights(key, g, n, k, layers=layers)
    x = jax.random.normal(key, (4, k), jnp.bfloat16)
    sizes = _routings(key, layers, 1, g)
    a, b = sliced(x, w, sizes), indexed(x, w, sizes)
    routed = _routed_bytes(np.asarray(sizes), n, k) * layers
    print(f"timing (batch-1 decode routing); results agree: {bool(jnp.allclose(a, b, rtol=1e-5))}")
    for name, fn in (("sliced", sliced), ("indexed", indexed)):
        t = _time(fn, x, w, sizes, repeats=args.repeats)
        print(f"{name:8s} {t * 1e3:8.3f} ms for {layers} layers = {routed / t / 1e9:7.0f} GB/s over routed bytes "
              f"({routed / 1e9:.3f} GB); a full copy of every layer would move {2 * w.nbytes / 1e9:.1f} GB", flush=True)


def attention_part(args):
    p, nkv, d, nq = (18, 8, 64, 64) if not args.small else (2, 2, 16, 8)
    key = jax.random.key(2)
    print("\n== decode attention: kernel vs XLA attend (full-attention layer of 120b's shape)")
    print(f"{'batch':>5s} {'context':>7s} {'err':>8s} {'xla us':>9s} {'kernel us':>10s} {'x':>6s} {'GB/s':>7s}")
    for b in ([1, 8, 64] if not args.small else [1, 2]):
        for ctx in ([1024, 8192] if not args.small else [64]):
            k_cache = jax.random.normal(key, (p, b, ctx, nkv, d), jnp.bfloat16)
            v_cache = jax.random.normal(jax.random.fold_in(key, 1), (p, b, ctx, nkv, d), jnp.bfloat16)
            q = jax.random.normal(jax.random.fold_in(key, 2), (b, nq, d), jnp.bfloat16)
            sinks = jax.random.normal(jax.random.fold_in(key, 3), (nq,), jnp.float32)
            pos = jnp.full((b,), ctx - 1, jnp.int32)

            @jax.jit
            def xla(q, kc, vc, layer):
                k_pos = jnp.broadcast_to(jnp.arange(ctx)[None], (b, ctx))
                return attend(q[:, None], kc[layer], vc[layer], pos[:, None], k_pos, sinks, None)[:, 0]

            @jax.jit
            def kern(q, kc, vc, layer):
                return attention_gpu.decode_attention(q, kc, vc, layer, jnp.zeros_like(pos), pos + 1, sinks,
                                                      interpret=args.interpret)

            layer = jnp.int32(p // 2)
            want, got = xla(q, k_cache, v_cache, layer), kern(q, k_cache, v_cache, layer)
            err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
            tx = _time(xla, q, k_cache, v_cache, layer, repeats=args.repeats)
            tk = _time(kern, q, k_cache, v_cache, layer, repeats=args.repeats)
            gbs = 2 * b * ctx * nkv * d * 2 / tk / 1e9
            print(f"{b:5d} {ctx:7d} {err:8.1e} {tx * 1e6:9.1f} {tk * 1e6:10.1f} {tx / tk:6.1f} {gbs:7.0f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="moe,scan,attention")
    ap.add_argument("--sweep", action="store_true", help="also time the SWEEP tile configs")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bandwidth", type=float, default=3.16e12)
    ap.add_argument("--interpret", action="store_true", help="run the kernels in interpret mode (CPU smoke test)")
    ap.add_argument("--small", action="store_true", help="tiny shapes (with --interpret on CPU)")
    ap.add_argument("--impl", default=None, help="scan part: MoE impl (default pallas_gpu, or its interpret mode)")
    ap.add_argument("--analyze_only", action="store_true", help="scan part: XLA memory analysis only (any machine)")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    parts = {"moe": moe_part, "scan": scan_part, "attention": attention_part}
    for name in args.parts.split(","):
        parts[name](args)


if __name__ == "__main__":
    main()
