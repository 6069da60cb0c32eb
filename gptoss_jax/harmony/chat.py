"""OpenAI-style chat input -> harmony conversation -> tokens.

Mapping (following OpenAI's gpt-oss reference server, which builds harmony conversations from API input):
- one system message: model identity, knowledge cutoff, current date, reasoning effort, built-in tools;
- ``system`` and ``developer`` chat messages at the start become the developer message's ``# Instructions``
  (joined by a blank line, after ``developer_instructions``); later ones become developer messages in place;
  the developer message also carries the function ``tools`` and the ``response_format``;
- ``user`` content -> user messages (one per text part, as the reference does);
- ``assistant``: ``reasoning``/``reasoning_content`` -> an analysis message, kept only for assistant turns
  after the last final answer (earlier chain of thought is dropped, as the format prescribes); ``content``
  -> the final channel, or the commentary channel (a preamble) when the message also has ``tool_calls``;
  each tool call -> ``assistant to=functions.NAME`` on commentary with content type ``<|constrain|>json``;
- ``tool`` results -> ``functions.NAME to=assistant`` on commentary (NAME from ``name`` or ``tool_call_id``).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import numbers
import re
from typing import Any, Iterable, Mapping, Sequence

from gptoss_jax.errors import InputError

from .builtin_tools import builtin_namespace
from .conversation import (CONSTRAIN_JSON, DEFAULT_KNOWLEDGE_CUTOFF, DEFAULT_MODEL_IDENTITY, REASONING_EFFORTS,
                           Author, Conversation, DeveloperContent, Message, ResponseFormat, Role, SystemContent,
                           TextContent, ToolDescription, ToolNamespace)
from .render import render_conversation

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TEXT_PART_TYPES = ("text", "input_text", "output_text")


class ChatInputError(InputError):
    """OpenAI-style chat input that cannot be mapped to harmony; the message says what and what was expected."""


# JSON nesting a schema (tool parameters, response_format) may have: llguidance's parser stops at 128 levels
MAX_JSON_DEPTH = 100


def json_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests objects/arrays more than `limit` deep (a cycle counts as too deep). Iterative: no
    depth can raise RecursionError here."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, Mapping) else v if _is_list(v) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


@dataclasses.dataclass(frozen=True)
class ToolChoice:
    """Normalized tool_choice: mode is 'auto', 'none', 'required' or 'named' (then ``name`` is set)."""

    mode: str
    name: str | None = None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _is_object(value: Any) -> bool:
    """A mapping, or an object with attributes (e.g. the openai client's types): not a bare value or a list."""
    return value is not None and not isinstance(value, (str, bytes, numbers.Number, Sequence))


def normalize_tools(tools: Sequence[Any] | None) -> list[ToolDescription]:
    """OpenAI function tools (``{"type": "function", "function": {name, description, parameters}}`` or the
    flat Responses form) -> ToolDescriptions."""
    if tools is not None and not _is_list(tools):
        raise ChatInputError(f"tools must be a list of OpenAI function tools, got {type(tools).__name__}")
    out: list[ToolDescription] = []
    for i, tool in enumerate(tools or ()):
        if isinstance(tool, ToolDescription):
            out.append(tool)
            continue
        if not _is_object(tool):
            raise ChatInputError(f"tools[{i}] must be an object {{'type': 'function', 'function': {{'name': ...}}}}, "
                                 f"got {type(tool).__name__}")
        if _get(tool, "type", "function") != "function":
            raise ChatInputError(f"tools[{i}] has type {_get(tool, 'type')!r}; expected 'function' (built-in tools "
                                 "go in builtin_tools=('browser', 'python'))")
        fn = _get(tool, "function", tool)
        name = _get(fn, "name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            raise ChatInputError(f"tools[{i}] has function name {name!r}; expected 1-64 characters from "
                                 "[A-Za-z0-9_-]")
        params = _get(fn, "parameters")
        if params is not None and not isinstance(params, Mapping):
            raise ChatInputError(f"tools[{i}] ({name}) parameters must be a JSON schema object, got "
                                 f"{type(params).__name__}")
        if params is not None and json_too_deep(params):
            raise ChatInputError(f"tools[{i}] ({name}) parameters are nested more than {MAX_JSON_DEPTH} levels deep; "
                                 f"expected at most {MAX_JSON_DEPTH} levels of objects and arrays")
        desc = _get(fn, "description") or ""
        out.append(ToolDescription(name, str(desc), dict(params) if params is not None else None))
    names = [t.name for t in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ChatInputError(f"tools declare these function names more than once: {dupes}")
    return out


def normalize_tool_choice(tool_choice: Any, tool_names: Iterable[str]) -> ToolChoice:
    names = list(tool_names)
    if tool_choice is None:
        tool_choice = "auto"
    if isinstance(tool_choice, str):
        if tool_choice in ("auto", "none", "required"):
            if tool_choice == "required" and not names:
                raise ChatInputError("tool_choice='required' but no function tools were given")
            return ToolChoice(tool_choice)
        raise ChatInputError(f"tool_choice {tool_choice!r} is not valid; expected 'auto', 'none', 'required' or "
                             "{'type': 'function', 'function': {'name': ...}}")
    fn = _get(tool_choice, "function", tool_choice)
    name = _get(fn, "name")
    if not isinstance(name, str):
        raise ChatInputError(f"tool_choice {tool_choice!r} names no function; expected "
                             "{'type': 'function', 'function': {'name': ...}}")
    if name not in names:
        raise ChatInputError(f"tool_choice names function {name!r}, which is not among the tools {names}")
    return ToolChoice("named", name)


def _content_texts(content: Any, where: str) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, Sequence):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            ptype = _get(part, "type")
            if ptype not in _TEXT_PART_TYPES:
                raise ChatInputError(f"{where}.content[{j}] has type {ptype!r}; gpt-oss takes text only "
                                     f"(expected one of {_TEXT_PART_TYPES})")
            texts.append(str(_get(part, "text", "")))
        return texts
    raise ChatInputError(f"{where}.content must be a string, a list of text parts or None, got "
                         f"{type(content).__name__}")


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def _response_formats(response_format: Any) -> tuple[ResponseFormat, ...]:
    if response_format is None:
        return ()
    if isinstance(response_format, ResponseFormat):
        return (response_format,)
    rtype = _get(response_format, "type")
    if rtype in ("text", "json_object"):
        return ()  # nothing to describe; json_object is enforced by the constraint alone
    if rtype != "json_schema":
        raise ChatInputError(f"response_format type {rtype!r} is not supported; expected 'text', 'json_object' "
                             "or 'json_schema'")
    spec = _get(response_format, "json_schema", {})
    schema = _get(spec, "schema")
    if not isinstance(schema, Mapping):
        raise ChatInputError("response_format json_schema needs a 'schema' object, got "
                             f"{type(schema).__name__}")
    if json_too_deep(schema):
        raise ChatInputError(f"response_format json_schema is nested more than {MAX_JSON_DEPTH} levels deep; expected "
                             f"at most {MAX_JSON_DEPTH} levels of objects and arrays")
    return (ResponseFormat(str(_get(spec, "name") or "response"), dict(schema), _get(spec, "description")),)


def _date_text(current_date: Any) -> str | None:
    if current_date is None:
        return datetime.date.today().isoformat()
    if current_date is False or current_date == "":
        return None
    if isinstance(current_date, (datetime.date, datetime.datetime)):
        return current_date.strftime("%Y-%m-%d")
    return str(current_date)


def _effort(reasoning_effort: Any) -> str | None:
    if reasoning_effort is None:
        return None
    effort = str(reasoning_effort).lower()
    if effort not in REASONING_EFFORTS:
        raise ChatInputError(f"reasoning_effort {reasoning_effort!r} is not valid; expected one of "
                             f"{REASONING_EFFORTS}")
    return effort


def chat_to_conversation(messages: Sequence[Any], tools: Sequence[Any] | None = None,
                         reasoning_effort: str | None = "medium", *, tool_choice: Any = "auto",
                         developer_instructions: str | None = None, current_date: Any = None,
                         builtin_tools: Sequence[str | ToolNamespace] = (), response_format: Any = None,
                         model_identity: str | None = DEFAULT_MODEL_IDENTITY,
                         knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF) -> Conversation:
    """Map OpenAI-style chat input onto a harmony Conversation (see the module docstring for the rules)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ChatInputError(f"messages must be a list of chat messages, got {type(messages).__name__}")
    function_tools = normalize_tools(tools)
    normalize_tool_choice(tool_choice, [t.name for t in function_tools])  # validates it
    namespaces = tuple(ns if isinstance(ns, ToolNamespace) else builtin_namespace(ns) for ns in builtin_tools)
    system = SystemContent(model_identity=model_identity, reasoning_effort=_effort(reasoning_effort),
                           conversation_start_date=_date_text(current_date), knowledge_cutoff=knowledge_cutoff,
                           tools=namespaces)
    out: list[Message] = [Message(Author(Role.SYSTEM), (system,))]

    roles = []
    for i, m in enumerate(messages):
        if not _is_object(m):
            raise ChatInputError(f"messages[{i}] must be an object with 'role' and 'content', got "
                                 f"{type(m).__name__}")
        role = _get(m, "role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ChatInputError(f"messages[{i}].role is {role!r}; expected system, developer, user, assistant "
                                 "or tool")
        if role == "user" and _get(m, "content") is None:
            raise ChatInputError(f"messages[{i}] (user) has no content; expected a string or a list of text parts")
        roles.append(role)
    leading = 0
    while leading < len(messages) and roles[leading] in ("system", "developer"):
        leading += 1
    instructions = [developer_instructions] if developer_instructions else []
    for i in range(leading):
        instructions += _content_texts(_get(messages[i], "content"), f"messages[{i}]")
    instructions_text = "\n\n".join(t for t in instructions if t) or None
    formats = _response_formats(response_format)
    if instructions_text or function_tools or formats:
        dev_tools = (ToolNamespace("functions", None, tuple(function_tools)),) if function_tools else ()
        out.append(Message(Author(Role.DEVELOPER), (DeveloperContent(instructions_text, dev_tools, formats),)))

    last_final = -1
    for i, m in enumerate(messages):
        if roles[i] == "assistant" and not _get(m, "tool_calls") and _get(m, "content") is not None:
            last_final = i

    call_names: dict[str, str] = {}
    for i in range(leading, len(messages)):
        m, role, where = messages[i], roles[i], f"messages[{i}]"
        if role in ("system", "developer"):
            text = "\n\n".join(_content_texts(_get(m, "content"), where))
            out.append(Message(Author(Role.DEVELOPER), (DeveloperContent(text),)))
        elif role == "user":
            texts = _content_texts(_get(m, "content"), where) or [""]
            out += [Message(Author(Role.USER), (TextContent(t),)) for t in texts]
        elif role == "assistant":
            out += _assistant_messages(m, where, keep_reasoning=i > last_final, call_names=call_names)
        else:
            out.append(_tool_result_message(m, where, call_names))
    return Conversation(tuple(out))


def _assistant_messages(m: Any, where: str, *, keep_reasoning: bool, call_names: dict[str, str]) -> list[Message]:
    out = []
    reasoning = _get(m, "reasoning_content")
    if reasoning is None:
        reasoning = _get(m, "reasoning")
    if isinstance(reasoning, Mapping):  # {"content": "..."} style
        reasoning = _get(reasoning, "content") or _get(reasoning, "text")
    if reasoning is not None and not isinstance(reasoning, str):
        raise ChatInputError(f"{where}.reasoning must be a string, got {type(reasoning).__name__}")
    if reasoning and keep_reasoning:
        out.append(Message.of(Role.ASSISTANT, reasoning, channel="analysis"))
    tool_calls = _get(m, "tool_calls") or []
    content = _get(m, "content")
    texts = _content_texts(content, where)
    if tool_calls:
        out += [Message.of(Role.ASSISTANT, t, channel="commentary") for t in texts if t]
        for j, call in enumerate(tool_calls):
            fn = _get(call, "function", call)
            name = _get(fn, "name")
            if not isinstance(name, str) or not name:
                raise ChatInputError(f"{where}.tool_calls[{j}] has no function name")
            call_id = _get(call, "id")
            if call_id is not None:
                call_names[str(call_id)] = name
            out.append(Message.of(Role.ASSISTANT, _arguments_text(_get(fn, "arguments")), channel="commentary",
                                  recipient=f"functions.{name}", content_type=CONSTRAIN_JSON))
    elif content is not None:
        out += [Message.of(Role.ASSISTANT, t, channel="final") for t in (texts or [""])]
    return out


def _tool_result_message(m: Any, where: str, call_names: dict[str, str]) -> Message:
    name = _get(m, "name")
    call_id = _get(m, "tool_call_id")
    if not name:
        if call_id is None or str(call_id) not in call_names:
            raise ChatInputError(f"{where} is a tool result with tool_call_id {call_id!r} that matches no earlier "
                                 "assistant tool call, and no 'name'; expected one of them")
        name = call_names[str(call_id)]
    text = "".join(_content_texts(_get(m, "content"), where))
    author_name = name if name.startswith("functions.") or "." in name else f"functions.{name}"
    return Message(Author(Role.TOOL, author_name), (TextContent(text),), channel="commentary",
                   recipient="assistant")


def render_chat(messages: Sequence[Any], tools: Sequence[Any] | None = None,
                reasoning_effort: str | None = "medium", *, tool_choice: Any = "auto",
                developer_instructions: str | None = None, current_date: Any = None,
                builtin_tools: Sequence[str | ToolNamespace] = (), response_format: Any = None,
                for_completion: bool = True, model_identity: str | None = DEFAULT_MODEL_IDENTITY,
                knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF) -> list[int]:
    """Render OpenAI-style chat messages as o200k_harmony tokens.

    ``for_completion=True`` appends ``<|start|>assistant`` (the prompt to sample from); False renders the
    history only. ``current_date``: None -> today's date (as OpenAI's reference does), False -> omitted, or
    a date/``YYYY-MM-DD`` string. ``builtin_tools``: 'browser', 'python' or ToolNamespace objects.
    ``tool_choice`` is validated here and enforced by the constraint at sampling time (see constrain.py).
    Raises ChatInputError for input it cannot map.
    """
    conversation = chat_to_conversation(
        messages, tools, reasoning_effort, tool_choice=tool_choice, developer_instructions=developer_instructions,
        current_date=current_date, builtin_tools=builtin_tools, response_format=response_format,
        model_identity=model_identity, knowledge_cutoff=knowledge_cutoff)
    return render_conversation(conversation.messages, next_role=Role.ASSISTANT if for_completion else None)
