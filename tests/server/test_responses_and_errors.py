"""/v1/responses (plain, streamed, with a tool), /v1/completions, and every error status: each bad request gets an
OpenAI error body, and the server keeps serving."""
import json

import openai
import pytest

from tests.server.conftest import MODEL
from tests.server.test_chat_api import SCHEMA, USER, WEATHER

FLAT_WEATHER = {"type": "function", **WEATHER["function"]}
TEXT_FORMAT = {"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}}


def test_responses_plain_and_streamed(server):
    client = server.client()
    kw = dict(model=MODEL, input="What is the weather in Paris?", instructions="Answer in JSON.", text=TEXT_FORMAT,
              max_output_tokens=80, temperature=0, reasoning={"effort": "low"})
    r = client.responses.create(**kw)
    assert r.status == "completed" and r.object == "response"
    json.loads(r.output_text)
    kinds = [o.type for o in r.output]
    assert kinds[-1] == "message" and set(kinds) <= {"reasoning", "message"}
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 20
    events = list(client.responses.create(**kw, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text == events[-1].response.output_text
    assert "response.output_item.added" in types and "response.output_text.done" in types


def test_responses_tool_call_and_its_output(server):
    client = server.client()
    r = client.responses.create(model=MODEL, input="Weather in Paris?", tools=[FLAT_WEATHER], tool_choice="required",
                                max_output_tokens=120, temperature=0.7, reasoning={"effort": "low"})
    [call] = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and set(json.loads(call.arguments)) == {"city", "unit"}
    events = list(client.responses.create(model=MODEL, input="Weather in Paris?", tools=[FLAT_WEATHER],
                                          tool_choice="required", max_output_tokens=120, temperature=0.7,
                                          reasoning={"effort": "low"}, stream=True))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and json.loads(done[0].arguments) is not None
    follow = client.responses.create(
        model=MODEL, tools=[FLAT_WEATHER], tool_choice="none", max_output_tokens=30, temperature=0.7,
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}])
    assert not [o for o in follow.output if o.type == "function_call"]
    assert follow.usage.input_tokens > r.usage.input_tokens


def test_completions_text_and_token_ids(server):
    client = server.client()
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0,
                                  logprobs=2)
    c = r.choices[0]
    assert c.finish_reason == "length" and len(c.token_ids) == 5 and len(c.logprobs.token_logprobs) == 5
    ids = client.completions.create(model=MODEL, prompt=[791, 6037], max_tokens=5, temperature=0, stream=True)
    chunks = list(ids)
    assert sum(len(ch.choices[0].token_ids) for ch in chunks) == 5


def _status(fn) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as e:
        fn()
    return e.value.status_code, e.value.body


def test_error_statuses(server):
    client = server.client()
    chat = client.chat.completions.create
    long_prompt = [{"role": "user", "content": "word " * 3000}]
    code, body = _status(lambda: chat(model=MODEL, messages=long_prompt, max_tokens=4))
    assert code == 400 and body["code"] == "context_length_exceeded" and "2048" in body["message"]
    code, body = _status(lambda: chat(model=MODEL, messages=USER, temperature="hot"))
    assert code == 400 and body["param"] == "temperature"
    code, body = _status(lambda: chat(model=MODEL, messages=USER, top_p=0))
    assert code == 400 and "top_p" in body["message"]
    code, body = _status(lambda: chat(model=MODEL, messages=USER, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": 5}}}))
    assert code == 400
    code, body = _status(lambda: chat(model=MODEL, messages=USER, tools=[WEATHER],
                                      tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert code == 400 and "nope" in body["message"]
    code, body = _status(lambda: chat(model="gpt-5", messages=USER))
    assert code == 404 and body["code"] == "model_not_found"
    code, _ = _status(lambda: client.responses.create(model=MODEL, input="x", previous_response_id="resp_1"))
    assert code == 400
    server.ctx.api_key = "secret"
    try:
        code, body = _status(lambda: chat(model=MODEL, messages=USER, max_tokens=2))
        assert code == 401 and body["type"] == "authentication_error"
        ok = server.client(api_key="secret").chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
        assert ok.choices[0].finish_reason == "length"
    finally:
        server.ctx.api_key = None
    server.ctx.loop.max_queue = 1
    try:
        code, body = _status(lambda: chat(model=MODEL, messages=USER, max_tokens=2, n=2))
        assert code == 429 and body["type"] == "rate_limit_error"
    finally:
        server.ctx.loop.max_queue = 256
    # none of it touched the engine or other requests
    r = chat(model=MODEL, messages=USER, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
