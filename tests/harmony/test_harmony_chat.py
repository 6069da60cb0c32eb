"""OpenAI-style chat input -> harmony: the mapping rules, checked against openai-harmony's rendering of the
conversation each input should become; bad input gets one clear ChatInputError."""
import datetime

import pytest

import harmony_corpus as hc
from gptoss_jax.harmony.chat import ChatInputError, chat_to_conversation, render_chat
from gptoss_jax.harmony import tokenizer as tok

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_current_weather", "description": hc.TOOLS["get_current_weather"][0],
    "parameters": hc.TOOLS["get_current_weather"][1]}}
LOCATION_TOOL = {"type": "function", "function": {"name": "get_location",
                                                  "description": hc.TOOLS["get_location"][0]}}
DATE = "2025-06-28"

CASES = {
    "plain_user": (
        dict(messages=[{"role": "user", "content": "hi"}]),
        [hc.system(date=DATE), hc.msg("user", "hi")]),
    "system_becomes_instructions": (
        dict(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
             reasoning_effort="high"),
        [hc.system("high", date=DATE), hc.developer("Be brief."), hc.msg("user", "hi")]),
    "system_and_developer_and_kwarg_joined": (
        dict(messages=[{"role": "system", "content": "A"}, {"role": "developer", "content": [
            {"type": "text", "text": "B"}]}, {"role": "user", "content": "hi"}], developer_instructions="Z"),
        [hc.system(date=DATE), hc.developer("Z\n\nA\n\nB"), hc.msg("user", "hi")]),
    "tools_and_tool_round_trip": (
        dict(messages=[
            {"role": "user", "content": "Weather in SF?"},
            {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
             "tool_calls": [{"id": "c1", "type": "function", "function": {
                 "name": "get_current_weather", "arguments": '{"location":"SF"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
            tools=[WEATHER_TOOL, LOCATION_TOOL], reasoning_effort="low"),
        [hc.system("low", date=DATE), hc.developer(None, ["get_current_weather", "get_location"]),
         hc.msg("user", "Weather in SF?"), hc.msg("assistant", "Need the tool.", channel="analysis"),
         hc.msg("assistant", '{"location":"SF"}', channel="commentary", recipient="functions.get_current_weather",
                content_type="<|constrain|>json"),
         hc.msg("tool", "sunny", channel="commentary", recipient="assistant", name="functions.get_current_weather")]),
    "old_reasoning_dropped_after_final": (
        dict(messages=[
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1", "reasoning": "think1"},
            {"role": "user", "content": "q2"}]),
        [hc.system(date=DATE), hc.msg("user", "q1"), hc.msg("assistant", "a1", channel="final"),
         hc.msg("user", "q2")]),
    "preamble_and_dict_arguments_and_tool_name": (
        dict(messages=[
            {"role": "user", "content": "where"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "x", "function": {"name": "get_location", "arguments": {}}}]},
            {"role": "tool", "name": "get_location", "content": [{"type": "text", "text": "Paris"}]},
            {"role": "assistant", "content": "You are in Paris."},
            {"role": "user", "content": "thanks"}], tools=[LOCATION_TOOL]),
        [hc.system(date=DATE), hc.developer(None, ["get_location"]), hc.msg("user", "where"),
         hc.msg("assistant", "Checking.", channel="commentary"),
         hc.msg("assistant", "{}", channel="commentary", recipient="functions.get_location",
                content_type="<|constrain|>json"),
         hc.msg("tool", "Paris", channel="commentary", recipient="assistant", name="functions.get_location"),
         hc.msg("assistant", "You are in Paris.", channel="final"), hc.msg("user", "thanks")]),
    "builtin_tools_unicode_empty": (
        dict(messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                       {"role": "user", "content": "Ça va? 日本 🎉"}], builtin_tools=("python", "browser"),
             reasoning_effort="medium"),
        [hc.system(date=DATE, builtins=("browser", "python")), hc.msg("user", ""),
         hc.msg("assistant", "", channel="final"), hc.msg("user", "Ça va? 日本 🎉")]),
    "user_parts_one_message_each": (
        dict(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_text",
                                                                                    "text": "b"}]}]),
        [hc.system(date=DATE), hc.msg("user", "a"), hc.msg("user", "b")]),
    "late_system_message_is_a_developer_message": (
        dict(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "new rule"},
                       {"role": "user", "content": "b"}]),
        [hc.system(date=DATE), hc.msg("user", "a"), hc.developer("new rule"), hc.msg("user", "b")]),
    "response_format_section": (
        dict(messages=[{"role": "system", "content": "You are a helpful shopping assistant"},
                       {"role": "user", "content": "coffee, soda, eggs"}],
             response_format={"type": "json_schema", "json_schema": {"name": "shopping_list", "schema": {
                 "type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}}}}),
        [hc.system(date=DATE), hc.developer(
            "You are a helpful shopping assistant\n\n# Response Formats\n\n## shopping_list\n\n"
            '{"type":"object","properties":{"items":{"type":"array","items":{"type":"string"}}}}'),
         hc.msg("user", "coffee, soda, eggs")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_chat_equals_the_harmony_conversation_it_maps_to(name, oh, oh_encoding):
    kwargs, expected = CASES[name]
    ours = render_chat(current_date=DATE, **kwargs)
    ref = oh_encoding.render_conversation_for_completion(hc.to_reference(oh, expected), oh.Role.ASSISTANT)
    assert ours == ref, tok.get_encoding().decode(ours)


def test_response_format_goes_after_function_tools(oh, oh_encoding):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    ours = render_chat([{"role": "user", "content": "x"}], [LOCATION_TOOL], current_date=DATE,
                       response_format={"type": "json_schema", "json_schema": {
                           "name": "num", "description": "a number", "schema": schema}})
    ref = oh_encoding.render_conversation_for_completion(hc.to_reference(oh, [
        hc.system(date=DATE), hc.developer(None, ["get_location"]), hc.msg("user", "x")]), oh.Role.ASSISTANT)
    text, ref_text = tok.get_encoding().decode(ours), tok.get_encoding().decode(ref)
    dev_ref = ref_text.split("<|start|>developer<|message|>")[1].split("<|end|>")[0]
    expected_dev = dev_ref + '\n\n# Response Formats\n\n## num\n\n// a number\n' + \
        '{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}'
    assert text.split("<|start|>developer<|message|>")[1].split("<|end|>")[0] == expected_dev


def test_for_completion_false_and_default_date():
    tokens = render_chat([{"role": "user", "content": "hi"}], for_completion=False, current_date=False)
    text = tok.get_encoding().decode(tokens)
    assert text.endswith("<|start|>user<|message|>hi<|end|>") and "Current date" not in text
    today = datetime.date.today().isoformat()
    assert f"Current date: {today}" in tok.get_encoding().decode(render_chat([{"role": "user", "content": "x"}]))
    assert tok.get_encoding().decode(render_chat([{"role": "user", "content": "x"}])).endswith("<|start|>assistant")


def test_reasoning_kept_while_the_turn_is_ongoing():
    conv = chat_to_conversation([
        {"role": "user", "content": "q"},
        {"role": "assistant", "reasoning_content": "step 1", "tool_calls": [
            {"id": "1", "function": {"name": "get_location", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "Paris"}], [LOCATION_TOOL], current_date=False)
    assert [(m.channel, m.text) for m in conv.messages if m.role.value == "assistant"] == \
        [("analysis", "step 1"), ("commentary", "{}")]


@pytest.mark.parametrize("kwargs, match", [
    (dict(messages=[{"role": "robot", "content": "x"}]), r"messages\[0\].role is 'robot'"),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]), "text only"),
    (dict(messages=[{"role": "tool", "tool_call_id": "nope", "content": "x"}]), "tool_call_id 'nope'"),
    (dict(messages=[], tools=[{"type": "function", "function": {"name": "bad name"}}]), "function name"),
    (dict(messages=[], tools=[WEATHER_TOOL, WEATHER_TOOL]), "more than once"),
    (dict(messages=[], reasoning_effort="extreme"), "reasoning_effort"),
    (dict(messages=[], tool_choice="required"), "no function tools"),
    (dict(messages=[], tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "zzz"}}),
     "'zzz', which is not among"),
    (dict(messages=[], response_format={"type": "xml"}), "response_format type 'xml'"),
    (dict(messages="hello"), "must be a list"),
])
def test_bad_input_is_one_clear_error(kwargs, match):
    with pytest.raises(ChatInputError, match=match):
        render_chat(**kwargs)
