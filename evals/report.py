"""The summary table (terminal, Markdown, JSON) built from the records of a sweep.

One row per benchmark x reasoning effort (x sampling point when the sweep has several), with the model page's
columns: Benchmark | Category | Reasoning | Strategy | Executions | Accuracy (95% interval) | Cost | Duration.

* Executions: samples run; failed ones (could not run or could not be graded) are counted and shown, and excluded
  from accuracy.
* Accuracy: mean score of the graded samples, with a 95% interval (Wilson, or a bootstrap over questions when there
  are repeats or fractional scores; the ``interval`` field says which; see stats.py).
* Cost: tokens x the price table ($ per million prompt / completion / cached-input tokens; cached tokens are the
  part of the prompt served from cache) plus, for the local engine, device-seconds x the hourly rate. Grader-model
  tokens are included (and listed separately in JSON).
* Duration: wall-clock time during which at least one of the row's requests was in flight (the union of their
  [start, end] intervals), so concurrency is not double-counted and a crash-and-resume gap is not counted.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from evals.backends.base import REASONING_EFFORTS
from evals.stats import accuracy_interval

COLUMNS = ("Benchmark", "Category", "Reasoning", "Strategy", "Executions", "Accuracy (95% CI)", "Cost", "Duration")


@dataclasses.dataclass(frozen=True)
class Prices:
    """USD per million tokens, and USD per device-hour for the local engine."""

    prompt: float = 0.15
    completion: float = 0.60
    cached: float = 0.014
    device_hour: float = 0.0

    def token_cost(self, usage: Mapping[str, Any]) -> float:
        prompt = usage.get("prompt_tokens") or 0
        cached = min(usage.get("cached_tokens") or 0, prompt)
        completion = usage.get("completion_tokens") or 0
        return ((prompt - cached) * self.prompt + cached * self.cached + completion * self.completion) / 1e6


def cost_note(prices: Prices) -> str:
    """The rates behind the Cost column, and the flags that set them."""
    return (f"Cost: ${prices.prompt:g} / ${prices.completion:g} / ${prices.cached:g} per million prompt / completion "
            f"/ cached tokens (--price_prompt, --price_completion, --price_cached) + ${prices.device_hour:g} per "
            f"device-hour of the local engine (--device_hourly_rate).")


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    total = 0.0
    end = -math.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _effort_rank(e: str) -> int:
    return REASONING_EFFORTS.index(e) if e in REASONING_EFFORTS else len(REASONING_EFFORTS)


def summarize(records: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]], prices: Prices = Prices(),
              task_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    recs = list(records.values()) if isinstance(records, Mapping) else list(records)
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[(r["task"], r["reasoning_effort"], r["sampling_key"], "+".join(r.get("builtin_tools") or []))].append(r)
    order = {t: i for i, t in enumerate(task_order)}
    rows = []
    for (task, effort, skey, tools), rs in sorted(groups.items(), key=lambda kv: (
            order.get(kv[0][0], len(order)), kv[0][0], kv[0][3], _effort_rank(kv[0][1]), kv[0][2])):
        ok = [r for r in rs if r["status"] == "ok"]
        by_q: dict[str, list[float]] = defaultdict(list)
        for r in ok:
            by_q[r["sample_id"]].append(float(r["score"]))
        clip = any(r.get("task", "").startswith("healthbench") for r in rs[:1])
        acc, lo, hi, method = accuracy_interval(by_q, clip=clip)
        model_cost = sum(prices.token_cost(r.get("usage") or {}) for r in rs)
        grader_cost = sum(prices.token_cost(r.get("grader_usage") or {}) for r in rs)
        device_s = sum(r.get("device_seconds") or 0.0 for r in rs)
        device_cost = device_s * prices.device_hour / 3600.0
        usage = defaultdict(int)
        for r in rs:
            for k, v in (r.get("usage") or {}).items():
                usage[k] += v or 0
        first = rs[0]
        fallback = next((d.get("note") or d.get("source") for d in (r.get("data") or {} for r in rs)
                         if isinstance(d, dict) and d.get("fallback")), None)
        rows.append({
            "task": task, "benchmark": first["benchmark"], "category": first["category"],
            "reasoning_effort": effort, "strategy": first["strategy"], "sampling": skey, "tools": tools,
            "data_fallback": fallback, "tool_seconds": sum((r.get("output") or {}).get("tool_seconds") or 0.0
                                                           for r in rs),
            "executions": len(rs), "graded": len(ok), "failed": len(rs) - len(ok),
            "questions": len({r["sample_id"] for r in rs}),
            "accuracy": acc, "ci_low": lo, "ci_high": hi, "interval": method,
            "cost_usd": model_cost + grader_cost + device_cost, "model_cost_usd": model_cost,
            "grader_cost_usd": grader_cost, "device_cost_usd": device_cost, "device_seconds": device_s,
            "duration_s": union_seconds((r["started_at"], r["ended_at"]) for r in rs),
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "cached_tokens": usage["cached_tokens"],
            "mean_completion_tokens": (usage["completion_tokens"] / len(rs)) if rs else 0.0,
            "pass_hat_k": pass_hat_k(by_q) if first["category"] == "Agentic" else {},
        })
    return rows


def pass_hat_k(scores_by_question: Mapping[str, Sequence[float]]) -> dict[int, float]:
    """Tau-Bench's pass^k for k = 1..(fewest runs of a question): the chance that k runs of a task all succeed,
    estimated per task without bias as C(c, k) / C(n, k) (c successes in n runs), averaged over tasks."""
    groups = [g for g in scores_by_question.values() if g]
    if not groups:
        return {}
    out = {}
    for k in range(1, min(len(g) for g in groups) + 1):
        out[k] = sum(math.comb(sum(1 for s in g if s >= 1), k) / math.comb(len(g), k) for g in groups) / len(groups)
    return out


def pass_hat_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{fmt_benchmark(r)} ({r['reasoning_effort']}): " + ", ".join(
        f"pass^{k} {100 * v:.1f}%" for k, v in r["pass_hat_k"].items()) for r in rows if r.get("pass_hat_k")]


def fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt_cost(c: float) -> str:
    return f"${c:.4f}" if c < 1 else f"${c:,.2f}"


def fmt_accuracy(row: Mapping[str, Any]) -> str:
    if row["graded"] == 0 or math.isnan(row["accuracy"]):
        return "n/a"
    return f"{100 * row['accuracy']:.1f}% [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def fmt_executions(row: Mapping[str, Any]) -> str:
    return f"{row['executions']}" + (f" ({row['failed']} failed)" if row["failed"] else "")


def fmt_benchmark(row: Mapping[str, Any]) -> str:
    """The benchmark's name; a table read from a fallback source says so (it is not the published set)."""
    fallback = row.get("data_fallback")
    return f"{row['benchmark']} (fallback: {fallback})" if fallback else row["benchmark"]


