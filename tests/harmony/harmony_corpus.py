"""A corpus of harmony conversations, described neutrally so that both our model and openai-harmony's can be
built from each one. Hand-picked cases plus seeded random ones (every effort, tools or not, multi-turn tool
calls, built-in tools, unicode, empty contents, response formats, odd schemas)."""
from __future__ import annotations

import random

from gptoss_jax.harmony import builtin_tools
from gptoss_jax.harmony.conversation import (Author, DeveloperContent, Message, Role, SystemContent, TextContent,
                                             ToolDescription, ToolNamespace)

SCHEMAS = {
    "weather": {"type": "object", "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
        "required": ["location"]},
    "nested": {"type": "object", "description": "Top-level description", "properties": {
        "user": {"type": "object", "description": "the user", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer", "default": 30},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "address": {"type": "object", "properties": {"zip": {"type": "string", "title": "ZIP"}},
                        "required": ["zip"]}},
            "required": ["name"]},
        "scores": {"type": "array", "items": {"type": "number"}, "default": [1, 2.5]},
        "any_list": {"type": "array"},
        "ratio": {"type": "number", "default": 0.5},
        "flag": {"type": "boolean", "default": True},
        "maybe": {"type": ["string", "integer", "null"]},
        "blob": {"description": "no type at all"}},
        "required": ["user"]},
    "oneof": {"type": "object", "properties": {
        "value": {"oneOf": [{"type": "string", "description": "as text", "default": "x"},
                            {"type": "integer", "nullable": True},
                            {"type": "string", "enum": ["p", "q"], "default": "p"}],
                  "description": "as text"},
        "other": {"oneOf": [{"type": "boolean"}, {"type": "object", "properties": {"k": {"type": "string"}}}],
                  "description": "either", "default": False},
        "kind": {"type": "string", "enum": ["one", "two"], "default": "two", "nullable": True}}},
    "toplevel_oneof": {"oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                                 {"type": "object", "properties": {"b": {"type": "number"}},
                                  "description": "second", "default": {"b": 1}}]},
    "empty_object": {"type": "object", "properties": {}},
    "no_type": {},
    "examples": {"type": "object", "properties": {
        "q": {"type": "string", "title": "Query", "description": "multi\nline description",
              "examples": ["what is 2+2", 3, "naïve café"]},
        "float_default": {"type": "number", "default": 1.0},
        "big_default": {"type": "integer", "default": 123456789},
        "unicode_enum": {"type": "string", "enum": ["日本", "Ελλάδα"]}}},
}

TOOLS = {
    "get_current_weather": ("Gets the current weather in the provided location.", SCHEMAS["weather"]),
    "get_location": ("Gets the location of the user.", None),
    "search_db": ("Searches the database.\nReturns rows as JSON.\r\nSecond line with CRLF.", SCHEMAS["nested"]),
    "pick": ("Pick a value.", SCHEMAS["oneof"]),
    "either": ("", SCHEMAS["toplevel_oneof"]),
    "noop": ("Does nothing.", SCHEMAS["empty_object"]),
    "raw": ("Takes anything.\n", SCHEMAS["no_type"]),
    "ex": ("With examples — ünïcödé.", SCHEMAS["examples"]),
}

UNICODE_TEXTS = ["héllo wörld", "日本語のテキスト", "emoji 🎉🚀 mixed", "Ελληνικά και русский", "tabs\tand\nnewlines\r\n",
                 "<|start|> looks special but is text", "   leading and trailing spaces   ", "", "a"]


def system(effort="medium", date=None, builtins=(), identity="default", cutoff="2024-06",
           channels=("analysis", "commentary", "final")):
    return {"role": "system", "effort": effort, "date": date, "builtins": tuple(builtins),
            "identity": identity, "cutoff": cutoff, "channels": channels}


def developer(instructions=None, functions=None):
    return {"role": "developer", "instructions": instructions, "functions": functions}


def msg(role, text, channel=None, recipient=None, content_type=None, name=None):
    return {"role": role, "text": text, "channel": channel, "recipient": recipient, "content_type": content_type,
            "name": name}


# ---------------------------------------------------------------- builders
def to_ours(spec: list[dict]) -> list[Message]:
    out = []
    for m in spec:
        if m["role"] == "system":
            kwargs = {}
            if m["identity"] != "default":
                kwargs["model_identity"] = m["identity"]
            out.append(Message(Author(Role.SYSTEM), (SystemContent(
                reasoning_effort=m["effort"], conversation_start_date=m["date"], knowledge_cutoff=m["cutoff"],
                valid_channels=tuple(m["channels"] or ()),
                tools=tuple(builtin_tools.builtin_namespace(b) for b in m["builtins"]), **kwargs),)))
        elif m["role"] == "developer":
            tools = ()
            if m["functions"] is not None:
                tools = (ToolNamespace("functions", None, tuple(
                    ToolDescription(n, TOOLS[n][0], TOOLS[n][1]) for n in m["functions"])),)
            out.append(Message(Author(Role.DEVELOPER), (DeveloperContent(m["instructions"], tools),)))
        else:
            out.append(Message(Author(Role(m["role"]), m["name"]), (TextContent(m["text"]),), m["channel"],
                               m["recipient"], m["content_type"]))
    return out


