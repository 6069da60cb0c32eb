"""Flags for harmony chat input, shared by `gptoss generate --chat` and `gptoss chat`, and the one way they become
a ChatRequest and a streamed display."""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from gptoss_jax import chat as chat_lib
from gptoss_jax.harmony.constants import REASONING_EFFORTS

flags.DEFINE_enum("reasoning_effort", "medium", list(REASONING_EFFORTS), "Reasoning effort in the system message.")
flags.DEFINE_string("system", None, "Developer instructions (what a system prompt is in OpenAI chat).")
flags.DEFINE_string("tools", None, "OpenAI function tools: a JSON list, or @path to a file holding one.")
flags.DEFINE_string("tool_choice", "auto", "auto | none | required | a function name (enforced by the sampler).")
flags.DEFINE_string("response_format", None, "OpenAI response_format (json_object or json_schema) as JSON or "
                    "@path; the final answer is constrained to it.")
flags.DEFINE_list("builtin_tools", [], "Built-in harmony tools the model may call, run here between its turns: "
                  "python (a sandboxed subprocess: no network, time and memory limits), browser (needs "
                  "--browser_dir).")
flags.DEFINE_string("browser_dir", None, "Folder of documents the offline browser tool searches (BM25) and opens.")
flags.DEFINE_bool("show_reasoning", True, "Stream the analysis channel (chain of thought) too.")
FLAGS = flags.FLAGS


def json_flag(name: str, value: str | None, expected: str):
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = value[1:]
        if not os.path.exists(path):
            raise app.UsageError(f"--{name}={value}: no such file (expected {expected})")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise app.UsageError(f"--{name}={value}: cannot read it as text ({e}); expected {expected}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--{name}: not valid JSON ({e}); expected {expected}") from None


def builtin_tools() -> list:
    """The tool objects --builtin_tools asks for (each `call`s into the sandbox or the offline browser)."""
    from gptoss_jax.harmony.tools.browser import BrowserTool
    from gptoss_jax.harmony.tools.browser_backend import LocalFolderBackend
    from gptoss_jax.harmony.tools.python_tool import PythonTool

    out = []
    for name in FLAGS.builtin_tools:
        if name == "python":
            out.append(PythonTool())
        elif name == "browser":
            if not FLAGS.browser_dir or not os.path.isdir(FLAGS.browser_dir):
                raise app.UsageError(f"--builtin_tools=browser needs --browser_dir, a folder of documents (got "
                                     f"{FLAGS.browser_dir!r})")
            out.append(BrowserTool(LocalFolderBackend(FLAGS.browser_dir)))
        else:
            raise app.UsageError(f"--builtin_tools: unknown tool {name!r}; expected python or browser")
    return out


def run_tool_turn(engine, messages, sampling, tools, out=None):
    """One user turn with built-in tools: the model calls them, they run here, it continues until it answers.

    Returns the harmony ToolLoopResult (its .messages extend the chat). Not streamed: each round is one request."""
    from gptoss_jax import harmony

    out = out or sys.stdout
    res = harmony.run_tool_loop(
        chat_lib.generate_fn(engine, sampling), messages, None, {}, builtin_tools=tools,
        reasoning_effort=FLAGS.reasoning_effort, developer_instructions=FLAGS.system,
        max_tokens=sampling.max_tokens or engine.limits.default_max_tokens)
    for call in res.calls:
        out.write(f"[call {call.recipient}] {call.arguments}\n[result{' (error)' if call.error else ''}] "
                  f"{call.result[:2000]}\n")
    if res.reasoning and FLAGS.show_reasoning:
        out.write(f"[thinking] {res.reasoning}\n")
    out.write(f"[answer] {res.content if res.content is not None else '(none: ' + res.finish_reason + ')'}\n")
    return res


def chat_request(messages, sampling) -> chat_lib.ChatRequest:
    tools = json_flag("tools", FLAGS.tools, "a JSON list of OpenAI function tools")
    choice = FLAGS.tool_choice
    if choice not in ("auto", "none", "required"):  # a bare function name
        choice = {"type": "function", "function": {"name": choice}}
    return chat_lib.ChatRequest(
        messages=messages, tools=tools, reasoning_effort=FLAGS.reasoning_effort, tool_choice=choice,
        response_format=json_flag("response_format", FLAGS.response_format, "an OpenAI response_format object"),
        builtin_tools=tuple(FLAGS.builtin_tools), developer_instructions=FLAGS.system, sampling=sampling)


# A harmony completion starts with its header: `<|channel|>analysis<|message|>`, or ` to=functions.f<|channel|>...`
# for a tool call. Text that cannot begin one (random weights, a broken checkpoint) is shown raw as it streams.
HEADER_STARTS = ("<|channel|>", " to=")
MAX_HEADER_TOKENS = 24   # far more than any real header takes


def could_start_harmony(text: str, num_tokens: int) -> bool:
    """Whether the completion's first tokens (decoded to `text`) can still be the start of a harmony header."""
    if num_tokens > MAX_HEADER_TOKENS:
        return False
    return any(text.startswith(h) or h.startswith(text) for h in HEADER_STARTS)


def print_stream(engine, req: chat_lib.ChatRequest, out=None) -> chat_lib.ChatCompletion:
    """Stream a chat turn token by token: the analysis channel under [thinking] (unless --noshow_reasoning), tool
    calls under [call NAME], the answer under [answer]. A completion that is not harmony-formed (random weights)
    streams as decoded text under [raw, not harmony-formed] from the token that shows it."""
    from gptoss_jax import harmony

    out = out or sys.stdout
    enc = harmony.get_encoding()
    parser = harmony.StreamParser("assistant", strict=False)
    section, raw, ids, shown, rid = None, False, [], "", None
    request = chat_lib.to_engine_request(req, max_len=engine.max_len,
                                         default_max_tokens=engine.limits.default_max_tokens)
    for ev in engine.stream(request):
        rid = ev.request_id
        if ev.token_id < 0:
            continue
        ids.append(ev.token_id)
        if not raw and section is None and not could_start_harmony(enc.decode(ids), len(ids)):
            raw = True
            out.write("[raw, not harmony-formed] ")
        if raw:
            text = enc.decode(ids)
            if not text.endswith("\ufffd"):   # hold back a partial UTF-8 character
                out.write(text[len(shown):])
                shown = text
            out.flush()
            continue
        parser.process(ev.token_id)
        if not parser.last_content_delta:
            continue
        channel, recipient = parser.current_channel, parser.current_recipient
        if channel == "analysis" and not FLAGS.show_reasoning:
            continue
        label = (f"call {recipient}" if recipient and recipient != "all"
                 else {"analysis": "thinking", "final": "answer"}.get(channel or "", channel or "answer"))
        if label != section:
            out.write(("\n" if section else "") + f"[{label}] ")
            section = label
        out.write(parser.last_content_delta)
        out.flush()
    if not raw and section is None and ids:   # ended inside what could have been a header
        out.write(f"[raw, not harmony-formed] {enc.decode(ids)}")
    elif raw and shown != enc.decode(ids):
        out.write(enc.decode(ids)[len(shown):])
    out.write("\n")
    out.flush()
    return chat_lib.from_engine_result(engine.result(rid))
