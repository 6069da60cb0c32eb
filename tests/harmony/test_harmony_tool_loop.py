"""The function-calling loop with a fake engine: scripted completions, or a random-logit model under the
tool_choice constraint (so 'required' / named / 'none' are shown to be enforced, not hoped for)."""
import json
import os

import numpy as np
import pytest

from gptoss_jax.harmony import constrain as C
from gptoss_jax.harmony import tokenizer as tok
from gptoss_jax.harmony.tools.browser import BrowserTool
from gptoss_jax.harmony.tools.browser_backend import LocalFolderBackend
from gptoss_jax.harmony.tools.functions import ToolLoopError, run_tool_loop
from gptoss_jax.harmony.tools.python_tool import PythonTool

ENC = tok.get_encoding()
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "integer"}, "b": {"type": "integer"}},
                                          "required": ["a", "b"]}}},
]
CALL = "<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>commentary to=functions.{name} " \
       "<|constrain|>json<|message|>{args}<|call|>"
FINAL = "<|channel|>analysis<|message|>{thought}<|end|><|start|>assistant<|channel|>final<|message|>{answer}<|return|>"


class FakeEngine:
    """Plays scripted completions; under a constraint it samples random logits at temperature 1.0 instead."""

    def __init__(self, scripts, seed=0):
        self.scripts = list(scripts)
        self.prompts = []
        self.constraints = []
        self.rng = np.random.default_rng(seed)

    def __call__(self, prompt_ids, *, stop_token_ids, constraint=None, max_tokens):
        assert set(stop_token_ids) == {tok.RETURN, tok.CALL}
        self.prompts.append(list(prompt_ids))
        self.constraints.append(constraint)
        if constraint is not None:
            row = np.empty(C.BITMASK_WORDS, dtype=np.int32)
            out = []
            while not constraint.is_finished() and len(out) < max_tokens:
                constraint.fill_bitmask(row)
                logits = self.rng.standard_normal(tok.VOCAB_SIZE, dtype=np.float32)
                logits[~C.allowed_tokens(row)] = -np.inf
                t = int(np.argmax(logits + self.rng.gumbel(size=tok.VOCAB_SIZE)))
                constraint.advance(t)
                out.append(t)
                if t in stop_token_ids:
                    break
            if self.scripts and self.scripts[0] == "<constrained>":
                self.scripts.pop(0)
            return out
        tokens = ENC.encode(self.scripts.pop(0), allowed_special="all")
        for i, t in enumerate(tokens):
            if t in stop_token_ids:
                return tokens[: i + 1]
        return tokens[:max_tokens]


def weather(city):
    return {"city": city, "temp_c": -3}


IMPLS = {"get_weather": weather, "add": lambda a, b: a + b}


def test_auto_call_result_and_final_answer():
    engine = FakeEngine([CALL.format(thought="Need weather.", name="get_weather", args='{"city":"Oslo"}'),
                         FINAL.format(thought="Got it.", answer="It is -3°C in Oslo.")])
    out = run_tool_loop(engine, [{"role": "user", "content": "Weather in Oslo?"}], TOOLS, IMPLS, current_date=False)
    assert out.content == "It is -3°C in Oslo." and out.finish_reason == "stop" and out.rounds == 2
    assert out.reasoning == "Need weather.\nGot it."
    assert [(c.recipient, c.error) for c in out.calls] == [("functions.get_weather", False)]
    second_prompt = ENC.decode(engine.prompts[1])
    assert second_prompt.endswith(
        '<|start|>assistant<|channel|>analysis<|message|>Need weather.<|end|>'
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>'
        '{"city":"Oslo"}<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>'
        '{"city": "Oslo", "temp_c": -3}<|end|><|start|>assistant')
    roles = [m["role"] for m in out.messages]
    assert roles == ["assistant", "tool", "assistant"]
    assert out.messages[0]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert out.messages[1]["tool_call_id"] == out.messages[0]["tool_calls"][0]["id"]


