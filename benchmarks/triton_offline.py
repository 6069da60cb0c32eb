"""Compile the GPU kernels' Triton IR for sm_90 WITHOUT a GPU and report what the hardware would run.

    PYTHONPATH=. python -m benchmarks.triton_offline [--triton_python=/path/to/python-with-triton] [--out=DIR]

Lowers each kernel at gpt-oss shapes for an abstract H100 (gptoss_jax.kernels.offline), writes the Triton IR,
compiles it with a pip Triton (here: `python -c "import triton"` must work in --triton_python, default this
interpreter) for sm_90, and prints per kernel: registers, spills, shared memory, the hot loop's SASS instruction
count and mix (HGMMA = Hopper tensor cores, F2FP/F2F = conversions, LDGSTS = async global->shared copies), and
instructions per dequantized weight a thread (the ALU budget at the bandwidth limit: about 4.9 at 3.16 TB/s,
132 SMs x 4 warp schedulers x 1.98 GHz x 32 lanes / 6.0e12 weights/s). XLA's GPU plugin compiles the same IR with
its own Triton, so this is a close proxy, not the real thing: time it on a GPU (benchmarks/kernel_sweep.py).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp

from gptoss_jax.kernels import attention_gpu, moe_gpu, offline
from gptoss_jax.kernels.moe_gpu import GpuTiles

S = jax.ShapeDtypeStruct
H = I = 2880

COMPILE = r'''
import json, sys, triton
from triton.backends.compiler import GPUTarget
src, num_warps, num_stages, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": num_stages})
open(out, "wb").write(k.asm["cubin"])
print(json.dumps({"shared": k.metadata.shared, "triton": triton.__version__}))
'''


def moe_cases():
    """(name, fn, args, tiles, values a thread per loop iteration)."""
    out = []
    for name, m, g, n, k in [("120b decode b1 mlp1", 4, 128, 2 * I, H), ("120b decode b1 mlp2", 4, 128, H, I),
                             ("20b decode b256 mlp1", 1024, 32, 2 * I, H), ("120b prefill 8k mlp1", 32768, 128, 2 * I, H)]:
        for dq in ("e4m3", "asm"):
            tiles = dataclasses.replace(moe_gpu.pick_tiles(m, n, k, g), dequant=dq)
            fn = functools.partial(moe_gpu.mxfp4_matmul_pallas, tiles=tiles, interpret=False)
            args = (S((m, k), jnp.bfloat16), S((g, n, k // 32, 16), jnp.uint8), S((g, n, k // 32), jnp.uint8),
                    S((g,), jnp.int32))
            per_thread = tiles.bn * tiles.nbk * 32 / (32 * tiles.num_warps)
            out.append((f"{name} {tiles}", fn, args, tiles.num_warps, tiles.num_stages, per_thread))
    cache = S((18, 1, 8192, 8, 64), jnp.bfloat16)
    fn = functools.partial(attention_gpu.decode_attention, interpret=False)
    out.append(("attention decode b1 8k", fn, (S((1, 64, 64), jnp.bfloat16), cache, cache, S((), jnp.int32),
                                               S((1,), jnp.int32), S((1,), jnp.int32), S((64,), jnp.bfloat16)),
                4, 2, None))
    return out


def sass_report(cubin: str, tools: str) -> dict:
    usage = subprocess.run([os.path.join(tools, "cuobjdump"), "--dump-resource-usage", cubin],
                           capture_output=True, text=True).stdout
    regs = re.search(r"REG:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    sass = subprocess.run([os.path.join(tools, "cuobjdump"), "--dump-sass", cubin], capture_output=True,
                          text=True).stdout
    insts = re.findall(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)
    addr = [int(a, 16) for a, _, _ in insts]
    # hot loop: the longest backward branch
    loops = []
    for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?BRA\s+(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))", sass):
        src, dst = int(m.group(1), 16), m.group(2)
        if dst is not None and int(dst, 16) < src:
            loops.append((int(dst, 16), src))
    body = collections.Counter()
    if loops:
        lo, hi = max(loops, key=lambda p: p[1] - p[0])
        for a, (_, _, op) in zip(addr, insts):
            if lo <= a <= hi:
                body[op.split(".")[0]] += 1
    return {"registers": int(regs.group(1)) if regs else None, "stack": int(stack.group(1)) if stack else None,
            "loop_instructions": sum(body.values()), "loop_mix": dict(body.most_common(12))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triton_python", default=sys.executable)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="triton_offline_")
    os.makedirs(out, exist_ok=True)
    tools = subprocess.run([args.triton_python, "-c", "import os, triton; print(os.path.join(os.path.dirname("
                            "triton.__file__), 'backends', 'nvidia', 'bin'))"], capture_output=True, text=True)
    if tools.returncode:
        sys.exit(f"no Triton in {args.triton_python} (pip install triton there, or pass --triton_python)")
    tools = tools.stdout.strip()
    rows = []
    for i, (name, fn, fargs, warps, stages, per_thread) in enumerate(moe_cases()):
        [ttir] = offline.triton_ir(fn, *fargs)
        src, cubin = os.path.join(out, f"k{i}.ttir"), os.path.join(out, f"k{i}.cubin")
        open(src, "w").write(ttir)
        r = subprocess.run([args.triton_python, "-c", COMPILE, src, str(warps), str(stages), cubin],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: COMPILE FAILED\n{r.stderr[-2000:]}")
            rows.append({"kernel": name, "error": r.stderr[-2000:]})
            continue
        info = json.loads(r.stdout.strip().splitlines()[-1]) | sass_report(cubin, tools)
        if per_thread:
            info["loop_instructions_per_weight"] = round(info["loop_instructions"] / per_thread, 2)
        rows.append({"kernel": name, **info})
        print(f"{name}\n  regs {info['registers']} stack {info['stack']} shared {info['shared']} B; hot loop "
              f"{info['loop_instructions']} instr" + (f" = {info['loop_instructions_per_weight']} a weight"
                                                      if per_thread else "") + f"\n  mix {info['loop_mix']}")
    json.dump(rows, open(os.path.join(out, "report.json"), "w"), indent=1)
    print(f"IR, cubins and report.json in {out}")


if __name__ == "__main__":
    main()
