"""Expert bytes the GPU MoE kernel reads, over the routed experts' packed bytes, from its window schedule (CPU).

    PYTHONPATH=. python -m benchmarks.expert_reads [--routings=16] [--skew=0.0] [--batches=1,8,64,128,256,512]

A window holds at most tm rows of one expert and reads that expert's whole weight matrix, so an expert with s routed
rows is read ceil(s / tm) times: ratio = sum over experts of ceil(s / tm) / experts hit (1.0 = each routed expert
read once). For each model and batch it draws --routings routings (each token picks 4 distinct experts; --skew > 0
draws them from a power law p(e) ~ 1 / (1 + rank)^skew instead of uniformly, as a trained router's uneven load
would), runs the kernel's own schedule (groups.window_of_visit over its whole grid) and prints the ratio with tm
sized from the mean rows an expert (the old rule) and with tm from the routing (groups.window_rows, what pick_tiles
uses). Target: <= 1.1 at 20b batch 256 and 120b batch 512.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from gptoss_jax.kernels import groups, moe_gpu

MODELS = {"gpt-oss-20b": 32, "gpt-oss-120b": 128}
TOP_K = 4
H = 2880


def routing(key, tokens: int, g: int, skew: float) -> jax.Array:
    """[g] rows an expert for `tokens` tokens picking TOP_K distinct experts (Gumbel top-k of the log weights)."""
    logits = -skew * jnp.log1p(jnp.arange(g, dtype=jnp.float32))
    noisy = logits + jax.random.gumbel(key, (tokens, g))
    top = jax.lax.top_k(noisy, TOP_K)[1]
    return jnp.bincount(top.reshape(-1), length=g).astype(jnp.int32)


def mean_rule_tm(m: int, g: int) -> int:
    """The old rule: the power of two (16..128) at or above the mean rows an expert."""
    rows = -(-m // max(1, min(g, m)))
    return min(128, max(16, 1 << (rows - 1).bit_length()))


def ratio(m: int, g: int, tm: int, sizes: list[jax.Array]) -> float:
    reads = sum(int(groups.windows_per_group(s, m, tm).sum()) for s in sizes)
    hit = sum(int((s > 0).sum()) for s in sizes)
    return reads / hit


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routings", type=int, default=16, help="routings drawn a case")
    ap.add_argument("--skew", type=float, default=0.0, help="power-law expert popularity (0 = uniform)")
    ap.add_argument("--batches", default="1,8,64,128,256,512", help="decode batch sizes (tokens)")
    ap.add_argument("--prefill", type=int, default=8192, help="tokens of a prefill call (0: none)")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    print(f"expert bytes read / routed experts' bytes, kernel window schedule, {args.routings} routings a case, "
          f"top-{TOP_K}, skew {args.skew}")
    print(f"{'model':13s} {'tokens':>7s} {'rows':>6s} | {'tm(mean)':>8s} {'ratio':>6s} | {'tm(routing)':>11s} "
          f"{'ratio':>6s} {'expected':>8s}")
    rows = []
    key = jax.random.key(0)
    for model, g in MODELS.items():
        for tokens, prefill in [(b, False) for b in batches] + ([(args.prefill, True)] if args.prefill else []):
            m = TOP_K * tokens
            sizes = [routing(jax.random.fold_in(key, 1000 * tokens + i), tokens, g, args.skew)
                     for i in range(args.routings)]
            old_tm, new_tm = mean_rule_tm(m, g), moe_gpu.pick_tiles(m, 2 * H, H, g).tm
            r = {"model": model, "tokens": tokens, "prefill": prefill, "rows": m, "tm_mean": old_tm,
                 "ratio_mean": ratio(m, g, old_tm, sizes), "tm_routing": new_tm,
                 "ratio_routing": ratio(m, g, new_tm, sizes),
                 "expected_uniform": groups.expected_reads(m, g, new_tm)}
            rows.append(r)
            tag = " (prefill: compute-bound, re-reads expected)" if prefill else ""
            print(f"{model:13s} {tokens:7d} {m:6d} | {old_tm:8d} {r['ratio_mean']:6.3f} | {new_tm:11d} "
                  f"{r['ratio_routing']:6.3f} {r['expected_uniform']:8.3f}{tag}", flush=True)
    return rows


if __name__ == "__main__":
    main()