@pytest.mark.parametrize("name, args, needle", [
    ("get_weather", '{"city": "Oslo"', "not valid JSON"),
    ("nope", "{}", "unknown function 'nope'"),
    ("add", '{"a": 1}', "bad arguments for add"),
    ("add", '[1, 2]', "must be a JSON object"),
])
def test_bad_calls_become_error_results(name, args, needle):
    engine = FakeEngine([CALL.format(thought="t", name=name, args=args), FINAL.format(thought="t", answer="ok")])
    out = run_tool_loop(engine, [{"role": "user", "content": "x"}], TOOLS, IMPLS, current_date=False)
    assert out.content == "ok" and out.calls[0].error
    assert needle in json.loads(out.calls[0].result)["error"]


def test_exceptions_in_tools_are_reported_to_the_model():
    def broken(city):
        raise RuntimeError("service down")

    engine = FakeEngine([CALL.format(thought="t", name="get_weather", args='{"city":"X"}'),
                         FINAL.format(thought="t", answer="sorry")])
    out = run_tool_loop(engine, [{"role": "user", "content": "x"}], TOOLS, {"get_weather": broken},
                        current_date=False)
    assert "RuntimeError: service down" in out.calls[0].result
    assert "service down" in ENC.decode(engine.prompts[1])


def test_required_forces_a_call_even_from_a_model_that_would_not_call():
    engine = FakeEngine(["<constrained>", FINAL.format(thought="t", answer="done")], seed=3)
    out = run_tool_loop(engine, [{"role": "user", "content": "hi"}], TOOLS, IMPLS, tool_choice="required",
                        current_date=False, max_tokens=96, max_analysis_tokens=16)
    assert engine.constraints[0] is not None and engine.constraints[1] is None  # only the first round
    assert len(out.calls) == 1 and out.calls[0].recipient in ("functions.get_weather", "functions.add")
    assert out.content == "done"


def test_named_function_is_the_one_called():
    engine = FakeEngine(["<constrained>", FINAL.format(thought="t", answer="sum done")], seed=4)
    out = run_tool_loop(engine, [{"role": "user", "content": "add"}], TOOLS, IMPLS,
                        tool_choice={"type": "function", "function": {"name": "add"}}, current_date=False,
                        max_tokens=96, max_analysis_tokens=16)
    assert out.calls[0].recipient == "functions.add" and not out.calls[0].error
    args = json.loads(out.calls[0].arguments)
    assert out.calls[0].result == str(args["a"] + args["b"])


def test_none_never_calls():
    engine = FakeEngine(["<constrained>"], seed=5)
    out = run_tool_loop(engine, [{"role": "user", "content": "x"}], TOOLS, IMPLS, tool_choice="none",
                        current_date=False, max_tokens=64, max_analysis_tokens=8)
    assert out.calls == () and out.content is not None and out.finish_reason == "stop"


def test_max_rounds_stops_a_model_that_keeps_calling():
    call = CALL.format(thought="again", name="add", args='{"a":1,"b":2}')
    engine = FakeEngine([call] * 3)
    out = run_tool_loop(engine, [{"role": "user", "content": "x"}], TOOLS, IMPLS, max_rounds=3, current_date=False)
    assert out.finish_reason == "max_rounds" and out.rounds == 3 and len(out.calls) == 3


def test_generate_fn_returning_garbage_is_a_clear_error():
    with pytest.raises(ToolLoopError, match="list of token ids"):
        run_tool_loop(lambda *a, **k: "text", [{"role": "user", "content": "x"}], TOOLS, IMPLS, current_date=False)


def test_builtin_python_tool_runs_in_the_sandbox():
    engine = FakeEngine(["<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>",
                         FINAL.format(thought="It printed 42.", answer="42")])
    out = run_tool_loop(engine, [{"role": "user", "content": "6*7?"}], None, {}, builtin_tools=[PythonTool()],
                        current_date=False)
    assert out.calls[0].recipient == "python" and out.calls[0].result.strip() == "42"
    prompt = ENC.decode(engine.prompts[1])
    assert "# Tools\n\n## python\n\nUse this tool" in prompt
    assert prompt.endswith("<|start|>python to=assistant<|channel|>analysis<|message|>42<|end|><|start|>assistant")
    assert out.content == "42"


