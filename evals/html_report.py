"""A self-contained HTML report: the summary table (each row linked to its samples), three plots drawn as inline
SVG, and the transcript viewer (evals/viewer.py).

Why inline SVG rather than matplotlib PNGs: no plotting dependency (matplotlib is ~40 MB with its wheels, and the
harness must install fast in CI), a single small file that scales crisply, whose text (benchmark names, values)
is searchable and can be checked by tests.

Plots: accuracy vs reasoning effort (one line per benchmark, with interval whiskers); accuracy vs cost (one point per
row, log-scaled cost); completion-length histograms per reasoning effort (tokens per sample, from the records).
"""
from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any, Mapping, Sequence

from evals.backends.base import REASONING_EFFORTS
from evals.report import FOOTNOTE, table_cells

W, H, PAD = 640, 300, 48
LEGEND_W = 150  # the legend sits in its own column right of the plot area, never over the points
X1 = W - LEGEND_W - 8  # right edge of the plot area
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _frame(title: str, body: list[str], xlabel: str, ylabel: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{_e(title)}"><title>{_e(title)}</title>'
            f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>'
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{X1}" y2="{H - PAD}" stroke="black"/>'
            f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>'
            f'<text x="{(PAD + X1) / 2}" y="{H - 8}" text-anchor="middle" font-size="12">{_e(xlabel)}</text>'
            f'<text x="12" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 12 {H / 2})">'
            f'{_e(ylabel)}</text>' + "".join(body) + "</svg>")


def _y(acc: float) -> float:
    return (H - PAD) - acc * (H - 1.5 * PAD)


def _y_ticks() -> list[str]:
    out = []
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        y = _y(v)
        out.append(f'<line x1="{PAD - 4}" y1="{y:.1f}" x2="{X1}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{int(v * 100)}%</text>')
    return out


def _legend(names: Sequence[str]) -> list[str]:
    return [f'<g class="legend"><rect x="{X1 + 12}" y="{PAD / 2 + 14 * i}" width="10" height="10" '
            f'fill="{PALETTE[i % 10]}"/><text x="{X1 + 26}" y="{PAD / 2 + 14 * i + 9}" font-size="10">'
            f'{_e(str(n)[:22])}</text></g>' for i, n in enumerate(names)]


def _series(row: Mapping[str, Any]) -> str:
    """One plotted series per benchmark and tool set."""
    return row["benchmark"] + (f" + {row['tools']}" if row.get("tools") else "")


def accuracy_vs_effort(rows: Sequence[Mapping[str, Any]]) -> str:
    efforts = [e for e in REASONING_EFFORTS if any(r["reasoning_effort"] == e for r in rows)]
    series: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["graded"]:
            series[_series(r)].append(r)
    xs = {e: PAD + (i + 0.5) * (X1 - PAD) / max(1, len(efforts)) for i, e in enumerate(efforts)}
    body = _y_ticks()
    body += [f'<text x="{x:.1f}" y="{H - PAD + 16}" text-anchor="middle" font-size="11">{_e(e)}</text>'
             for e, x in xs.items()]
    for i, (name, rs) in enumerate(sorted(series.items())):
        c = PALETTE[i % 10]
        dx = (i - (len(series) - 1) / 2) * 7  # series side by side, so equal scores do not hide each other
        pts = sorted((r for r in rs if r["reasoning_effort"] in xs),
                     key=lambda r: REASONING_EFFORTS.index(r["reasoning_effort"]))
        coords = [(xs[r["reasoning_effort"]] + dx, _y(r["accuracy"]), r) for r in pts]
        if len(coords) > 1:
            body.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                        + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords) + '"/>')
        for x, y, r in coords:
            body.append(f'<line x1="{x:.1f}" y1="{_y(r["ci_low"]):.1f}" x2="{x:.1f}" y2="{_y(r["ci_high"]):.1f}" '
                        f'stroke="{c}"/><circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{c}">'
                        f'<title>{_e(name)} {_e(r["reasoning_effort"])}: {100 * r["accuracy"]:.1f}%</title></circle>')
    body += _legend(sorted(series))
    return _frame("Accuracy vs reasoning effort", body, "reasoning effort", "accuracy")