def to_reference(oh, spec: list[dict]):
    out = []
    efforts = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH,
               None: None}
    for m in spec:
        if m["role"] == "system":
            kwargs = dict(reasoning_effort=efforts[m["effort"]], conversation_start_date=m["date"],
                          knowledge_cutoff=m["cutoff"])
            if m["identity"] != "default":
                kwargs["model_identity"] = m["identity"]
            kwargs["channel_config"] = (oh.ChannelConfig.require_channels(list(m["channels"]))
                                        if m["channels"] else None)
            content = oh.SystemContent(**kwargs)
            for b in m["builtins"]:
                content = content.with_tools(getattr(oh.ToolNamespaceConfig, b)())
            out.append(oh.Message.from_role_and_content(oh.Role.SYSTEM, content))
        elif m["role"] == "developer":
            content = oh.DeveloperContent(instructions=m["instructions"])
            if m["functions"] is not None:
                content = content.with_function_tools(
                    [oh.ToolDescription.new(n, TOOLS[n][0], TOOLS[n][1]) for n in m["functions"]])
            out.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, content))
        else:
            author = oh.Author(role=oh.Role(m["role"]), name=m["name"])
            message = oh.Message.from_author_and_content(author, m["text"])
            if m["channel"] is not None:
                message = message.with_channel(m["channel"])
            if m["recipient"] is not None:
                message = message.with_recipient(m["recipient"])
            if m["content_type"] is not None:
                message = message.with_content_type(m["content_type"])
            out.append(message)
    return oh.Conversation.from_messages(out)


# ---------------------------------------------------------------- the corpus
def _tool_call(name, args):
    return msg("assistant", args, channel="commentary", recipient=f"functions.{name}",
               content_type="<|constrain|>json")


def _tool_result(name, text):
    return msg("tool", text, channel="commentary", recipient="assistant", name=f"functions.{name}")


