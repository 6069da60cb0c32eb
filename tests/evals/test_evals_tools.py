"""Tool-using evals: --tools=python through a loopback OpenAI-compatible endpoint (scripted tool calls, the code runs
in the project's sandbox, its output goes back, the transcript is recorded, the final answer graded) and through
the local engine (a scripted token stream on the real batching loop, then the synthetic model: the loop closes)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evals.backends.base import BackendConfig, Request, Sampling
from evals.backends.endpoint import EndpointBackend
from evals.records import load_records, record_files
from evals.registry import get_task, load_task
from evals.runner import SweepConfig, run_sweep
from evals.tooluse import ToolConfig
from tests.evals.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


def _aime_targets(cache_dir):
    lt = load_task(get_task("aime2025"), cache_dir=cache_dir, offline=True)
    return {s.fields["question"]: int(s.target) for s in lt.samples}


def _tool_server(targets, wrong=False):
    """Turn 1: a python call computing the answer the long way; turn 2: \\boxed{} of what the tool printed."""
    def respond(body):
        msgs = body["messages"]
        tool_msgs = [m for m in msgs if m["role"] == "tool"]
        names = [t["function"]["name"] for t in body.get("tools") or []]
        assert names == ["python"], names
        if not tool_msgs:
            question = next(q for q in targets if q in msgs[-1]["content"])
            n = targets[question] + (1 if wrong else 0)
            code = f"total = sum(1 for _ in range({n}))\nprint(total)"
            return {"content": "", "reasoning": "Let me compute it.",
                    "tool_calls": [{"id": "call_1", "name": "python", "arguments": json.dumps({"code": code})}]}
        printed = tool_msgs[-1]["content"].strip()
        return {"content": f"The computation gives {printed}.\n\n\\boxed{{{printed}}}", "reasoning": "Done."}
    return FakeOpenAI(respond)


@pytest.mark.parametrize("wrong", [False, True], ids=["right", "wrong"])
def test_aime_with_python_through_an_endpoint(cache_dir, tmp_path, wrong):
    targets = _aime_targets(cache_dir)
    with _tool_server(targets, wrong) as srv:
        backend = EndpointBackend(BackendConfig(kind="endpoint", base_url=srv.url, model="m", api_key="k",
                                                concurrency=2, max_retries=0))
        o = run_sweep(SweepConfig(tasks=("aime2025",), efforts=("low",), repeats=1, tools=(("python",),),
                                  tool_config=ToolConfig(python_timeout_s=20)),
                      backend, tmp_path, cache_dir=cache_dir, offline=True, progress=False, log=lambda m: None)
        backend.close()
        seen = list(srv.seen)
    assert o.ran == len(targets) and o.failed == 0
    recs = list(load_records(record_files(tmp_path)).values())
    for r in recs:
        assert r["builtin_tools"] == ["python"] and "+tools=python" in r["key"]
        assert r["score"] == (0.0 if wrong else 1.0)
        tr = r["output"]["transcript"]
        assert [e["type"] for e in tr] == ["assistant", "tool", "assistant"]
        call = tr[1]
        assert call["tool"] == "python" and "sum(1 for _ in range" in call["input"]
        assert call["output"].strip() == str(r["parsed"])  # the sandbox ran the code and its stdout came back
        assert 0 < call["seconds"] <= r["output"]["tool_seconds"] <= r["latency_s"]
        assert r["ended_at"] - r["started_at"] >= r["output"]["tool_seconds"]  # tool time is in the duration
        assert r["output"]["rounds"] == 2 and r["output"]["reasoning"] == "Let me compute it.\nDone."
    second_turns = [b for b in seen if any(m["role"] == "tool" for m in b["messages"])]
    assert len(second_turns) == len(targets)
    for b in second_turns:  # the tool call and its result went back in OpenAI's shape
        asst, tool = b["messages"][-2], b["messages"][-1]
        assert asst["tool_calls"][0]["function"]["name"] == "python" and tool["tool_call_id"] == "call_1"


def test_cli_tools_flag_and_table(cache_dir, tmp_path):
    targets = _aime_targets(cache_dir)
    with _tool_server(targets) as srv:
        p = subprocess.run([sys.executable, "-m", "evals.cli", "--tasks=aime2025", "--reasoning_efforts=low",
                            "--repeats=1", "--tools=python", f"--base_url={srv.url}", "--model=m", "--api_key=k",
                            f"--cache_dir={cache_dir}", "--offline", f"--output_dir={tmp_path / 'run'}",
                            "--noprogress"], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr
    header, row = [ln for ln in p.stdout.splitlines() if ln.startswith(("Benchmark", "AIME"))]
    assert "Tools" in header and "python" in row and "100.0%" in row
    assert "HTTP Request" not in p.stderr  # quiet logs
    r = subprocess.run([sys.executable, "-m", "evals.cli", "--tasks=aime2025", "--tools=browser",
                        "--base_url=http://127.0.0.1:9/v1", "--model=m", f"--output_dir={tmp_path / 'x'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--tools=browser needs a search backend" in r.stderr


# ---- the local engine ------------------------------------------------------------------------------------------------
def _harmony(text):
    from gptoss_jax.harmony import tokenizer as tok
    ids = []
    for part in re.split(r"(<\|[a-z_]+\|>)", text):
        if part.startswith("<|"):
            ids.append(tok.special_token_id(part))
        elif part:
            ids += tok.encode_text(part)
    return ids


class ScriptedEngine:
    """Stands in for gptoss_jax.engine.Engine on the backend's batching loop: each request's completion is chosen
    by a function of its prompt tokens; one token per step, several requests at once."""

    def __init__(self, reply, num_slots=2, max_len=4096):
        from gptoss_jax.engine import Result
        self._Result, self.reply = Result, reply
        self.num_slots, self.max_len = num_slots, max_len
        self.slots = [None] * num_slots
        self.queue, self.results, self.prompts, self._n = [], {}, [], 0

    def submit(self, req):
        self._n += 1
        rid = req.id or f"r{self._n}"
        self.prompts.append(list(req.prompt))
        self.queue.append([rid, list(req.prompt), self.reply(list(req.prompt)), 0])
        return rid

    def step(self):
        class Slot:
            def __init__(self, rid):
                self.id = rid
        events = []
        active = self.queue[:self.num_slots]
        for item in active:
            rid, prompt, out, i = item
            item[3] += 1
            done = item[3] >= len(out)
            events.append(type("Ev", (), {"request_id": rid, "finish_reason": "stop" if done else None})())
            if done:
                self.results[rid] = self._Result(rid, len(prompt), len(out), out, "stop")
                self.queue.remove(item)
        self.slots = [Slot(x[0]) for x in self.queue[:self.num_slots]] + [None] * 2
        return events

    def result(self, rid):
        return self.results.pop(rid)

    def cancel(self, rid):
        pass

    def close(self):
        pass


def test_local_tool_loop_runs_the_sandbox_and_batches(tmp_path):
    from gptoss_jax.harmony import tokenizer as tok
    from evals.backends.local import LocalBackend

    def reply(prompt):
        text = tok.get_encoding().decode(prompt)
        printed = re.findall(r"<\|start\|>python to=assistant<\|channel\|>analysis<\|message\|>(.*?)<\|end\|>",
                             text, re.S)
        if not printed:  # first turn: think, then call the python tool
            return _harmony("<|channel|>analysis<|message|>Compute.<|end|><|start|>assistant<|channel|>analysis"
                            " to=python code<|message|>print(6 * 7)<|call|>")
        return _harmony(f"<|channel|>final<|message|>\\boxed{{{printed[-1].strip()}}}<|return|>")

    b = LocalBackend(BackendConfig(kind="local", model="demo", extra={"max_len": "4096"}))
    b.engine, b.model = ScriptedEngine(reply), object()
    reqs = [Request(id=f"q{i}", messages=({"role": "user", "content": f"question {i}"},), reasoning_effort="low",
                    sampling=Sampling(max_tokens=64, seed=i), builtin_tools=("python",)) for i in range(3)]
    plain = Request(id="plain", messages=({"role": "user", "content": "hi"},), sampling=Sampling(max_tokens=8))
    out = dict(b.complete_many(iter(reqs + [plain])))
    assert set(out) == {"q0", "q1", "q2", "plain"}
    for i in range(3):
        r = out[f"q{i}"]
        assert r.ok, r.error
        assert r.content == "\\boxed{42}" and r.rounds == 2 and r.finish_reason == "stop"
        kinds = [(e["type"], e.get("recipient") or e.get("tool")) for e in r.transcript]
        assert kinds == [("assistant", None), ("assistant", "python"), ("tool", "python"), ("assistant", None)]
        assert r.transcript[2]["output"].strip() == "42" and r.tool_seconds > 0
        assert r.prompt_tokens > 0 and r.completion_tokens > 0 and r.latency_s >= r.tool_seconds
    # the python tool was rendered in the system message, as harmony's built-in
    prompts = [tok.get_encoding().decode(p) for p in b.engine.prompts]
    tool_prompt = next(p for p in prompts if "question 0" in p)
    assert "## python" in tool_prompt and "## python" not in next(p for p in prompts if "<|message|>hi<" in p)
    assert len(prompts) == 3 * 2 + 1


@pytest.mark.slow
def test_local_tool_loop_closes_on_the_synthetic_model(tmp_path):
    from evals.backends.local import LocalBackend
    b = LocalBackend(BackendConfig(kind="local", model="demo", extra={
        "num_slots": "2", "max_len": "512", "synthetic_dir": str(tmp_path), "dtype": "float32"}))
    try:
        reqs = [Request(id=f"q{i}", messages=({"role": "user", "content": f"What is {i} + {i}?"},),
                        reasoning_effort="low", sampling=Sampling(max_tokens=16, seed=i),
                        builtin_tools=("python",), tool_config=ToolConfig(max_rounds=3)) for i in range(2)]
        out = dict(b.complete_many(iter(reqs)))
    finally:
        b.close()
    assert set(out) == {"q0", "q1"}
    for r in out.values():  # random weights: accuracy is meaningless, but every loop ends with a result
        assert r.ok, r.error
        assert 1 <= r.rounds <= 3 and r.transcript and r.transcript[0]["type"] == "assistant"
        assert r.completion_tokens > 0 and r.device_seconds > 0
