"""Render harmony conversations to o200k_harmony tokens.

Each message is ``<|start|>{header}<|message|>{content}<|end|>`` where the header is the role (or, for a tool,
its name), `` to={recipient}``, ``<|channel|>{channel}`` and `` {content_type}`` (a ``<|constrain|>`` prefix is
the special token). An assistant message with a recipient (a tool call) ends with ``<|call|>``. Every text
piece is encoded on its own, exactly where harmony splits it, so the tokens equal openai-harmony's.

Conversation-level rules: the system message says ``Calls to these tools must go to the commentary channel:
'functions'.`` when any developer message declares function tools; when the last assistant message is on the
final channel, analysis messages before the first final message are dropped (``auto_drop_analysis``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from gptoss_jax.errors import InputError

from . import tokenizer as tok
from .conversation import (DeveloperContent, Message, ResponseFormat, Role, SystemContent, TextContent,
                           ToolNamespace)
from .schema_ts import json_text, rust_lines, schema_to_typescript

_CONSTRAIN_TEXT = "<|constrain|>"


class RenderError(InputError):
    """A conversation that cannot be rendered (e.g. a tool message without a name)."""


def _text(text: str) -> list[int]:
    return tok.encode_text(text)


def tools_section(namespaces: Iterable[ToolNamespace]) -> str:
    """The ``# Tools`` section for the given namespaces (sorted by name, as harmony orders them)."""
    sections = ["# Tools"]
    for ns in sorted(namespaces, key=lambda n: n.name):
        lines = [f"## {ns.name}\n"]
        if ns.description is not None:
            for line in rust_lines(ns.description):
                lines.append(f"// {line}" if ns.tools else line)
        if ns.tools:
            lines.append(f"namespace {ns.name} {{\n")
            for tool in ns.tools:
                lines.extend(f"// {line}" for line in rust_lines(tool.description))
                if tool.parameters is not None:
                    lines.append(f"type {tool.name} = (_: {schema_to_typescript(tool.parameters)}) => any;\n")
                else:
                    lines.append(f"type {tool.name} = () => any;\n")
            lines.append(f"}} // namespace {ns.name}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def response_formats_section(formats: Sequence[ResponseFormat]) -> str:
    parts = ["# Response Formats"]
    for fmt in formats:
        body = f"## {fmt.name}\n\n"
        if fmt.description:
            body += f"// {fmt.description}\n"
        body += json_text(fmt.schema)
        parts.append(body)
    return "\n\n".join(parts)


def system_text(sys: SystemContent, *, has_function_tools: bool) -> str:
    sections = []
    top = []
    if sys.model_identity is not None:
        top.append(sys.model_identity)
    if sys.knowledge_cutoff is not None:
        top.append(f"Knowledge cutoff: {sys.knowledge_cutoff}")
    if sys.conversation_start_date is not None:
        top.append(f"Current date: {sys.conversation_start_date}")
    if top:
        sections.append("\n".join(top))
    if sys.reasoning_effort is not None:
        sections.append(f"Reasoning: {sys.reasoning_effort}")
    if sys.tools:
        sections.append(tools_section(sys.tools))
    if sys.valid_channels:
        header = f"# Valid channels: {', '.join(sys.valid_channels)}."
        if sys.channel_required:
            header += " Channel must be included for every message."
        if has_function_tools:
            header += "\nCalls to these tools must go to the commentary channel: 'functions'."
        sections.append(header)
    return "\n\n".join(sections)


def developer_text(dev: DeveloperContent) -> str:
    sections = []
    if dev.instructions is not None:
        sections += ["# Instructions", dev.instructions]
    if dev.tools:
        sections.append(tools_section(dev.tools))
    if dev.response_formats:
        sections.append(response_formats_section(dev.response_formats))
    return "\n\n".join(sections)


def render_message(message: Message, *, has_function_tools: bool = False) -> list[int]:
    """Tokens of one message, from ``<|start|>`` to its closing ``<|end|>`` or ``<|call|>``."""
    out = [tok.START]
    role = message.author.role
    if role == Role.TOOL:
        if message.author.name is None:
            raise RenderError("a tool message needs an author name (e.g. 'functions.get_weather'); got None")
        out += _text(message.author.name)
    else:
        out += _text(role.value)
        if message.author.name is not None:
            out += _text(f":{message.author.name}")
    if message.recipient is not None and message.recipient != "all":
        out += _text(f" to={message.recipient}")
    if message.channel is not None:
        out.append(tok.CHANNEL)
        out += _text(message.channel)
    if message.content_type is not None:
        if message.content_type.startswith(_CONSTRAIN_TEXT):
            out += _text(" ")
            out.append(tok.CONSTRAIN)
            rest = message.content_type[len(_CONSTRAIN_TEXT):]
            if rest:
                out += _text(rest)
        else:
            out += _text(f" {message.content_type}")
    out.append(tok.MESSAGE)
    for content in message.content:
        if isinstance(content, TextContent):
            out += _text(content.text)
        elif isinstance(content, SystemContent):
            if role != Role.SYSTEM:
                raise RenderError(f"system content may only appear in system messages, found in a {role.value} "
                                  "message")
            out += _text(system_text(content, has_function_tools=has_function_tools))
        elif isinstance(content, DeveloperContent):
            if role != Role.DEVELOPER:
                raise RenderError(f"developer content may only appear in developer messages, found in a "
                                  f"{role.value} message")
            out += _text(developer_text(content))
        else:
            raise RenderError(f"unknown content {type(content).__name__}; expected TextContent, SystemContent "
                              "or DeveloperContent")
    out.append(tok.CALL if role == Role.ASSISTANT and message.recipient is not None else tok.END)
    return out


def conversation_has_function_tools(messages: Sequence[Message]) -> bool:
    return any(isinstance(c, DeveloperContent) and c.function_tools for m in messages for c in m.content)


def messages_to_render(messages: Sequence[Message], auto_drop_analysis: bool = True) -> list[Message]:
    """Apply harmony's history rule: when the last assistant message is final, analysis messages before
    the first final message are dropped."""
    last_assistant = next((m for m in reversed(messages) if m.author.role == Role.ASSISTANT), None)
    if not (auto_drop_analysis and last_assistant is not None and last_assistant.channel == "final"):
        return list(messages)
    first_final = next(i for i, m in enumerate(messages) if m.channel == "final")
    return [m for i, m in enumerate(messages) if not (i < first_final and m.channel == "analysis")]


def render_conversation(messages: Iterable[Message], *, next_role: Role | str | None = Role.ASSISTANT,
                        auto_drop_analysis: bool = True) -> list[int]:
    """Tokens of a whole conversation; with ``next_role`` (default assistant) it ends with
    ``<|start|>{next_role}``, ready for completion. ``next_role=None`` renders the history only."""
    messages = list(messages)
    has_functions = conversation_has_function_tools(messages)
    out: list[int] = []
    for message in messages_to_render(messages, auto_drop_analysis):
        out += render_message(message, has_function_tools=has_functions)
    if next_role is not None:
        out.append(tok.START)
        out += _text(Role.parse(next_role).value)
    return out


def render_conversation_for_training(messages: Iterable[Message], *, auto_drop_analysis: bool = True) -> list[int]:
    """The full conversation; a trailing final assistant message ends with ``<|return|>`` as sampled."""
    messages = list(messages)
    out = render_conversation(messages, next_role=None, auto_drop_analysis=auto_drop_analysis)
    if messages and messages[-1].author.role == Role.ASSISTANT and messages[-1].channel == "final":
        out[-1] = tok.RETURN
    return out