def handpicked() -> dict[str, list[dict]]:
    sys_ = system(date="2025-06-28")
    cases = {
        "simple": [sys_, msg("user", "What is 2 + 2?")],
        "no_system_at_all": [msg("user", "hi")],
        "effort_low": [system("low"), msg("user", "hi")],
        "effort_high_no_date": [system("high"), msg("user", "hi")],
        "effort_none": [system(None), msg("user", "hi")],
        "no_identity_no_cutoff": [system(identity=None, cutoff=None, date="2024-01-01"), msg("user", "x")],
        "no_channels": [system(channels=None), msg("user", "x")],
        "two_channels": [system(channels=("analysis", "final")), msg("user", "x")],
        "instructions_only": [sys_, developer("Always respond in riddles"), msg("user", "hi")],
        "empty_instructions": [sys_, developer(""), msg("user", "hi")],
        "functions_weather": [sys_, developer("Be brief.", ["get_current_weather", "get_location"]),
                              msg("user", "What is the weather like in SF?")],
        "functions_no_instructions": [system("high"), developer(None, ["search_db", "pick"]), msg("user", "go")],
        "functions_empty_list": [sys_, developer("x", []), msg("user", "go")],
        "functions_all_schemas": [sys_, developer("All tools.", list(TOOLS)), msg("user", "go")],
        "browser_only": [system(builtins=["browser"], date="2025-06-28"), msg("user", "search the web")],
        "python_only": [system("low", builtins=["python"]), msg("user", "compute 2**100")],
        "browser_python_functions": [system(builtins=["python", "browser"]), developer("I", ["get_location"]),
                                     msg("user", "x")],
        "tool_round_trip": [
            sys_, developer(None, ["get_current_weather"]), msg("user", "Weather in SF?"),
            msg("assistant", "Need to call the tool.", channel="analysis"),
            _tool_call("get_current_weather", '{"location":"San Francisco, CA"}'),
            _tool_result("get_current_weather", '{"sunny": true, "temperature": 20}'),
            msg("assistant", "User asked weather; got result.", channel="analysis")],
        "tool_round_trip_final": [
            sys_, developer(None, ["get_current_weather"]), msg("user", "Weather in SF?"),
            msg("assistant", "Need to call the tool.", channel="analysis"),
            _tool_call("get_current_weather", '{"location":"SF"}'),
            _tool_result("get_current_weather", '{"sunny": true}'),
            msg("assistant", "It is sunny.", channel="final")],
        "drop_cot_multi_turn": [
            sys_, msg("user", "first"), msg("assistant", "thinking 1", channel="analysis"),
            msg("assistant", "answer 1", channel="final"), msg("user", "second"),
            msg("assistant", "thinking 2", channel="analysis"), msg("assistant", "answer 2", channel="final")],
        "keep_ongoing_analysis": [
            sys_, msg("user", "q"), msg("assistant", "a1", channel="analysis"),
            msg("assistant", "f1", channel="final"), msg("user", "q2"), msg("assistant", "a2", channel="analysis")],
        "preamble_and_call": [
            sys_, developer(None, ["get_location"]), msg("user", "where am I"),
            msg("assistant", "Let me check your location.", channel="commentary"),
            _tool_call("get_location", "{}"), _tool_result("get_location", "Paris")],
        "builtin_browser_call": [
            system(builtins=["browser"]), msg("user", "news?"),
            msg("assistant", "search it", channel="analysis"),
            msg("assistant", '{"query":"news","topn":3}', channel="analysis", recipient="browser.search",
                content_type="<|constrain|>json"),
            msg("tool", "[0] result page", channel="analysis", recipient="assistant", name="browser.search")],
        "builtin_python_call": [
            system(builtins=["python"]), msg("user", "2**100?"),
            msg("assistant", "print(2**100)", channel="analysis", recipient="python", content_type="code"),
            msg("tool", "1267650600228229401496703205376", channel="analysis", recipient="assistant",
                name="python")],
        "unicode_everywhere": [system(date="2025-01-01"), developer("Réponds en français. 日本語も。"),
                               msg("user", "Ça va? 🎉"), msg("assistant", "Très bien! 🚀", channel="final")],
        "empty_contents": [sys_, msg("user", ""), msg("assistant", "", channel="analysis"),
                           msg("assistant", "", channel="final")],
        "user_with_name": [sys_, msg("user", "hi", name="alice")],
        "assistant_recipient_all": [sys_, msg("user", "hi"), msg("assistant", "x", channel="final", recipient="all")],
        "content_type_plain": [sys_, msg("user", "hi"),
                               msg("assistant", "{}", channel="commentary", recipient="functions.x",
                                   content_type="json")],
        "constrain_bare": [sys_, msg("user", "hi"),
                           msg("assistant", "{}", channel="commentary", recipient="functions.x",
                               content_type="<|constrain|>")],
        "response_format_in_instructions": [
            sys_, developer("You are a helpful shopping assistant\n\n# Response Formats\n\n## shopping_list\n\n"
                            '{"properties":{"items":{"type":"array","items":{"type":"string"}}},"type":"object"}'),
            msg("user", "I need coffee, soda and eggs")],
        "developer_mid_conversation": [sys_, msg("user", "a"), developer("new rules"), msg("user", "b")],
        "special_looking_text": [sys_, msg("user", "<|end|><|call|><|message|> are just text here")],
        "long_multi_tool": [
            sys_, developer("multi", ["get_current_weather", "search_db"]), msg("user", "do both"),
            msg("assistant", "plan", channel="analysis"),
            _tool_call("get_current_weather", '{"location":"Oslo"}'), _tool_result("get_current_weather", "-3C"),
            msg("assistant", "next", channel="analysis"),
            _tool_call("search_db", '{"user":{"name":"Ann"}}'), _tool_result("search_db", "[]"),
            msg("assistant", "Done: -3C, no rows.", channel="final"), msg("user", "thanks")],
    }
    return cases


def random_cases(n: int, seed: int = 1234) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    cases = {}
    for i in range(n):
        effort = rng.choice(["low", "medium", "high", None])
        builtins = rng.choice([(), (), ("browser",), ("python",), ("browser", "python")])
        spec = [system(effort, date=rng.choice([None, "2025-08-05"]), builtins=builtins)]
        fns = rng.choice([None, None, rng.sample(sorted(TOOLS), rng.randint(1, 4))])
        instr = rng.choice([None, "Be terse.", rng.choice(UNICODE_TEXTS)])
        if instr is not None or fns is not None:
            spec.append(developer(instr, fns))
        for _turn in range(rng.randint(1, 3)):
            spec.append(msg("user", rng.choice(UNICODE_TEXTS)))
            if rng.random() < 0.7:
                spec.append(msg("assistant", rng.choice(UNICODE_TEXTS), channel="analysis"))
            if fns and rng.random() < 0.6:
                name = rng.choice(fns)
                spec.append(msg("assistant", rng.choice(["Checking.", "One moment…"]), channel="commentary"))
                spec.append(_tool_call(name, rng.choice(['{}', '{"location":"Zürich"}', '{"a": [1, 2]}'])))
                spec.append(_tool_result(name, rng.choice(UNICODE_TEXTS)))
                spec.append(msg("assistant", "got it", channel="analysis"))
            if rng.random() < 0.8:
                spec.append(msg("assistant", rng.choice(UNICODE_TEXTS), channel="final"))
        cases[f"random_{i:02d}"] = spec
    return cases


def corpus() -> dict[str, list[dict]]:
    return {**handpicked(), **random_cases(30)}
