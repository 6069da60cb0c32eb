"""Completion tokens -> the pieces OpenAI APIs stream, token by token: reasoning text (the analysis channel), answer
text (the final channel), function calls (name first, then argument text). Commentary to the user (preambles) and
built-in tool calls are not part of the answer and are left out, as in gptoss_jax.chat.from_engine_result.

Also kept: which generated tokens wrote answer text (their logprobs are the answer's) and how many tokens the chain
of thought took (usage.completion_tokens_details.reasoning_tokens). Stop strings: `StopFilter` holds back text that
might begin a stop string and cuts at one, so streamed text equals the final text.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from gptoss_jax import harmony


@dataclasses.dataclass
class Piece:
    kind: str                 # reasoning | content | tool_call
    text: str                 # text added (for a tool call: argument text)
    call: int = -1            # tool call index
    name: str | None = None   # set on a tool call's first piece


class HarmonyStream:
    def __init__(self):
        self.parser = harmony.StreamParser("assistant", strict=False)
        self.calls: list[str] = []
        self.reasoning_tokens = 0
        self.content_tokens: list[int] = []   # indices of generated tokens that wrote answer text
        self._kind: str | None = None
        self._open = False
        self._streamed = ""
        self._msg_start = 0
        self._closed_msgs = 0

    def _kind_of(self, channel: str | None, recipient: str | None) -> str | None:
        if recipient and recipient.startswith("functions."):
            return "tool_call"
        if recipient not in (None, "all", "assistant"):
            return None                      # a built-in tool call
        if channel == "analysis":
            return "reasoning"
        return None if channel == "commentary" else "content"

    def _piece(self, text: str) -> Piece:
        return Piece(self._kind, text, len(self.calls) - 1) if self._kind == "tool_call" else Piece(self._kind, text)

    def feed(self, token: int) -> list[Piece]:
        p = self.parser
        index = len(p.tokens)
        p.process(token)
        out: list[Piece] = []
        if len(p.messages) > self._closed_msgs:
            out += self._close(index)
        if p.state == "content" and not self._open:
            self._open = True
            self._kind = self._kind_of(p.current_channel, p.current_recipient)
            if self._kind == "tool_call":
                self.calls.append(p.current_recipient[len("functions."):])
                out.append(Piece("tool_call", "", len(self.calls) - 1, self.calls[-1]))
        if p.state == "content" and p.last_content_delta and self._kind is not None:
            self._streamed += p.last_content_delta
            if self._kind == "content":
                self.content_tokens.append(index)
            out.append(self._piece(p.last_content_delta))
        return out

    def _close(self, index: int) -> list[Piece]:
        """Messages closed at token `index`: send what the decoder held back, count reasoning tokens."""
        out = []
        for m in self.parser.messages[self._closed_msgs:]:
            text = m.text
            if not self._open:  # salvaged without ever opening (non-strict parse of a malformed header)
                self._kind = self._kind_of(m.channel, m.recipient)
                if self._kind == "tool_call":
                    self.calls.append(m.recipient[len("functions."):])
                    out.append(Piece("tool_call", "", len(self.calls) - 1, self.calls[-1]))
            if self._kind is not None and text.startswith(self._streamed) and len(text) > len(self._streamed):
                out.append(self._piece(text[len(self._streamed):]))
            if m.channel == "analysis":
                self.reasoning_tokens += index + 1 - self._msg_start
            self._msg_start = index + 1
            self._kind, self._streamed, self._open = None, "", False
        self._closed_msgs = len(self.parser.messages)
        return out

    def finish(self) -> list[Piece]:
        self.parser.finish()
        return self._close(len(self.parser.tokens) - 1) if len(self.parser.messages) > self._closed_msgs else []


class StopFilter:
    """Streamed text with stop strings applied: text that might start a stop string is held back until it cannot;
    at a stop string the text ends (the stop string is not part of it)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(stops)
        self.held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        if not self.stops:
            return text
        buf = self.held + text
        found = [buf.find(s) for s in self.stops if s in buf]
        if found:
            self.hit, self.held = True, ""
            return buf[:min(found)]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        out, self.held = ("" if self.hit else self.held), ""
        return out


def cut_at_stop(text: str | None, stops: Sequence[str]) -> str | None:
    """Text up to the first stop string (the whole text when none occurs)."""
    if text is None or not stops:
        return text
    found = [text.find(s) for s in stops if s in text]
    return text[:min(found)] if found else text
