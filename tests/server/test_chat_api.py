"""/v1/chat/completions through the official openai client: plain, streamed, tools round trip, json_schema,
logprobs, n > 1, stop strings. The weights are random: constraints (tool_choice, response_format) make answers
well-formed, so what is checked is the machinery."""
import json

import jsonschema

from tests.server.conftest import MODEL

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 10},
                                           "score": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["answer", "score"], "additionalProperties": False}
JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}


def test_models_and_a_plain_chat(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [MODEL]
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and len(r.choices) == 1
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 6
    assert r.usage.prompt_tokens > 20 and r.usage.total_tokens == r.usage.prompt_tokens + 6


def test_streamed_chat_equals_the_whole_answer_and_ends_with_usage(server):
    client = server.client()
    kw = dict(model=MODEL, messages=USER, max_tokens=48, temperature=0, response_format=JSON_FORMAT,
              reasoning_effort="low")
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    msg = whole.choices[0].message
    assert content == msg.content and json.loads(content) is not None
    assert reasoning == (getattr(msg, "reasoning_content", None) or "")
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3      # token by token
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_tool_call_round_trip(server):
    client = server.client()
    r = client.chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER], tool_choice="required",
                                       max_tokens=120, temperature=0.7, seed=1, reasoning_effort="low")
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    assert choice.message.content is None
    # the streamed call: a name first, then argument deltas that add up to the same call
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, tools=[WEATHER],
                                                 tool_choice="required", max_tokens=120, temperature=0.7, seed=1,
                                                 reasoning_effort="low", stream=True))
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    # the result goes back as a tool message; the model answers (no call allowed now)
    history = USER + [choice.message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    r2 = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER], tool_choice="none",
                                        max_tokens=40, temperature=0.7, seed=2, reasoning_effort="low")
    assert not r2.choices[0].message.tool_calls and r2.choices[0].message.content is not None
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


def test_json_schema_output_validates(server):
    r = server.client().chat.completions.create(model=MODEL, messages=USER, response_format=JSON_FORMAT,
                                                max_tokens=48, temperature=0, reasoning_effort="low")
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    assert r.choices[0].finish_reason == "stop"


def test_reasoning_stays_out_of_the_answer(server):
    r = server.client().chat.completions.create(model=MODEL, messages=USER, response_format=JSON_FORMAT,
                                                max_tokens=48, temperature=0, reasoning_effort="high")
    msg = r.choices[0].message
    reasoning = getattr(msg, "reasoning_content", None)
    json.loads(msg.content)                      # only the final channel: still valid JSON
    if reasoning:
        assert reasoning not in msg.content and r.usage.completion_tokens_details.reasoning_tokens > 0


def test_logprobs_are_the_answers_tokens(server):
    r = server.client().chat.completions.create(model=MODEL, messages=USER, response_format=JSON_FORMAT,
                                                max_tokens=48, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert "".join(e.token for e in lp) == r.choices[0].message.content
    for e in lp:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob >= e.logprob - 1e-6 and bytes(e.bytes).decode() == e.token


def test_n_choices_are_the_seeded_requests(server):
    client = server.client()
    kw = dict(model=MODEL, messages=USER, max_tokens=8, temperature=1.0)
    r = client.chat.completions.create(**kw, n=3, seed=20)
    assert [c.index for c in r.choices] == [0, 1, 2] and r.usage.completion_tokens == 24
    for i, c in enumerate(r.choices):
        alone = client.chat.completions.create(**kw, seed=20 + i).choices[0].message.content
        assert c.message.content == alone
    assert len({c.message.content for c in r.choices}) > 1


def test_stop_strings_cut_the_answer(server):
    client = server.client()
    kw = dict(model=MODEL, messages=USER, response_format=JSON_FORMAT, max_tokens=48, temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    stop = full[len(full) // 2:][:2]
    r = client.chat.completions.create(**kw, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:full.find(stop)]
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        **kw, stop=[stop], stream=True) if c.choices)
    assert streamed == full[:full.find(stop)]
