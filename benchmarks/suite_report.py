"""benchmarks/gpu_suite.py's Markdown, built only from its JSON report (so a table never says what the JSON does not),
and the issue's targets checked against it."""
from __future__ import annotations

import re

from gptoss_jax.kernels import DEQUANT_ROUTES

# (what, how to read it from the report, threshold by device kind, unit)
TARGETS = [
    ("120b decode batch 1 tokens/s", ("e2e_120b", "decode batch=1 context=1024", "tokens_per_s"),
     {"H200": 600, "H100": 450}, "tokens/s"),
    ("120b decode batch 1, fraction of roofline", ("e2e_120b", "decode batch=1 context=1024", "of_roofline"),
     {"*": 0.70}, ""),
    ("120b decode batch 256 tokens/s", ("e2e_120b", "decode batch=256 context=1024", "tokens_per_s"),
     {"H200": 8000, "H100": 5000}, "tokens/s"),
    ("20b decode batch 1 tokens/s", ("e2e_20b", "decode batch=1 context=1024", "tokens_per_s"),
     {"H200": 800, "H100": 600}, "tokens/s"),
    ("MoE kernel batch 1 (120b mlp1, kperm), fraction of measured bandwidth",
     ("moe", "120b mlp1 tokens=1 kperm", "of_bandwidth"), {"*": 0.80}, ""),
]


def _fmt(v, digits=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def _bytes(v) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1e9:,.2f} GB" if v >= 1e8 else f"{v / 1e6:,.2f} MB"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _results(report: dict, part: str) -> dict:
    return report["parts"].get(part, {}).get("results", {}) or {}


def _device_class(report: dict) -> str:
    kind = _results(report, "device").get("env", {}).get("device", "")
    return next((k for k in ("H200", "H100") if k in kind), "other")


def targets(report: dict) -> list[dict]:
    cls = _device_class(report)
    out = []
    for what, (part, key, field), thresholds, unit in TARGETS:
        limit = thresholds.get(cls, thresholds.get("*"))
        value = _results(report, part).get(key, {})
        value = value.get(field) if isinstance(value, dict) else None
        status = ("not measured" if value is None else "no target for this device" if limit is None
                  else "MET" if value >= limit else "MISSED")
        out.append({"target": what, "value": value, "threshold": limit, "unit": unit, "status": status})
    return out


