"""GPU check-and-time of the Pallas kernels at gpt-oss shapes (benchmarks/gpu_suite.py runs these as its kernel parts).

    PYTHONPATH=. python -m benchmarks.kernel_sweep                    # everything below, about 3-5 minutes on an H100
    PYTHONPATH=. python -m benchmarks.kernel_sweep --parts=moe --sweep  # also try other tile configs
    PYTHONPATH=. python -m benchmarks.kernel_sweep --interpret --parts=moe --small   # CPU smoke test of this script

One timing method (`seconds_per_call`): a jitted program runs --iters operations back to back (dispatch excluded);
the median of --repeats programs, divided by the operations. Parts:
- bandwidth: device copy bandwidth (read + write of a 2 GiB buffer) and the bf16 matmul rate, the denominators of
  every fraction below.
- moe: `pallas_gpu` with each MXFP4 decoding route (kernels.DEQUANT_ROUTES, each with its own default tiles) against
  the jnp reference for 120b/20b expert matmuls at decode batch 1/8/64/256 and a prefill chunk. Every iteration
  routes to different experts (drawn per iteration), so repeated calls cannot be served from L2. Correctness first
  (max |kernel - reference| / max |reference|, ~1e-6: both accumulate exact bf16 products in f32), then time: us a
  call, GB/s over the packed bytes of the experts actually routed, and that as a fraction of --bandwidth.
- scan: the model's situation: 18 layers of stacked 120b mlp1 weights in a lax.scan, batch-1 decode routing.
  "sliced" passes each layer's slice; "indexed" passes the stacked weights and the layer index
  (kernels.expert_matmul(..., layer=i), what the model does). If sliced is far slower, XLA copies every layer's whole
  expert tensor each step (it does on CPU: see kernels/README.md).
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
from gptoss_jax.kernels import DEQUANT_ROUTES, attention_gpu, moe_gpu
from gptoss_jax.kernels.moe_gpu import GpuTiles
from gptoss_jax.model.attention import attend

H = I = 2880
# name -> (experts G, N, K)
MOE_SHAPES = {"120b mlp1": (128, 2 * I, H), "120b mlp2": (128, H, I), "20b mlp1": (32, 2 * I, H),
              "20b mlp2": (32, H, I), "small": (8, 256, 128)}
PREFILL_TOKENS = 2048                   # the "prefill chunk" of the MoE part: 8192 routed rows


def seconds_per_call(fn, *args, repeats: int, calls: int = 1) -> float:
    """Median seconds of fn(*args) (compiled by a first, untimed call) over `repeats` runs, divided by `calls`
    (the operations fn runs back to back)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times) / calls