def test_builtin_python_tool_without_a_sandbox_tells_the_model_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    engine = FakeEngine([f"<|channel|>analysis to=python code<|message|>open({str(marker)!r}, 'w')<|call|>",
                         FINAL.format(thought="No sandbox.", answer="cannot run code")])
    out = run_tool_loop(engine, [{"role": "user", "content": "run it"}], None, {},
                        builtin_tools=[PythonTool(bwrap_path=str(tmp_path / "no-bwrap"))], current_date=False)
    call = out.calls[0]
    assert call.error and "SandboxUnavailable" in call.result and "no-bwrap" in call.result
    assert not marker.exists() and out.content == "cannot run code"


def test_builtin_browser_search_open_find_and_citations(tmp_path):
    (tmp_path / "jax.md").write_text("# JAX\nJAX is a library for array computing.\nIt uses XLA to compile.\n")
    (tmp_path / "cats.txt").write_text("Cats\nCats are small carnivorous mammals.\nThey purr.\n")
    (tmp_path / "index.html").write_text("<html><title>Index</title><body><p>See <a href='jax.md'>the JAX page"
                                         "</a> for compiling.</p></body></html>")
    browser = BrowserTool(LocalFolderBackend(str(tmp_path)))
    engine = FakeEngine([
        '<|channel|>analysis to=browser.search <|constrain|>json<|message|>{"query":"compile arrays XLA","topn":2}'
        "<|call|>",
        '<|channel|>analysis to=browser.open <|constrain|>json<|message|>{"id":0,"cursor":0}<|call|>',
        '<|channel|>analysis to=browser.find <|constrain|>json<|message|>{"pattern":"XLA"}<|call|>',
        FINAL.format(thought="found", answer="JAX compiles with XLA 【1†L2】.")])
    out = run_tool_loop(engine, [{"role": "user", "content": "How does JAX compile?"}], None, {},
                        builtin_tools=[browser], current_date=False)
    assert [c.recipient for c in out.calls] == ["browser.search", "browser.open", "browser.find"]
    assert out.calls[0].result.startswith("[0] Search results for `compile arrays XLA`")
    assert "【0†JAX†local】" in out.calls[0].result
    assert out.calls[1].result.startswith("[1] JAX (local://jax.md)\n**viewing lines [0 - 2] of 2**")
    assert "L2: It uses XLA to compile." in out.calls[1].result
    assert "match at L2" in out.calls[2].result
    cites = browser.citations(out.content)
    assert cites[0]["url"] == "local://jax.md" and cites[0]["text"] == "It uses XLA to compile."
    assert "## browser" in ENC.decode(engine.prompts[0])


def test_browser_errors_are_results_not_crashes(tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta\n")
    browser = BrowserTool(LocalFolderBackend(str(tmp_path)))
    assert "error" in json.loads(browser.call("browser.open", '{"id": 3}'))
    assert "unknown browser function" in browser.call("browser.fly", "{}")
    assert "not valid JSON" in browser.call("browser.search", "{query")
    assert "no document" in browser.call("browser.open", '{"id": "local://missing.txt"}')
    res = browser.call("browser.search", '{"query": "alpha"}')
    assert "【0†alpha beta†local】" in res
    page = browser.call("browser.open", '{"id": 0, "cursor": 0}')
    assert page.startswith("[1] alpha beta (local://a.txt)")
    html = os.path.join(tmp_path, "x.html")
    with open(html, "w") as f:
        f.write("<title>T</title><a href='a.txt'>go</a>")
    b2 = BrowserTool(LocalFolderBackend(str(tmp_path)))
    opened = b2.call("browser.open", '{"id": "local://x.html"}')
    assert "【0†go†local】" in opened
    assert b2.call("browser.open", '{"id": 0}').startswith("[1] alpha beta")
