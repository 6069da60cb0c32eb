"""Compile the GPU kernels' Triton IR for sm_90 WITHOUT a GPU and report what the hardware would run.

    make triton-offline        # once: .venv-triton with a pip Triton (ships ptxas, cuobjdump, nvdisasm)
    PYTHONPATH=. .venv/bin/python -m benchmarks.triton_offline [--routes=e4m3,asm,...] [--shapes=decode] [--out=DIR]

Lowers each MoE kernel variant (every dequantization route in kernels.DEQUANT_ROUTES, unless --routes) at gpt-oss
shapes for an abstract H100 (gptoss_jax.kernels.offline), writes the Triton IR, and compiles it with a pip Triton
(`--triton_python`, default .venv-triton/bin/python if present, else this interpreter) for sm_90 through the same
stages XLA's GPU plugin runs: Triton's TTIR passes (inliner, canonicalizer, combine: `acc + dot` becomes the dot's
own accumulator), TTGIR (layouts, wgmma, software pipelining), LLVM, PTX, ptxas. Per kernel it prints:

- the hot loop's SASS instructions a dequantized weight, per thread (hot loop = the longest backward branch): the
  issue-slot budget at the bandwidth limit is about 5.5 on an H100 and 4 on an H200 (132 SMs x 4 schedulers x
  1.98 GHz x 32 lanes / (bandwidth / 0.53 bytes a weight)); targets: decode <= 5.5, prefill <= 8;
- registers, spills (STL/LDL instructions and local memory), shared memory;
- whether the hot loop has HGMMA (Hopper tensor cores, wgmma), the hardware FP8 conversion (F2FP.*E4M3), cp.async
  (LDGSTS) or TMA (UTMALDG/UBLKCP), and its instruction mix.

XLA compiles the same IR with its own (bundled) Triton, so this is a close proxy, not the real thing: the timings
come from a GPU (benchmarks/gpu_suite.py). Writes the IR, cubins, PTX and report.json to --out.
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

from gptoss_jax.kernels import DEQUANT_ROUTES, attention_gpu, moe_gpu, offline

S = jax.ShapeDtypeStruct
H = I = 2880
DEFAULT_TRITON_VENV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-triton")

# (name, rows M = tokens x 4, experts G, N, K, kind): kind sets the target (decode <= 5.5, prefill <= 8)
SHAPES = [("120b b1 mlp1", 4, 128, 2 * I, H, "decode"), ("120b b1 mlp2", 4, 128, H, I, "decode"),
          ("20b b1 mlp1", 4, 32, 2 * I, H, "decode"), ("120b b64 mlp1", 256, 128, 2 * I, H, "decode"),
          ("20b b256 mlp1", 1024, 32, 2 * I, H, "decode"), ("120b b512 mlp2", 2048, 128, H, I, "decode"),
          ("120b prefill 8k mlp1", 32768, 128, 2 * I, H, "prefill")]
TARGET = {"decode": 5.5, "prefill": 8.0}

# Runs in the Triton interpreter: parse the TTIR, run the TTIR stage's passes (triton.compile skips the passes of
# the stage its input file belongs to), then compile the optimised TTIR through the remaining stages.
COMPILE = r'''
import json, sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import IRSource, make_backend
from triton._C.libtriton import ir
src, num_warps, num_stages, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
target = GPUTarget("cuda", 90, 32)
options = {"num_warps": num_warps, "num_stages": num_stages}
backend = make_backend(target)
context = ir.context()
source = IRSource(src, context, backend)
stages = {}
backend.add_stages(stages, backend.parse_options(options), source.language)
module = stages["ttir"](source.make_ir(target, None, None, None, context), {})
optimised = src[:-len(".ttir")] + ".opt.ttir"
open(optimised, "w").write(str(module))
k = triton.compile(optimised, target=target, options=options)
open(out, "wb").write(k.asm["cubin"])
base = out[:-len(".cubin")]
open(base + ".ptx", "w").write(k.asm["ptx"])
open(base + ".ttgir", "w").write(k.asm["ttgir"])
print(json.dumps({"shared": k.metadata.shared, "triton": triton.__version__}))
'''


@dataclasses.dataclass
class Case:
    name: str
    route: str | None
    kind: str | None
    fn: object
    args: tuple
    num_warps: int
    num_stages: int
    weights_per_thread: float | None      # dequantized weights a thread per loop iteration
    tiles: str = ""


def moe_cases(routes, kinds, overrides: dict | None = None, biases=(True,)) -> list[Case]:
    """biases: with the expert biases in the epilogue (as the model calls the kernel) and / or without."""
    out = []
    for name, m, g, n, k, kind in SHAPES:
        if kind not in kinds:
            continue
        for route in routes:
            for bias in biases:
                tiles = dataclasses.replace(moe_gpu.pick_tiles(m, n, k, g, route), **(overrides or {}))
                fn = functools.partial(moe_gpu.mxfp4_matmul_pallas, tiles=tiles, interpret=False)
                args = (S((m, k), jnp.bfloat16), S((g, n, k // 32, 16), jnp.uint8), S((g, n, k // 32), jnp.uint8),
                        S((g,), jnp.int32), None) + ((S((g, n), jnp.bfloat16),) if bias else ())
                per_thread = tiles.bn * tiles.nbk * 32 / (32 * tiles.num_warps)
                out.append(Case(name + ("" if bias else " (no bias)"), route, kind, fn, args, tiles.num_warps,
                                tiles.num_stages, per_thread,
                                f"tm={tiles.tm} bn={tiles.bn} nbk={tiles.nbk} w={tiles.num_warps} "
                                f"s={tiles.num_stages} split_k={tiles.split_k}"))
    return out


def attention_case() -> Case:
    cache = S((18, 1, 8192, 8, 64), jnp.bfloat16)
    fn = functools.partial(attention_gpu.decode_attention, interpret=False)
    return Case("attention decode b1 8k", None, None, fn,
                (S((1, 64, 64), jnp.bfloat16), cache, cache, S((), jnp.int32), S((1,), jnp.int32),
                 S((1,), jnp.int32), S((64,), jnp.bfloat16)), 4, 2, None)


_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_BACK_BRANCH = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?BRA\s+(?:`\(\.L_x_\d+\)|0x([0-9a-f]+))")


def sass_report(sass: str, usage: str) -> dict:
    """Registers, spills and the hot loop of one kernel from `cuobjdump --dump-sass` / `--dump-resource-usage`."""
    field = lambda name: int(m.group(1)) if (m := re.search(name + r":(\d+)", usage)) else None
    insts = [(int(a, 16), op) for a, _, op in _INSTRUCTION.findall(sass)]
    loops = [(int(dst, 16), int(src, 16)) for src, dst in _BACK_BRANCH.findall(sass)
             if dst and int(dst, 16) < int(src, 16)]
    body = []
    if loops:
        lo, hi = max(loops, key=lambda p: p[1] - p[0])
        body = [op for a, op in insts if lo <= a <= hi]
    mix = collections.Counter(op.split(".")[0] for op in body)
    everywhere = collections.Counter(op.split(".")[0] for _, op in insts)
    return {"registers": field("REG"), "stack": field("STACK"), "local": field("LOCAL"),
            "spill_stores": everywhere["STL"], "spill_loads": everywhere["LDL"],
            "loop_instructions": len(body),
            "hgmma": mix["HGMMA"], "hmma": mix["HMMA"],
            "fp8_cvt": sum(1 for op in body if op.startswith(("F2FP", "F2F")) and "E4M3" in op),
            "cp_async": mix["LDGSTS"], "tma": mix["UTMALDG"] + mix["UBLKCP"],
            "loop_mix": dict(mix.most_common(14))}


def find_triton_python(given: str | None) -> str:
    if given:
        return given
    venv = os.path.join(DEFAULT_TRITON_VENV, "bin", "python")
    return venv if os.path.exists(venv) else sys.executable


def triton_tools(python: str) -> str:
    """The folder holding ptxas/cuobjdump/nvdisasm of the Triton in `python`; exits with a clear message if none."""
    r = subprocess.run([python, "-c", "import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "
                        "'backends', 'nvidia', 'bin'))"], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"no Triton in {python}: run `make triton-offline` (a .venv-triton with a pip Triton, which ships "
                 f"ptxas, cuobjdump and nvdisasm), or pass --triton_python=PYTHON_WITH_TRITON")
    tools = r.stdout.strip()
    missing = [t for t in ("ptxas", "cuobjdump") if not os.path.exists(os.path.join(tools, t))]
    if missing:
        sys.exit(f"the Triton in {python} lacks {missing} under {tools}")
    return tools


def compile_case(case: Case, i: int, out: str, python: str, tools: str) -> dict:
    try:
        [ttir] = offline.triton_ir(case.fn, *case.args)
    except Exception as e:                                   # a lowering the Pallas Triton backend rejects
        return {"error": f"lowering: {type(e).__name__}: {e}"}
    src, cubin = os.path.join(out, f"k{i}.ttir"), os.path.join(out, f"k{i}.cubin")
    with open(src, "w") as f:
        f.write(ttir)
    env = dict(os.environ, TRITON_DEFAULT_FP_FUSION="1")       # XLA's pipeline fuses mul+add (silences a notice)
    r = subprocess.run([python, "-c", COMPILE, src, str(case.num_warps), str(case.num_stages), cubin],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        return {"error": r.stderr.strip()[-3000:]}
    info = json.loads(r.stdout.strip().splitlines()[-1])
    tool = lambda *a: subprocess.run([os.path.join(tools, "cuobjdump"), *a, cubin], capture_output=True,
                                     text=True).stdout
    info |= sass_report(tool("--dump-sass"), tool("--dump-resource-usage"))
    if case.weights_per_thread:
        info["per_weight"] = round(info["loop_instructions"] / case.weights_per_thread, 2)
        info["target"] = TARGET[case.kind]
    return info


def verdict(row: dict) -> str:
    if "error" in row:
        return "COMPILE FAILED"
    if "per_weight" not in row:
        return ""
    bad = []
    if row["per_weight"] > row["target"]:
        bad.append(f"> {row['target']}/weight")
    if row["spill_stores"] or row["spill_loads"]:
        bad.append("spills")
    big = row["kind"] == "prefill" or int(re.search(r"tm=(\d+)", row["tiles"]).group(1)) >= 64
    if big and not row["hgmma"]:
        bad.append("no HGMMA")
    return "ok" if not bad else "MISS: " + ", ".join(bad)


def print_table(rows: list[dict]) -> None:
    head = (f"{'shape':22s} {'route':6s} {'instr/w':>7s} {'target':>6s} {'loop':>5s} {'regs':>4s} {'spill':>5s} "
            f"{'smem':>6s} {'HGMMA':>5s} {'FP8cvt':>6s} {'cp.async':>8s} {'TMA':>3s}  verdict / tiles")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['kernel']:22s} {r['route'] or '-':6s} COMPILE FAILED: {r['error'].splitlines()[-1][:120]}")
            continue
        pw = f"{r['per_weight']:.2f}" if "per_weight" in r else "-"
        tgt = f"{r['target']:.1f}" if "target" in r else "-"
        print(f"{r['kernel']:22s} {r['route'] or '-':6s} {pw:>7s} {tgt:>6s} {r['loop_instructions']:5d} "
              f"{r['registers']:4d} {r['spill_stores'] + r['spill_loads']:5d} {r['shared']:6d} {r['hgmma']:5d} "
              f"{r['fp8_cvt']:6d} {r['cp_async']:8d} {r['tma']:3d}  {verdict(r)} {r['tiles']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triton_python", default=None, help="a Python with `import triton` (default .venv-triton)")
    ap.add_argument("--routes", default=",".join(DEQUANT_ROUTES), help="dequantization routes to compile")
    ap.add_argument("--shapes", default="decode,prefill", help="decode, prefill or both")
    ap.add_argument("--attention", action="store_true", help="also compile the decode-attention kernel")
    ap.add_argument("--out", default=None, help="folder for IR, cubins, PTX and report.json (default: a temp dir)")
    ap.add_argument("--mix", action="store_true", help="print each hot loop's instruction mix")
    ap.add_argument("--tiles", default="", help="override pick_tiles, e.g. nbk=8,num_stages=3 (GpuTiles fields)")
    ap.add_argument("--bias", default="with", choices=("with", "without", "both"),
                    help="the expert biases in the kernel's epilogue (with: as the model calls it)")
    args = ap.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    unknown = set(routes) - set(DEQUANT_ROUTES)
    if unknown:
        sys.exit(f"unknown routes {sorted(unknown)}: expected some of {DEQUANT_ROUTES}")
    python = find_triton_python(args.triton_python)
    tools = triton_tools(python)
    out = args.out or tempfile.mkdtemp(prefix="triton_offline_")
    os.makedirs(out, exist_ok=True)
    overrides = {k: int(v) for k, v in (kv.split("=") for kv in args.tiles.split(",") if kv)}
    biases = {"with": (True,), "without": (False,), "both": (False, True)}[args.bias]
    cases = (moe_cases(routes, set(args.shapes.split(",")), overrides, biases)
             + ([attention_case()] if args.attention else []))
    rows = []
    for i, case in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {case.name} {case.route or ''} ...", file=sys.stderr, flush=True)
        info = compile_case(case, i, out, python, tools)
        rows.append({"kernel": case.name, "route": case.route, "kind": case.kind, "tiles": case.tiles,
                     "file": f"k{i}", **info})
        if args.mix and "loop_mix" in info:
            print(f"  {case.name} {case.route}: {info['loop_mix']}", file=sys.stderr)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print_table(rows)
    print(f"IR, cubins, PTX and report.json in {out}")
    return rows


if __name__ == "__main__":
    main()