# ------------------------------------------------------------------------------------------------------ device
def copy_bandwidth(nbytes: int = 2 << 30, repeats: int = 5) -> float:
    """Bytes/s of a device-to-device copy (read + write counted), a buffer of `nbytes`."""
    x = jnp.zeros((nbytes // 4,), jnp.uint32)
    copy = jax.jit(lambda a: a + jnp.uint32(1))             # one read and one write of every byte
    return 2 * nbytes / seconds_per_call(copy, x, repeats=repeats)


def matmul_rate(n: int = 8192, repeats: int = 5) -> float:
    """bf16 flop/s of an n x n x n matmul (f32 accumulation) on random data."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    mm = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
    return 2 * n ** 3 / seconds_per_call(mm, a, repeats=repeats)


# --------------------------------------------------------------------------------------------------------- MoE
@dataclasses.dataclass
class MoeProblem:
    name: str
    tokens: int
    x: jax.Array              # [M, K] bf16, M = 4 x tokens
    w: mxfp4.Mxfp4Weight      # [G, N, K]
    sizes: jax.Array          # [iters, G] a routing per iteration

    @property
    def routed_bytes(self) -> float:
        g, n, k = self.w.shape
        return _routed_bytes(np.asarray(self.sizes), n, k)

    @property
    def flops(self) -> float:
        return 2.0 * self.x.shape[0] * self.w.shape[1] * self.w.shape[2]


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


def moe_problem(name: str, tokens: int, iters: int, key=None) -> MoeProblem:
    g, n, k = MOE_SHAPES[name]
    key = jax.random.key(0) if key is None else key
    w = _weights(key, g, n, k)
    sizes = _routings(jax.random.fold_in(key, tokens), iters, tokens, g)
    x = jax.random.normal(jax.random.fold_in(key, 7), (4 * tokens, k), jnp.bfloat16)
    return MoeProblem(name, tokens, x, w, sizes)


def moe_error(p: MoeProblem, tiles: GpuTiles, interpret: bool) -> float:
    """max |kernel - reference| / max |reference| on the first routing."""
    ref = jax.jit(lambda x, w, gs: kernels.expert_matmul(x, w, gs, impl="reference"))(p.x, p.w, p.sizes[0])
    got = moe_gpu.mxfp4_matmul_pallas(p.x, p.w.blocks, p.w.scales, p.sizes[0], tiles=tiles, interpret=interpret)
    return float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))


def moe_seconds(p: MoeProblem, tiles: GpuTiles | None, interpret: bool, repeats: int) -> float:
    """Seconds a call of the kernel (tiles) or of the reference (tiles=None), one routing an iteration."""
    def program(x, w, sizes):
        def body(acc, gs):
            if tiles is None:
                y = kernels.expert_matmul(x, w, gs, impl="reference")
            else:
                y = moe_gpu.mxfp4_matmul_pallas(x, w.blocks, w.scales, gs, tiles=tiles, interpret=interpret)
            return acc + y[0, 0], None
        return lax.scan(body, jnp.float32(0), sizes)[0]
    return seconds_per_call(jax.jit(program), p.x, p.w, p.sizes, repeats=repeats, calls=p.sizes.shape[0])


def exact_decode_mismatches(route: str, interpret: bool) -> dict:
    """Every code byte under every scale byte through the kernel (x = identity, so out[m, n] = W[n, m]) against
    mxfp4.unpack: mismatched values, split into normal and subnormal results (a device whose dot flushes subnormal
    operands shows the latter), and against the reference path."""
    n, k = 256, 512                                     # row n: scale byte n; its 16 blocks hold every code byte
    blocks = jnp.broadcast_to(jnp.arange(256, dtype=jnp.uint8).reshape(1, 1, 16, 16), (1, n, 16, 16))
    scales = jnp.broadcast_to(jnp.arange(n, dtype=jnp.uint8)[None, :, None], (1, n, 16))
    x = jnp.eye(k, dtype=jnp.bfloat16)
    gs = jnp.asarray([k], jnp.int32)
    tiles = moe_gpu.pick_tiles(k, n, k, 1, route)
    got = np.asarray(moe_gpu.mxfp4_matmul_pallas(x, blocks, scales, gs, tiles=tiles, interpret=interpret)).T
    want = np.asarray(mxfp4.unpack(blocks[0], scales[0], jnp.bfloat16).astype(jnp.float32))
    finite = np.isfinite(want).all(axis=1)               # rows with an inf: inf * 0 makes NaN in any dot
    bad = (got != want) & ~(np.isnan(got) & np.isnan(want)) & finite[:, None]
    tiny = (np.abs(want) < np.finfo(np.float32).tiny) & (want != 0)
    return {"values": int(finite.sum()) * k, "mismatch_normal": int((bad & ~tiny).sum()),
            "mismatch_subnormal": int((bad & tiny).sum())}


def moe_part(args):
    names = ["small"] if args.small else ["120b mlp1", "120b mlp2", "20b mlp1"]
    batches = [1, 8] if args.small else [1, 8, 64, 256, PREFILL_TOKENS]
    print(f"\n== moe: kernel vs reference ({args.iters} routed calls a program)")
    print(f"{'case':12s} {'tokens':>6s} {'tiles':70s} {'err':>8s} {'ref us':>9s} {'kern us':>9s} {'x':>6s} "
          f"{'GB/s':>7s} {'of BW':>6s}")
    for name in names:
        for b in batches:
            p = moe_problem(name, b, args.iters)
            m, (g, n, k) = 4 * b, p.w.shape
            configs = [moe_gpu.pick_tiles(m, n, k, g, r) for r in DEQUANT_ROUTES] + (SWEEP if args.sweep else [])
            errors = [moe_error(p, t, args.interpret) for t in configs]          # correctness before any timing
            ref_t = moe_seconds(p, None, args.interpret, args.repeats)
            for tiles, err in zip(configs, errors):
                kt = moe_seconds(p, tiles, args.interpret, args.repeats)
                gbs = p.routed_bytes / kt / 1e9
                print(f"{name:12s} {b:6d} {str(tiles):70s} {err:8.1e} {ref_t * 1e6:9.1f} {kt * 1e6:9.1f} "
                      f"{ref_t / kt:6.1f} {gbs:7.0f} {gbs * 1e9 / args.bandwidth * 100:5.1f}%", flush=True)


SWEEP = [GpuTiles(16, 64, 4, 4, 3), GpuTiles(16, 64, 8, 4, 3), GpuTiles(16, 128, 4, 8, 3), GpuTiles(16, 128, 8, 8, 2),
         GpuTiles(16, 64, 4, 4, 4, split_k=4), GpuTiles(16, 128, 8, 8, 3, split_k=4), GpuTiles(32, 128, 8, 8, 3),
         GpuTiles(64, 128, 8, 8, 2), GpuTiles(128, 128, 4, 8, 3), GpuTiles(128, 128, 2, 8, 3),
         GpuTiles(16, 64, 4, 4, 4, "e4m3", split_k=2), GpuTiles(16, 64, 4, 4, 4, "asm", split_k=4)]


# ------------------------------------------------------------------------------------------------------- scan
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
        t = seconds_per_call(fn, x, w, sizes, repeats=args.repeats)
        print(f"{name:8s} {t * 1e3:8.3f} ms for {layers} layers = {routed / t / 1e9:7.0f} GB/s over routed bytes "
              f"({routed / 1e9:.3f} GB); a full copy of every layer would move {2 * w.nbytes / 1e9:.1f} GB", flush=True)


# -------------------------------------------------------------------------------------------------- attention
def attention_row(batch: int, context: int, repeats: int, interpret: bool, small: bool = False) -> dict:
    """Decode attention over a full layer of 120b's cache shape: kernel vs the XLA `attend` path."""
    p, nkv, d, nq = (18, 8, 64, 64) if not small else (2, 2, 16, 8)
    key = jax.random.key(2)
    k_cache = jax.random.normal(key, (p, batch, context, nkv, d), jnp.bfloat16)
    v_cache = jax.random.normal(jax.random.fold_in(key, 1), (p, batch, context, nkv, d), jnp.bfloat16)
    q = jax.random.normal(jax.random.fold_in(key, 2), (batch, nq, d), jnp.bfloat16)
    sinks = jax.random.normal(jax.random.fold_in(key, 3), (nq,), jnp.float32)
    pos = jnp.full((batch,), context - 1, jnp.int32)

    @jax.jit
    def xla(q, kc, vc, layer):
        k_pos = jnp.broadcast_to(jnp.arange(context)[None], (batch, context))
        return attend(q[:, None], kc[layer], vc[layer], pos[:, None], k_pos, sinks, None)[:, 0]

    @jax.jit
    def kern(q, kc, vc, layer):
        return attention_gpu.decode_attention(q, kc, vc, layer, jnp.zeros_like(pos), pos + 1, sinks,
                                              interpret=interpret)

    layer = jnp.int32(p // 2)
    want, got = xla(q, k_cache, v_cache, layer), kern(q, k_cache, v_cache, layer)
    err = float(jnp.max(jnp.abs(got.astype(jnp.float32) - want.astype(jnp.float32)))
                / jnp.max(jnp.abs(want.astype(jnp.float32))))
    tx = seconds_per_call(xla, q, k_cache, v_cache, layer, repeats=repeats)
    tk = seconds_per_call(kern, q, k_cache, v_cache, layer, repeats=repeats)
    cache_bytes = 2 * batch * context * nkv * d * 2
    return {"batch": batch, "context": context, "err": err, "xla_us": tx * 1e6, "kernel_us": tk * 1e6,
            "speedup": tx / tk, "kernel_gbs": cache_bytes / tk / 1e9}


def attention_part(args):
    print("\n== decode attention: kernel vs XLA attend (full-attention layer of 120b's shape)")
    print(f"{'batch':>5s} {'context':>7s} {'err':>8s} {'xla us':>9s} {'kernel us':>10s} {'x':>6s} {'GB/s':>7s}")
    for b in ([1, 8, 64] if not args.small else [1, 2]):
        for ctx in ([1024, 8192] if not args.small else [64]):
            r = attention_row(b, ctx, args.repeats, args.interpret, args.small)
            print(f"{b:5d} {ctx:7d} {r['err']:8.1e} {r['xla_us']:9.1f} {r['kernel_us']:10.1f} {r['speedup']:6.1f} "
                  f"{r['kernel_gbs']:7.0f}", flush=True)


def bandwidth_part(args):
    nbytes = (64 << 20) if args.small else (2 << 30)
    bw = copy_bandwidth(nbytes, args.repeats)
    rate = matmul_rate(512 if args.small else 8192, args.repeats)
    print(f"\n== device: copy bandwidth {bw / 1e12:.3f} TB/s (read + write of {nbytes >> 20} MiB), bf16 matmul "
          f"{rate / 1e12:.1f} TFLOP/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="bandwidth,moe,scan,attention")
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
    parts = {"bandwidth": bandwidth_part, "moe": moe_part, "scan": scan_part, "attention": attention_part}
    for name in args.parts.split(","):
        parts[name](args)


if __name__ == "__main__":
    main()
