"""What `gptoss bench` prints and writes: sizes, the memory plan, the refusals, the JSON report (cli/bench.py)."""
from __future__ import annotations

import json
import os

from gptoss_jax import params as params_lib
from gptoss_jax.engine import memory


def _size(n: float) -> str:
    """Bytes in readable decimal units."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def print_plan(cfg, plan: dict, budget: int | None, source: str, dtype) -> None:
    print(f"\n== {cfg.name}: {cfg.num_layers} layers, {cfg.num_experts} experts, "
          f"{params_lib.count_params(cfg) / 1e6:,.1f}M weights")
    print(f"   weights {_size(plan['weights_bytes'])} = packed MXFP4 experts {_size(plan['packed_expert_bytes'])} "
          f"+ other (bf16) {_size(plan['other_weight_bytes'])}")
    print(f"   KV cache {_size(plan['kv_bytes_per_token'])} a token of context (full layers) + "
          f"{_size(plan['ring_bytes_per_row'])} a row (sliding-window rings)")
    if budget:
        free = budget - plan["weights_bytes"]
        tokens = max(0, free) // plan["kv_bytes_per_token"]
        full = memory.max_slots(cfg, cfg.max_context, max(0, free), dtype)     # cache + rings + slot state
        print(f"   device budget {_size(budget)} ({source}): {_size(free)} after weights, room for about "
              f"{tokens:,} tokens of context before workspace; engine slots of a full {cfg.max_context:,}-token "
              f"context that fit: {full}{'' if full else ' (does NOT fit)'}")
        if free <= 0:
            print("   the weights alone do not fit: every case will be refused")


def refusals(report: dict) -> list[str]:
    """What the run refused to measure (a model whose weights exceed the budget, a case that does not fit)."""
    out = []
    for name, entry in report["models"].items():
        if "refused" in entry:
            out.append(f"{name}: {entry['refused']}")
        for row in entry.get("cases", []):
            out += [f"{name} {row['mode']} batch {row['batch']} context {row['context']} {path}: {r['refused']}"
                    for path, r in row.get("paths", {}).items() if "refused" in r]
    return out


def _write(path: str, report: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)

