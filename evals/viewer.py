"""The transcript viewer inside report.html, in the spirit of ``inspect view``: every sample of the sweep, filterable
by task, reasoning effort, tool set and outcome (correct / wrong / failed), and a per-sample view with the prompt,
the chain of thought, each tool call and its result, the answer, the extracted answer, the target, the grade and the
grader's rationale, tokens, cost and time. Each summary-table cell links to its samples (``#view?task=..``): the
viewer's state lives in the URL fragment, so a link, the back button and a bookmark all reopen the same view.

Self-contained: the records are embedded as JSON and the page's script is inline; nothing is fetched. Long texts
are cut at ``MAX_TEXT`` characters per field (the records file keeps everything).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

MAX_TEXT = 40_000


def outcome(rec: Mapping[str, Any]) -> str:
    if rec.get("status") != "ok":
        return "failed"
    return "correct" if (rec.get("score") or 0) >= 1 else "wrong"


def _cut(x: Any) -> Any:
    if isinstance(x, str) and len(x) > MAX_TEXT:
        return x[:MAX_TEXT] + f"\n[... {len(x) - MAX_TEXT} more characters in records.jsonl ...]"
    if isinstance(x, dict):
        return {k: _cut(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_cut(v) for v in x]
    return x


def sample_rows(records: Sequence[Mapping[str, Any]], prices) -> list[dict[str, Any]]:
    """What the viewer shows of each record (cost computed here with the report's prices)."""
    out = []
    for r in sorted(records, key=lambda r: (r.get("task", ""), r.get("reasoning_effort", ""), r.get("key", ""))):
        output = r.get("output") or {}
        cost = prices.token_cost(r.get("usage") or {}) + prices.token_cost(r.get("grader_usage") or {})
        cost += (r.get("device_seconds") or 0.0) * prices.device_hour / 3600.0
        out.append(_cut({
            "key": r.get("key"), "task": r.get("task"), "benchmark": r.get("benchmark"),
            "effort": r.get("reasoning_effort"), "sampling": r.get("sampling_key"),
            "tools": "+".join(r.get("builtin_tools") or []) or "none", "sample_id": r.get("sample_id"),
            "repeat": r.get("repeat"), "outcome": outcome(r), "score": r.get("score"), "error": r.get("error"),
            "prompt": r.get("prompt") or [], "reasoning": output.get("reasoning") or "",
            "content": output.get("content") or "", "tool_calls": output.get("tool_calls") or [],
            "transcript": output.get("transcript") or [], "parsed": r.get("parsed"), "target": r.get("target"),
            "grade": r.get("grade_details") or {}, "usage": r.get("usage") or {},
            "grader_usage": r.get("grader_usage") or {}, "cost": cost, "latency": r.get("latency_s"),
            "tool_seconds": output.get("tool_seconds") or 0.0, "finish": output.get("finish_reason"),
            "data": r.get("data") or {}}))
    return out


def link(row: Mapping[str, Any], **extra: str) -> str:
    """The fragment that opens the viewer on one table row's samples."""
    from urllib.parse import urlencode  # noqa: PLC0415

    q = {"task": row["task"], "effort": row["reasoning_effort"], "tools": row.get("tools") or "none",
         "sampling": row["sampling"], **extra}
    return "#view?" + urlencode(q)


CSS = """
#viewer{margin-top:2em;border-top:2px solid #ccc;padding-top:1em}
#filters label{margin-right:1em}#filters select{margin-left:.3em}
#layout{display:flex;gap:1em;align-items:flex-start}
#list{width:34%;max-height:80vh;overflow:auto;border:1px solid #ddd}
#list .item{padding:4px 8px;border-bottom:1px solid #eee;cursor:pointer;font-size:13px}
#list .item:hover,#list .item.sel{background:#eef4ff}
.correct{color:#1a7f37}.wrong{color:#b35900}.failed{color:#cf222e}
#detail{flex:1;min-width:0}#detail pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;
padding:8px;border-radius:4px;max-height:40vh;overflow:auto;font-size:12px}
#detail h3{margin:.8em 0 .3em}.kv td{border:none;padding:1px 8px 1px 0}.tool{border-left:3px solid #9467bd;
padding-left:8px;margin:6px 0}.turn{border-left:3px solid #1f77b4;padding-left:8px;margin:6px 0}
"""

SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById('samples-data').textContent);
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s === null || s === undefined ? '' : s).replace(/[&<>"]/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const show = (v) => typeof v === 'string' ? v : JSON.stringify(v, null, 2);
function options(sel, values, label){
  sel.innerHTML = '<option value="">' + label + '</option>' +
    values.map(v => '<option value="' + esc(v) + '">' + esc(v) + '</option>').join('');
}
const uniq = (k) => [...new Set(data.map(d => d[k]))].sort();
options($('f-task'), uniq('task'), 'all tasks');
options($('f-effort'), uniq('effort'), 'all efforts');
options($('f-tools'), uniq('tools'), 'any tools');
options($('f-outcome'), ['correct', 'wrong', 'failed'], 'all outcomes');
let state = {task:'', effort:'', tools:'', sampling:'', outcome:'', sample:''};
function readHash(){
  const h = location.hash;
  state = {task:'', effort:'', tools:'', sampling:'', outcome:'', sample:''};
  if (h.startsWith('#view?')) {
    const q = new URLSearchParams(h.slice(6));
    for (const k of Object.keys(state)) if (q.has(k)) state[k] = q.get(k);
  }
  $('f-task').value = state.task; $('f-effort').value = state.effort;
  $('f-tools').value = state.tools; $('f-outcome').value = state.outcome;
}
function writeHash(){
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) if (v) q.set(k, v);
  const h = '#view?' + q.toString();
  if (location.hash !== h) history.replaceState(null, '', h);
}
function match(d){
  return (!state.task || d.task === state.task) && (!state.effort || d.effort === state.effort) &&
    (!state.tools || d.tools === state.tools) && (!state.sampling || d.sampling === state.sampling) &&
    (!state.outcome || d.outcome === state.outcome);
}
function renderList(){
  const rows = data.filter(match);
  $('count').textContent = rows.length + ' of ' + data.length + ' samples';
  $('list').innerHTML = rows.map(d => '<div class="item' + (d.key === state.sample ? ' sel' : '') +
    '" data-key="' + esc(d.key) + '"><span class="' + d.outcome + '">' + (d.outcome === 'correct' ? '&#10003;' :
    d.outcome === 'wrong' ? '&#10007;' : '!') + '</span> ' + esc(d.task) + ' &middot; ' + esc(d.effort) +
    (d.tools !== 'none' ? ' &middot; ' + esc(d.tools) : '') + ' &middot; #' + esc(d.sample_id) + ' r' + esc(d.repeat) +
    ' &middot; <span class="' + d.outcome + '">' + esc(d.outcome) + (d.score !== null && d.score !== undefined ?
    ' (' + (+d.score).toFixed(2) + ')' : '') + '</span></div>').join('');
  for (const el of $('list').querySelectorAll('.item'))
    el.addEventListener('click', () => { state.sample = el.dataset.key; writeHash(); render(); });
}
function section(title, body){ return '<h3>' + title + '</h3>' + body; }
function renderDetail(){
  const d = data.find(x => x.key === state.sample);
  if (!d) { $('detail').innerHTML = '<p>Select a sample.</p>'; return; }
  let h = '<h2 id="sample-title">' + esc(d.benchmark) + ' #' + esc(d.sample_id) + ' (repeat ' + esc(d.repeat) +
    ', ' + esc(d.effort) + ')</h2>';
  const u = d.usage || {};
  h += '<table class="kv">' + [
    ['outcome', '<span class="' + d.outcome + '">' + esc(d.outcome) + '</span>'], ['score', esc(d.score)],
    ['extracted answer', '<code id="parsed">' + esc(show(d.parsed)) + '</code>'],
    ['target', '<code>' + esc(show(d.target)) + '</code>'],
    ['tokens', esc((u.prompt_tokens || 0) + ' prompt (' + (u.cached_tokens || 0) + ' cached), ' +
      (u.completion_tokens || 0) + ' completion' + (u.reasoning_tokens ? ' (' + u.reasoning_tokens +
      ' reasoning)' : ''))],
    ['cost', '$' + (+d.cost).toFixed(6)], ['time', esc((+d.latency || 0).toFixed(2) + ' s' +
      (d.tool_seconds ? ' (' + (+d.tool_seconds).toFixed(2) + ' s in tools)' : ''))],
    ['finish', esc(d.finish)], ['tools', esc(d.tools)], ['sampling', esc(d.sampling)],
    ['data', esc((d.data.source || '') + (d.data.fallback ? ' (fallback)' : ''))]
  ].map(r => '<tr><td><b>' + r[0] + '</b></td><td>' + r[1] + '</td></tr>').join('') + '</table>';
  if (d.error) h += section('Error', '<pre class="failed">' + esc(d.error) + '</pre>');
  h += section('Prompt', d.prompt.map(m => '<div class="turn"><b>' + esc(m.role) + '</b><pre>' +
    esc(show(m.content)) + '</pre></div>').join(''));
  if (d.reasoning) h += section('Chain of thought', '<pre id="reasoning">' + esc(d.reasoning) + '</pre>');
  if (d.transcript.length) h += section('Tool calls', d.transcript.map(e => e.type === 'tool' ?
    '<div class="tool"><b>' + esc(e.tool) + '</b> (' + (+e.seconds || 0).toFixed(3) + ' s' +
    (e.error ? ', error' : '') + ')<pre>' + esc(e.input) + '</pre><b>result</b><pre class="tool-output">' +
    esc(e.output) + '</pre></div>' :
    '<div class="turn"><b>assistant</b>' + (e.channel ? ' [' + esc(e.channel) + ']' : '') +
    (e.recipient ? ' to ' + esc(e.recipient) : '') + '<pre>' + esc(e.text !== undefined ? e.text :
    [e.reasoning, e.content, (e.tool_calls || []).map(t => t.name + ' ' + t.arguments).join('\n')]
      .filter(Boolean).join('\n\n')) + '</pre></div>').join(''));
  if (d.tool_calls.length) h += section('Function calls', '<pre>' + esc(show(d.tool_calls)) + '</pre>');
  h += section('Answer', '<pre id="answer">' + esc(d.content) + '</pre>');
  h += section('Grade', '<pre id="grade">' + esc(show(d.grade)) + '</pre>');
  if (Object.keys(d.grader_usage || {}).length)
    h += section('Grader usage', '<pre>' + esc(show(d.grader_usage)) + '</pre>');
  $('detail').innerHTML = h;
}
function render(){ renderList(); renderDetail(); }
for (const [id, k] of [['f-task','task'],['f-effort','effort'],['f-tools','tools'],['f-outcome','outcome']])
  $(id).addEventListener('change', () => {
    state[k] = $(id).value; state.sampling = '';
    writeHash(); render(); });
window.addEventListener('hashchange', () => { readHash(); render();
  if (location.hash.startsWith('#view')) $('viewer').scrollIntoView(); });
readHash(); render();
if (location.hash.startsWith('#view')) $('viewer').scrollIntoView();
})();
"""


def render_viewer(records: Sequence[Mapping[str, Any]], prices) -> str:
    data = json.dumps(sample_rows(records, prices), ensure_ascii=False, default=str)
    data = data.replace("</", "<\\/")  # the JSON cannot end its <script> element
    return ("<section id='viewer'><h2>Samples</h2><div id='filters'>"
            "<label>Task<select id='f-task'></select></label><label>Reasoning<select id='f-effort'></select></label>"
            "<label>Tools<select id='f-tools'></select></label><label>Outcome<select id='f-outcome'></select></label>"
            "<span id='count'></span></div><div id='layout'><div id='list'></div><div id='detail'></div></div>"
            f"<script id='samples-data' type='application/json'>{data}</script>"
            f"<script>{SCRIPT}</script></section>")
