"""One prepared command for a GPU loan: everything the project needs measured, in under 8 minutes.

    PYTHONPATH=. python -m benchmarks.gpu_suite --out=DIR            # on one H100 / H200 (jax 0.11.2, nothing else)
    PYTHONPATH=. python -m benchmarks.gpu_suite --out=DIR --interpret --small    # the same script on CPU (CI)

Parts, in this order, each in its own process under a time box (a part that fails, crashes or overruns is reported
and the suite goes on; what it measured before that is kept):
  device       copy bandwidth (read + write of 2 GiB) and bf16 matmul rate: the denominators of every fraction below
  correctness  BEFORE any timing: every MXFP4 route vs the reference path at real shapes (max relative error), every
               code x scale byte through the kernel vs mxfp4.unpack, decode attention kernel vs XLA
  moe          MoE kernel us, GB/s over the routed experts' packed bytes and fraction of the measured bandwidth, 120b
               and 20b at batch 1, 8, 64, 256 and a 2048-token prefill chunk, every route side by side + reference
  e2e_120b     `gptoss bench` decode at batch 1, 256, 64 (1k context), peak device memory with a 128k-token context
  e2e_20b      reserved (120b), prefill of an 8k prompt, tokens/s and % of the roofline from the MEASURED bandwidth
               and matmul rate; device kernels a decode step (JAX profiler)
  attention    decode attention kernel vs the XLA path at 1k / 8k / 32k contexts, batch 1 and 8
Writes DIR/suite.json (results first) and DIR/suite.md (tables and the issue's targets, built from the JSON), plus
each part's JSON and log under DIR/parts/. Imports only the standard library, jax, numpy and this repository (no
tokenizer, grammar or eval packages), so it runs on a machine where nothing can be installed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

# part -> seconds of its time box (the whole default budget is 450 s: 7.5 minutes with process starts)
BOXES = {"device": 15, "correctness": 45, "moe": 70, "e2e_120b": 150, "e2e_20b": 90, "attention": 30}
ASSUMED = {"bandwidth": 3.16e12, "matmul_rate": 989e12}     # H100 figures, used only if the device part fails
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path: str, data) -> None:
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _denominators(report: dict) -> tuple[float, float, str]:
    dev = report["parts"].get("device", {}).get("results", {})
    bw = dev.get("copy_bandwidth", {}).get("bytes_per_s")
    rate = dev.get("matmul", {}).get("flops_per_s")
    source = "measured" if bw and rate else "ASSUMED (device part failed): H100 3.16 TB/s, 989 TFLOP/s"
    return bw or ASSUMED["bandwidth"], rate or ASSUMED["matmul_rate"], source


def run_suite(args) -> dict:
    from benchmarks.suite_report import markdown

    os.makedirs(os.path.join(args.out, "parts"), exist_ok=True)
    names = [n for n in BOXES if n in args.parts.split(",")]
    t0 = time.time()
    report = {"suite": {"started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
                        "small": args.small, "interpret": args.interpret, "budget_s": args.budget_s,
                        "boxes_s": {n: BOXES[n] for n in names}}, "parts": {}}
    previous = os.path.join(args.out, "parts", "device.json")
    if "device" not in names and os.path.exists(previous):            # a rerun of some parts: same denominators
        report["parts"]["device"] = {"status": "reused", "note": "from an earlier run in this folder",
                                     "results": _read(previous)}
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")         # 120b's weights need more than JAX's 0.75
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    for i, name in enumerate(names):
        later = sum(min(10, BOXES[n]) for n in names[i + 1:])              # keep a little for every later part
        end = t0 + args.budget_s
        deadline = min(time.time() + BOXES[name] * args.box_scale, end - later)
        bw, rate, _ = _denominators(report)
        print(f"\n[{i + 1}/{len(names)}] {name}: time box {max(0, deadline - time.time()):.0f} s "
              f"(suite {time.time() - t0:.0f}/{args.budget_s:.0f} s)", flush=True)
        entry = report["parts"][name] = {"status": "running"}
        if deadline - time.time() < 3:
            entry.update(status="skipped", note="suite budget spent")
            continue
        out = os.path.join(args.out, "parts", f"{name}.json")
        log = os.path.join(args.out, "parts", f"{name}.log")
        cmd = [sys.executable, "-m", "benchmarks.gpu_suite", f"--child={name}", f"--out={args.out}",
               f"--deadline={deadline}", f"--bandwidth={bw}", f"--matmul_rate={rate}"]
        cmd += ["--small"] * args.small + ["--interpret"] * args.interpret + [f"--stall_s={args.stall_s}"]
        start = time.time()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, stdout=None, stderr=err, env=env, cwd=ROOT)
            try:
                rc = proc.wait(timeout=max(1.0, min(deadline, end) + args.grace_s - time.time()))
                entry["status"] = "ok" if rc == 0 else "failed"
                if rc:
                    entry["note"] = f"exit code {rc}"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                entry.update(status="timeout", note=f"killed {args.grace_s:.0f} s past its time box; results so far kept")
        entry["seconds"] = round(time.time() - start, 1)
        entry["results"] = _read(out)
        if entry["status"] != "ok":
            with open(log) as f:
                entry["log_tail"] = f.read()[-4000:]
            print(f"  {name}: {entry['status'].upper()} ({entry.get('note', '')}); log {log}\n"
                  + "\n".join("    " + line for line in entry["log_tail"].splitlines()[-12:]), flush=True)
        failed = [k for k, v in entry["results"].items() if isinstance(v, dict) and "error" in v]
        if failed:
            entry["failed_cases"] = failed
        print(f"  {name}: {entry['status']} in {entry['seconds']:.0f} s, {len(entry['results'])} results"
              + (f", {len(failed)} failed cases" if failed else ""), flush=True)
        report["suite"]["seconds"] = round(time.time() - t0, 1)
        _write(os.path.join(args.out, "suite.json"), report)
    bw, rate, source = _denominators(report)
    report["suite"].update(seconds=round(time.time() - t0, 1), bandwidth=bw, matmul_rate=rate,
                           denominators=source)
    _write(os.path.join(args.out, "suite.json"), report)
    with open(os.path.join(args.out, "suite.md"), "w") as f:
        f.write(markdown(report))
    print(f"\nsuite: {report['suite']['seconds']:.0f} s; {os.path.join(args.out, 'suite.json')} and suite.md")
    return report


def run_child(args) -> int:
    import jax                                    # a program compiled twice (decode, then profiled) compiles once

    jax.config.update("jax_compilation_cache_dir", os.path.join(args.out, "xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    from benchmarks.suite_parts import PARTS, Part

    part = Part(args.child, os.path.join(args.out, "parts", f"{args.child}.json"), args.deadline, args.small,
                args.interpret, args.bandwidth, args.matmul_rate)
    part.record("started", datetime.datetime.now().isoformat(timespec="seconds"))
    time.sleep(args.stall_s)
    PARTS[args.child](part)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for suite.json, suite.md and parts/")
    ap.add_argument("--small", action="store_true", help="tiny shapes and the tiny model (CPU, CI)")
    ap.add_argument("--interpret", action="store_true", help="Pallas kernels in interpret mode (CPU)")
    ap.add_argument("--parts", default=",".join(BOXES), help=f"subset of {','.join(BOXES)}")
    ap.add_argument("--budget_s", type=float, default=450.0, help="wall-clock budget of the whole suite")
    ap.add_argument("--box_scale", type=float, default=1.0, help="multiply every part's time box (CPU runs: > 1)")
    ap.add_argument("--grace_s", type=float, default=15.0, help="a part past its time box may finish its current "
                    "case this long before it is killed")
    ap.add_argument("--stall_s", type=float, default=0.0, help="every part waits this long after it starts "
                    "(checks the time boxes: a part that hangs is killed and keeps what it wrote)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--bandwidth", type=float, default=ASSUMED["bandwidth"], help=argparse.SUPPRESS)
    ap.add_argument("--matmul_rate", type=float, default=ASSUMED["matmul_rate"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(BOXES)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}: expected some of {list(BOXES)}")
    if args.child:
        sys.exit(run_child(args))
    run_suite(args)


if __name__ == "__main__":
    main()