def accuracy_vs_cost(rows: Sequence[Mapping[str, Any]]) -> str:
    pts = [r for r in rows if r["graded"]]
    body = _y_ticks()
    if pts:
        costs = [max(r["cost_usd"], 1e-6) for r in pts]
        lo, hi = math.log10(min(costs)), math.log10(max(costs))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        names = sorted({_series(r) for r in pts})
        for k in range(math.floor(lo), math.ceil(hi) + 1):
            x = PAD + 8 + (k - lo) / (hi - lo) * (X1 - PAD - 16)
            if PAD <= x <= X1:
                body.append(f'<text x="{x:.1f}" y="{H - PAD + 16}" text-anchor="middle" font-size="10">'
                            f'${10 ** k:g}</text>')
        for r, c in zip(pts, costs):
            x = PAD + 8 + (math.log10(c) - lo) / (hi - lo) * (X1 - PAD - 16)
            col = PALETTE[names.index(_series(r)) % 10]
            body.append(f'<circle cx="{x:.1f}" cy="{_y(r["accuracy"]):.1f}" r="4" fill="{col}">'
                        f'<title>{_e(r["benchmark"])} {_e(r["reasoning_effort"])}: {100 * r["accuracy"]:.1f}% at '
                        f'${r["cost_usd"]:.4f}</title></circle>'
                        f'<text x="{x + 6:.1f}" y="{_y(r["accuracy"]) - 4:.1f}" font-size="9">'
                        f'{_e(r["reasoning_effort"][:1])}</text>')
        body += _legend(names)
    return _frame("Accuracy vs cost", body, "cost (USD, log scale)", "accuracy")


def length_histograms(records: Sequence[Mapping[str, Any]], bins: int = 20) -> str:
    by_effort: dict[str, list[int]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            by_effort[r["reasoning_effort"]].append(int((r.get("usage") or {}).get("completion_tokens") or 0))
    efforts = [e for e in REASONING_EFFORTS if e in by_effort] + sorted(set(by_effort) - set(REASONING_EFFORTS))
    body: list[str] = []
    allv = [v for e in efforts for v in by_effort[e]]
    if allv:
        top = max(allv) or 1
        width = top / bins
        counts = {e: [0] * bins for e in efforts}
        for e in efforts:
            for v in by_effort[e]:
                counts[e][min(bins - 1, int(v / width) if width else 0)] += 1
        peak = max(max(c) for c in counts.values()) or 1
        slot = (X1 - PAD) / bins
        bw = slot / max(1, len(efforts))
        for j, e in enumerate(efforts):
            for i, n in enumerate(counts[e]):
                if not n:
                    continue
                h = n / peak * (H - 1.5 * PAD)
                body.append(f'<rect x="{PAD + i * slot + j * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw:.1f}" '
                            f'height="{h:.1f}" fill="{PALETTE[j % 10]}"><title>{_e(e)}: {n} samples with '
                            f'{int(i * width)}-{int((i + 1) * width)} tokens</title></rect>')
        for k in range(0, bins + 1, 5):
            body.append(f'<text x="{PAD + k * slot:.1f}" y="{H - PAD + 16}" text-anchor="middle" font-size="10">'
                        f'{int(k * width)}</text>')
        body += _legend(efforts)
    return _frame("Completion length by reasoning effort", body, "completion tokens per sample", "samples")


def fmt_meta(value: Any) -> str:
    """A meta value for people: a dict as 'key: value' pairs (never a Python dict's repr), lists comma-joined."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt_meta(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_meta(v) for v in value)
    return str(value)


def render(rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
           prices=None) -> str:
    from evals.report import Prices  # noqa: PLC0415
    from evals.viewer import CSS, link, render_viewer  # noqa: PLC0415

    header, body = table_cells(rows)
    linked = {header.index(h) for h in ("Executions", "Accuracy (95% CI)")}
    cells = []
    for row, b in zip(rows, body):
        cells.append("<tr>" + "".join(
            f'<td><a href="{_e(link(row))}">{_e(c)}</a></td>' if i in linked else f"<td>{_e(c)}</td>"
            for i, c in enumerate(b)) + "</tr>")
    table = ("<table id='summary'><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>"
             "<tbody>" + "".join(cells) + "</tbody></table>")
    meta_html = "".join(f"<li><b>{_e(k)}</b>: {_e(fmt_meta(v))}</li>" for k, v in meta.items())
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>gptoss-jax eval report</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "th{background:#f4f4f4}.plots svg{margin:0 1em 1em 0;border:1px solid #eee}" + CSS + "</style></head><body>"
            f"<h1>Eval report</h1><ul>{meta_html}</ul>{table}<p><small>{_e(FOOTNOTE)} Click an Executions or "
            "Accuracy cell to see its samples.</small></p>"
            f"<div class='plots'>{accuracy_vs_effort(rows)}{accuracy_vs_cost(rows)}{length_histograms(records)}"
            f"</div>{render_viewer(records, prices or Prices())}</body></html>")