def table_cells(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    multi_sampling = len({r["sampling"] for r in rows}) > 1
    with_tools = any(r.get("tools") for r in rows)
    header = list(COLUMNS)
    if with_tools:
        header.insert(4, "Tools")
    if multi_sampling:
        header.insert(4, "Sampling")
    body = []
    for r in rows:
        cells = [fmt_benchmark(r), r["category"], r["reasoning_effort"], r["strategy"], fmt_executions(r),
                 fmt_accuracy(r), fmt_cost(r["cost_usd"]), fmt_duration(r["duration_s"])]
        if with_tools:
            cells.insert(4, r.get("tools") or "none")
        if multi_sampling:
            cells.insert(4, r["sampling"])
        body.append(cells)
    return header, body


FOOTNOTE = ("Accuracy: mean score of graded samples, 95% interval: Wilson score interval, or a percentile bootstrap "
            "over questions (2,000 resamples) when questions repeat or scores are fractional (Wilson over questions "
            "when every question scored alike). Failed samples are counted in Executions and excluded from "
            "accuracy.")


def to_text(rows: Sequence[Mapping[str, Any]]) -> str:
    header, body = table_cells(rows)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    extra = pass_hat_lines(rows)
    return "\n".join(out + ([""] + extra if extra else []))


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    header, body = table_cells(rows)
    esc = [[c.replace("|", "\\|") for c in b] for b in body]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(b) + " |" for b in esc]
    extra = "".join(f"- {line}\n" for line in pass_hat_lines(rows))
    return "\n".join(out) + f"\n\n{FOOTNOTE}\n" + (f"\npass^k (agentic tasks):\n{extra}" if extra else "")


def to_json(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return json.dumps({"meta": dict(meta), "interval_note": FOOTNOTE,
                       "rows": [{k: clean(v) for k, v in r.items()} for r in rows]}, indent=2)


def comparable(rows: Sequence[Mapping[str, Any]]) -> list[tuple]:
    """The parts of a table that must match between an interrupted-and-resumed run and an uninterrupted one
    (everything but measured time)."""
    keys = ("task", "reasoning_effort", "sampling", "tools", "executions", "graded", "failed", "accuracy", "ci_low", "ci_high",
            "prompt_tokens", "completion_tokens", "cached_tokens")
    return [tuple(round(r[k], 9) if isinstance(r[k], float) else r[k] for k in keys) for r in rows]