def markdown(report: dict) -> str:
    s = report["suite"]
    env = _results(report, "device").get("env", {})
    lines = [f"# GPU suite: {env.get('device', 'device unknown')}\n",
             f"jax {env.get('jax', '?')}, started {s.get('started')}, {s.get('seconds', 0):.0f} s of a "
             f"{s.get('budget_s', 0):.0f} s budget; small={s.get('small')} interpret={s.get('interpret')}. "
             f"Fractions use {s.get('denominators', '?')}: bandwidth {_fmt((s.get('bandwidth') or 0) / 1e12, 3)} "
             f"TB/s, matmul {_fmt((s.get('matmul_rate') or 0) / 1e12)} TFLOP/s.\n"]
    lines.append("## Parts\n")
    lines.append(_table(["part", "status", "seconds", "results", "failed cases", "note"], [
        [n, e.get("status"), _fmt(e.get("seconds")), len(e.get("results", {})), len(e.get("failed_cases", [])),
         e.get("note", "")] for n, e in report["parts"].items()]))
    lines.append("## Targets (issue 12)\n")
    lines.append(_table(["target", "measured", "threshold", "status"], [
        [t["target"], _fmt(t["value"], 3 if not t["unit"] else 0), _fmt(t["threshold"]), t["status"]]
        for t in targets(report)]))
    corr = _results(report, "correctness")
    if corr:
        lines.append("## Correctness (before any timing)\n")
        rows = [[k, f"{v['max_rel_err']:.1e}" if "max_rel_err" in v else "FAILED: " + v.get("error", "")[:80]]
                for k, v in corr.items() if isinstance(v, dict) and not k.startswith("exact_decode")]
        lines.append(_table(["case", "max relative error vs reference"], rows))
        exact = [[k.split(" ", 1)[1], v.get("values"), v.get("mismatch_normal"), v.get("mismatch_subnormal")]
                 for k, v in corr.items() if k.startswith("exact_decode") and isinstance(v, dict) and "values" in v]
        if exact:
            lines.append("Every code byte x every scale byte through the kernel (x = identity) vs mxfp4.unpack:\n")
            lines.append(_table(["route", "values", "mismatches (normal)", "mismatches (subnormal)"], exact))
    moe = _results(report, "moe")
    if moe:
        lines.append("## MoE kernel (GB/s over the routed experts' packed bytes)\n")
        grouped: dict[tuple, dict] = {}
        for k, v in moe.items():
            m = re.match(r"(.+) tokens=(\d+) (\S+)$", k)
            if m and isinstance(v, dict):
                grouped.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = v
        order = [*DEQUANT_ROUTES, "reference"]
        impls = sorted({i for g in grouped.values() for i in g}, key=lambda i: order.index(i) if i in order else 99)
        cell = lambda v: ("FAILED" if v is None or "error" in v else
                          f"{v['us']:,.1f} us, {v['gb_per_s']:,.0f} GB/s ({_pct(v['of_bandwidth'])})")
        lines.append(_table(["shape", "tokens", *impls], [
            [shape, tokens, *[cell(g.get(i)) if i in g else "-" for i in impls]]
            for (shape, tokens), g in grouped.items()]))
    for part, title in (("e2e_120b", "End to end (part e2e_120b)"), ("e2e_20b", "End to end (part e2e_20b)")):
        res = _results(report, part)
        if not res:
            continue
        model = res.get("model", {})
        lines.append(f"## {title}: {model.get('config', '?')} ({model.get('kernels', '')}), weights drawn in "
                     f"{_fmt(model.get('init_s'))} s\n")
        rows = []
        for k, v in res.items():
            if not isinstance(v, dict) or not k.startswith(("decode", "prefill")):
                continue
            if "tokens_per_s" in v:
                rows.append([k, _fmt(v["tokens_per_s"]), _fmt(v["ms_per_step"], 2), _pct(v["of_roofline"]),
                             _pct(v["of_bandwidth"])])
            else:
                rows.append([k, v.get("refused") or v.get("error", "")[:100], "", "", ""])
        lines.append(_table(["case", "tokens/s", "ms a step (call)", "of roofline", "of bandwidth"], rows))
        extra = []
        for k, v in res.items():
            if k.startswith("peak memory") and isinstance(v, dict):
                extra.append(f"- {k}: peak device memory in use {_bytes(v.get('peak_bytes_in_use'))} of "
                             f"{_bytes(v.get('bytes_limit'))} (weights {_bytes(v.get('weights_bytes'))}, KV cache "
                             f"{_bytes(v.get('cache_bytes'))}, decode step temporaries "
                             f"{_bytes(v.get('step_temp_bytes'))})" if "cache_bytes" in v else
                             f"- {k}: {v.get('refused') or v.get('error', '')[:200]}")
            if k.startswith("kernel launches") and isinstance(v, dict):
                extra.append(f"- {k}: {_fmt(v.get('kernels_per_step'), 0)} device kernels a decode step"
                             + (f" ({v['note']})" if v.get("note") else ""))
        lines.append("\n".join(extra) + ("\n" if extra else ""))
    att = _results(report, "attention")
    rows = [[v["batch"], v["context"], _fmt(v["kernel_us"]), _fmt(v["xla_us"]), f"{v['speedup']:.2f}x",
             f"{v['err']:.1e}"] for v in att.values() if isinstance(v, dict) and "kernel_us" in v]
    if rows:
        lines.append("## Decode attention: kernel vs XLA (one full layer, 120b's cache shape)\n")
        lines.append(_table(["batch", "context", "kernel us", "XLA us", "speedup", "max rel err"], rows))
    failures = [(p, k, v["error"]) for p, e in report["parts"].items() for k, v in e.get("results", {}).items()
                if isinstance(v, dict) and "error" in v]
    if failures:
        lines.append("## Failures\n")
        lines += [f"- {p} / {k}: `{err[:300]}`" for p, k, err in failures]
    return "\n".join(lines) + "\n"
