"""Parsed harmony messages -> an OpenAI-style assistant result (content, reasoning, tool calls)."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Sequence

from .conversation import Message, Role
from .parse import StreamParser


@dataclasses.dataclass(frozen=True)
class ToolCall:
    id: str
    name: str  # function name without the "functions." prefix
    arguments: str  # the raw JSON text the model wrote

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclasses.dataclass(frozen=True)
class BuiltinCall:
    recipient: str  # e.g. "browser.search" or "python"
    content: str
    content_type: str | None = None


@dataclasses.dataclass(frozen=True)
class ChatResult:
    """What one assistant turn produced.

    ``reasoning``: the full chain of thought (every analysis message, joined by newlines); ``content``: the
    final answer (None if the model did not reach one); ``preambles``: commentary messages addressed to the
    user; ``finish_reason``: 'tool_calls', 'stop' or 'length' (no stop token: truncated).
    """

    content: str | None
    reasoning: str | None
    tool_calls: tuple[ToolCall, ...]
    builtin_calls: tuple[BuiltinCall, ...]
    preambles: tuple[str, ...]
    finish_reason: str
    messages: tuple[Message, ...]

    def to_message(self) -> dict[str, Any]:
        """An OpenAI-style assistant message (with ``reasoning_content``), ready to append to the chat."""
        return assistant_message(self.content, self.reasoning, self.tool_calls)


def assistant_message(content: str | None, reasoning: str | None, tool_calls: Sequence[ToolCall]) -> dict[str, Any]:
    """An OpenAI-style assistant message: content, reasoning_content (when there is any), tool_calls."""
    out: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        out["reasoning_content"] = reasoning
    if tool_calls:
        out["tool_calls"] = [c.to_openai() for c in tool_calls]
    return out


def _call_id(index: int, name: str, arguments: str) -> str:
    digest = hashlib.sha1(f"{index}:{name}:{arguments}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def result_from_messages(messages: Sequence[Message], stop_tokens: Sequence[int | None] = ()) -> ChatResult:
    reasoning, finals, preambles = [], [], []
    tool_calls, builtin_calls = [], []
    for m in messages:
        if m.author.role != Role.ASSISTANT:
            continue
        if m.recipient is not None and m.recipient != "all":
            if m.recipient.startswith("functions."):
                name = m.recipient[len("functions."):]
                tool_calls.append(ToolCall(_call_id(len(tool_calls), name, m.text), name, m.text))
            else:
                builtin_calls.append(BuiltinCall(m.recipient, m.text, m.content_type))
        elif m.channel == "analysis":
            reasoning.append(m.text)
        elif m.channel == "commentary":
            preambles.append(m.text)
        else:  # final, or no channel at all
            finals.append(m.text)
    last = messages[-1] if messages else None
    if not stop_tokens or stop_tokens[-1] is None:
        finish = "length"  # the stream ended without a stop token
    elif last.author.role == Role.ASSISTANT and last.recipient not in (None, "all"):
        finish = "tool_calls"
    else:
        finish = "stop"
    return ChatResult(
        content="".join(finals) if finals else None,
        reasoning="\n".join(reasoning) if reasoning else None,
        tool_calls=tuple(tool_calls), builtin_calls=tuple(builtin_calls), preambles=tuple(preambles),
        finish_reason=finish, messages=tuple(messages))


def parse_completion(tokens: Sequence[int], *, strict: bool = False, role: Role | str | None = Role.ASSISTANT
                     ) -> ChatResult:
    """Completion tokens (sampled after ``<|start|>assistant``) -> ChatResult. Non-strict by default: a
    truncated or malformed completion still yields what could be recovered; ``strict=True`` raises
    HarmonyParseError instead."""
    parser = StreamParser(role, strict=strict).process_all(tokens).finish()
    return result_from_messages(parser.messages, parser.stop_tokens)
