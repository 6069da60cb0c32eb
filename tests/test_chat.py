"""The harmony <-> engine glue (gptoss_jax/chat.py) and the chat CLI's tool turn."""
import dataclasses
import io
import json

import pytest
from absl import flags

import gptoss_jax
from gptoss_jax import chat as chat_lib
from gptoss_jax import harmony
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.cli import chat_flags
from gptoss_jax.config import PRESETS
from gptoss_jax.engine import Engine, SamplingParams

enc = harmony.get_encoding()
USER = [{"role": "user", "content": "What is 6 times 7?"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = synthetic.write_checkpoint(str(tmp_path_factory.mktemp("demo") / "demo"), PRESETS["demo"], seed=4)
    e = Engine(gptoss_jax.load(path, dtype="float32", show_progress=False), num_slots=2, max_len=256,
               prefill_chunk=128, decode_steps=4)
    yield e
    e.close()


def test_request_renders_harmony_with_assistant_stops_and_constraints():
    req = chat_lib.to_engine_request(chat_lib.ChatRequest(USER, reasoning_effort="high",
                                                          sampling=SamplingParams(max_tokens=9)))
    assert req.prompt == harmony.render_chat(USER, None, "high")
    assert "Reasoning: high" in enc.decode(req.prompt)
    assert set(req.sampling.stop_token_ids) == set(harmony.STOP_TOKENS_FOR_ASSISTANT_ACTIONS)
    assert req.constraint is None and req.sampling.max_tokens == 9
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    constrained = chat_lib.to_engine_request(chat_lib.ChatRequest(USER, response_format=fmt))
    assert constrained.constraint is not None
    tools = [{"type": "function", "function": {"name": "mul", "parameters": {"type": "object"}}}]
    forced = chat_lib.to_engine_request(chat_lib.ChatRequest(USER, tools=tools, tool_choice="required"))
    assert forced.constraint is not None
    with pytest.raises(harmony.ConstraintError, match="cannot both constrain"):
        chat_lib.to_engine_request(chat_lib.ChatRequest(USER, tools=tools, tool_choice="required",
                                                        response_format=fmt))
    with pytest.raises(harmony.ChatInputError):
        chat_lib.to_engine_request(chat_lib.ChatRequest([{"role": "wizard", "content": "hi"}]))


def test_forced_tool_call_comes_back_as_a_tool_call(engine):
    tools = [{"type": "function", "function": {"name": "mul", "description": "multiply", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}}]
    out = chat_lib.complete(engine, chat_lib.ChatRequest(
        USER, tools=tools, tool_choice={"type": "function", "function": {"name": "mul"}}, sampling=SamplingParams(temperature=1.0, seed=3, max_tokens=80)))
    assert out.finish_reason == "tool_calls", out
    [call] = out.tool_calls
    assert call.name == "mul" and set(json.loads(call.arguments)) == {"a", "b"}
    assert out.to_message()["tool_calls"][0]["function"]["name"] == "mul"


def test_stream_yields_deltas_then_the_completion(engine):
    items = list(chat_lib.stream(engine, chat_lib.ChatRequest(
        USER, response_format={"type": "json_object"},
        sampling=SamplingParams(temperature=1.0, seed=5, max_tokens=60))))
    done = items[-1]
    assert isinstance(done, chat_lib.ChatCompletion) and done.finish_reason == "stop"
    finals = "".join(d.text for d in items[:-1] if d.channel == "final")
    assert finals == done.content and isinstance(json.loads(done.content), dict)


@pytest.fixture()
def default_flags():
    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["test"])
    yield
    flags.FLAGS.unparse_flags()
    if was_parsed:
        flags.FLAGS(["test"])


def test_tool_turn_runs_the_python_tool_between_rounds(monkeypatch, default_flags):
    """The CLI's tool turn: the model's python call runs in the sandbox, its output goes back, the model answers."""
    call = enc.encode("<|channel|>analysis<|message|>compute it<|end|><|start|>assistant<|channel|>commentary "
                      "to=python <|constrain|>code<|message|>print(6*7)<|call|>", allowed_special="all")
    final = enc.encode("<|channel|>final<|message|>42<|return|>", allowed_special="all")
    prompts = []

    def scripted(engine, sampling):
        def fn(prompt_ids, *, stop_token_ids, constraint=None, max_tokens=None):
            prompts.append(enc.decode(prompt_ids))
            return call if len(prompts) == 1 else final
        return fn

    monkeypatch.setattr(chat_lib, "generate_fn", scripted)
    out = io.StringIO()
    from gptoss_jax.harmony.tools.python_tool import PythonTool
    res = chat_flags.run_tool_turn(None, USER, SamplingParams(max_tokens=50), [PythonTool()], out=out)
    assert res.content == "42" and len(res.calls) == 1 and res.calls[0].result.strip() == "42"
    assert "python to=assistant" in prompts[1] and "42" in prompts[1]   # the tool's output went back
    assert "[call python] print(6*7)" in out.getvalue() and "[answer] 42" in out.getvalue()


ESSAY = {"type": "json_schema", "json_schema": {"name": "essay", "schema": {
    "type": "object", "properties": {"essay": {"type": "string"}}, "required": ["essay"]}}}


def test_constrained_answers_close_within_a_short_engines_context(engine):
    """No max_tokens: every path gives the constraint the room left in the engine's context (max_len 256), so the
    random model's endless string is closed in time instead of ending with `length` and no content."""
    req = chat_lib.ChatRequest(USER, response_format=ESSAY, sampling=SamplingParams(temperature=1.0, seed=2))
    done = chat_lib.complete(engine, req)
    assert done.finish_reason == "stop" and "essay" in json.loads(done.content), done
    assert done.prompt_tokens + done.completion_tokens <= engine.max_len
    streamed = list(chat_lib.stream(engine, dataclasses.replace(req, sampling=SamplingParams(temperature=1.0,
                                                                                             seed=3))))[-1]
    assert streamed.finish_reason == "stop" and "essay" in json.loads(streamed.content), streamed
    fn = chat_lib.generate_fn(engine, SamplingParams(temperature=1.0, seed=4))
    ids = fn(harmony.render_chat(USER), stop_token_ids=sorted(harmony.STOP_TOKENS_FOR_ASSISTANT_ACTIONS),
             constraint=harmony.compile_response_format(ESSAY).new_constraint())
    parsed = harmony.parse_completion(ids)
    assert parsed.finish_reason == "stop" and "essay" in json.loads(parsed.content), parsed


def test_the_engine_fits_any_constraint_to_its_context_and_refuses_one_that_cannot_fit(engine):
    from gptoss_jax.engine import Request

    enc_prompt = harmony.render_chat(USER)
    hopeless = harmony.compile_json_schema({"type": "string", "pattern": "^[a-z]{5000}$"}).new_constraint()
    [res] = engine.generate([Request(enc_prompt, SamplingParams(), constraint=hopeless)])
    assert res.finish_reason == "error" and "cannot be completed within max_tokens=" in res.error, res
