"""Load on an OpenAI-compatible server (a benchmark, not a test): p50/p99 time to first token, p50/p99 inter-token
latency and throughput at several concurrencies, streamed through the official `openai` client; then the prompt
cache: time to first token of a request with a new 1k-token head against one whose head is cached.

    python benchmarks/serve_load.py                                   # starts `gptoss serve --model=demo` itself
    python benchmarks/serve_load.py --serve="--model=tiny --num_slots=16"
    python benchmarks/serve_load.py --base_url=http://127.0.0.1:8000/v1 --model=gpt-oss-120b

Requests are /v1/completions streams with token-id prompts of mixed lengths (any model), fixed max_tokens and no
stop, so every request makes the same number of tokens. Inter-token latency: the gap between two chunks shared by
the tokens of the later one (the engine hands out decode_steps tokens per round). Each level runs after a warm-up
that compiles the shapes it uses. Prints a table and, with --json, the numbers as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(extra: str) -> tuple[subprocess.Popen, str, str]:
    args = extra.split()
    model = next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), "demo")
    if not any(a.startswith("--model=") for a in args):
        args.append("--model=demo")
    cmd = [sys.executable, "-m", "gptoss_jax.cli.main", "serve", "--port=0", "--noprogress", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    while True:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            sys.exit(f"serve_load: the server did not start ({' '.join(cmd)})")
        m = re.search(r"on (http://\S+/v1)", line)
        if m:
            return proc, m.group(1), model


def pct(xs, q) -> float:
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


async def one(client, model, prompt, max_tokens) -> tuple[float, list[float]]:
    """(time to the first token, inter-token gaps) of one streamed request."""
    t0 = time.perf_counter()
    first, gaps, last = None, [], None
    stream = await client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=1.0,
                                             stream=True)
    async for chunk in stream:
        k = len(getattr(chunk.choices[0], "token_ids", None) or []) if chunk.choices else 0
        if not k:
            continue
        now = time.perf_counter()
        if first is None:
            first = now - t0
        else:
            gaps += [(now - last) / k] * k
        last = now
    return first if first is not None else float("nan"), gaps


async def level(base_url, model, concurrency, requests, max_tokens, vocab, seed) -> dict:
    import openai
    client = openai.AsyncOpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"), timeout=3600,
                                max_retries=0)
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, vocab, int(rng.integers(16, 128))).tolist() for _ in range(requests)]
    sem = asyncio.Semaphore(concurrency)

    async def run(p):
        async with sem:
            return await one(client, model, p, max_tokens)

    t0 = time.perf_counter()
    out = await asyncio.gather(*[run(p) for p in prompts])
    wall = time.perf_counter() - t0
    await client.close()
    ttft = [o[0] for o in out]
    itl = [g for o in out for g in o[1]]
    return {"concurrency": concurrency, "requests": requests, "ttft_p50_s": pct(ttft, 50), "ttft_p99_s": pct(ttft, 99),
            "itl_p50_s": pct(itl, 50), "itl_p99_s": pct(itl, 99), "tokens_per_s": requests * max_tokens / wall,
            "wall_s": wall}


def cache_ttft(base_url, model, trials: int) -> dict | None:
    """Chat requests sharing a ~1k-token developer head: the first computes it, the second reuses it."""
    import openai
    client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"), timeout=3600)

    def ask(head, q):
        t0 = time.perf_counter()
        chunks = list(client.chat.completions.create(
            model=model, messages=[{"role": "developer", "content": head}, {"role": "user", "content": q}],
            max_tokens=1, temperature=0, stream=True, stream_options={"include_usage": True}))
        return time.perf_counter() - t0, chunks[-1].usage.prompt_tokens_details.cached_tokens

    try:
        ask("warm up " * 400, "hi")
    except openai.BadRequestError:
        return None  # no harmony vocabulary (e.g. --model=tiny)
    cold, warm, cached = [], [], []
    for i in range(trials):
        head = " ".join(f"rule{i}-{k} applies." for k in range(230))
        cold.append(ask(head, "What is rule 3?")[0])
        t, c = ask(head, "And rule 7?")
        warm.append(t)
        cached.append(c)
    return {"ttft_new_head_s": float(np.median(cold)), "ttft_cached_head_s": float(np.median(warm)),
            "cached_tokens": int(min(cached))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base_url", help="A running server (default: start `gptoss serve` with --serve)")
    ap.add_argument("--model", default=None, help="Model name at --base_url")
    ap.add_argument("--serve", default="--model=demo --num_slots=16 --max_len=2048",
                    help="Flags of the `gptoss serve` this starts")
    ap.add_argument("--concurrency", default="1,16,64", help="Levels ('' : only the prompt cache)")
    ap.add_argument("--max_tokens", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=512, help="Prompt token ids are drawn below this")
    ap.add_argument("--cache_trials", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    proc = None
    if a.base_url is None:
        proc, base_url, model = start_server(a.serve)
    else:
        base_url, model = a.base_url, a.model
    try:
        levels = [int(c) for c in a.concurrency.split(",") if c]
        if levels:  # warm-up
            asyncio.run(level(base_url, model, max(levels), max(levels), a.max_tokens, a.vocab, 99))
        rows = [asyncio.run(level(base_url, model, c, max(8, 2 * c), a.max_tokens, a.vocab, c)) for c in levels]
        cache = cache_ttft(base_url, model, a.cache_trials) if a.cache_trials else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    print(f"{'conc':>5} {'reqs':>5} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>9} {'ITL p99':>9} {'tok/s':>8}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['requests']:>5} {r['ttft_p50_s']:>8.3f}s {r['ttft_p99_s']:>8.3f}s "
              f"{r['itl_p50_s'] * 1e3:>7.1f}ms {r['itl_p99_s'] * 1e3:>7.1f}ms {r['tokens_per_s']:>8.1f}")
    if cache:
        print(f"prompt cache: TTFT {cache['ttft_new_head_s']:.3f}s with a new 1k-token head, "
              f"{cache['ttft_cached_head_s']:.3f}s with it cached ({cache['cached_tokens']} cached tokens)")
    if a.json:
        print(json.dumps({"levels": rows, "prompt_cache": cache}))


if __name__ == "__main__":
    main()
