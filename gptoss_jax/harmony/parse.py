"""Parse completion tokens into harmony messages, incrementally (token by token) or all at once.

``StreamParser`` consumes tokens one at a time and exposes the message being written (role, channel,
recipient, content type, content so far and the last text delta). It follows openai-harmony's parser on
well-formed output, so both give the same messages.

Strict mode (default) raises ``HarmonyParseError`` (and nothing else) on malformed output: text before a
``<|start|>``, a header that cannot be parsed, a stop or ``<|start|>`` token inside a header, a ``<|start|>``
inside content, or the stream ending inside a header. Non-strict mode never raises: it skips stray tokens,
salvages what it can of a broken header (the role it was started with, the channel, the rest as content),
closes a message at an unexpected ``<|start|>`` and replaces invalid UTF-8 with U+FFFD.
"""
from __future__ import annotations

import codecs
import re

from gptoss_jax.errors import GptOssError

from . import tokenizer as tok
from .conversation import Author, Message, Role, TextContent

_ROLES = {r.value: r for r in Role}
_ASCII_WS = re.compile(r"[ \t\n\x0c\r]+")
_CHANNEL_MARK = "<|channel|>"
_CONSTRAIN_MARK = "<|constrain|>"


class HarmonyParseError(GptOssError, ValueError):
    """Malformed harmony output (strict parsing only). The message says what was found and what was expected."""


class _Header:
    __slots__ = ("author", "recipient", "channel", "content_type")

    def __init__(self, author, recipient, channel, content_type):
        self.author, self.recipient, self.channel, self.content_type = author, recipient, channel, content_type


def _split_header(text: str, role: Role | None, with_recipient: bool) -> tuple[_Header, str | None]:
    """Split a decoded header into author/recipient/channel/content type (+ leftover words).
    Raises HarmonyParseError when it cannot."""
    channel = None
    idx = text.find(_CHANNEL_MARK)
    if idx >= 0:
        after = text[idx + len(_CHANNEL_MARK):]
        end = next((i for i, c in enumerate(after) if c.isspace() or c == "<"), len(after))
        if end == 0:
            raise HarmonyParseError("header has <|channel|> but no channel name after it")
        channel = after[:end]
        text = text[:idx] + after[end:]
    text = text.strip()
    if _CONSTRAIN_MARK in text:
        text = text.replace(_CONSTRAIN_MARK, " " + _CONSTRAIN_MARK).strip()
    parts = [p for p in _ASCII_WS.split(text) if p]

    role_word = None
    if role is None:
        if not parts:
            raise HarmonyParseError("message header has no role; expected e.g. 'assistant' after <|start|>")
        role_word = parts[0]
        role = _ROLES.get(role_word)
        if role is None:
            if len(parts) > 1 or parts[0].startswith("to="):
                parts.pop(0)
                role = Role.TOOL
            else:
                raise HarmonyParseError(f"unknown role {role_word!r} in message header; expected one of "
                                        f"{sorted(_ROLES)} or a tool name followed by more header")
    if parts and parts[0] == role.value:
        parts.pop(0)

    recipient = content_type = None
    if with_recipient and parts:
        count = len(parts)
        last = parts.pop()
        if last.startswith("to="):
            recipient = last[3:]
        elif count == 1:
            recipient = last
        else:
            content_type = last
            if parts:
                raw = parts.pop()
                recipient = raw[3:] if raw.startswith("to=") else raw
    leftover = " ".join(parts) if parts else None
    author = Author(role, role_word if role == Role.TOOL else None)
    return _Header(author, recipient, channel, content_type), leftover


class StreamParser:
    """Incremental harmony parser.

    ``role``: the role already rendered in the prompt (``<|start|>assistant`` for a completion, the default);
    None when the tokens begin with ``<|start|>``. Feed tokens with ``process(token)`` and call ``finish()``
    (alias ``process_eos()``) at the end of the stream.
    """

    def __init__(self, role: Role | str | None = Role.ASSISTANT, *, strict: bool = True):
        self.strict = strict
        self.messages: list[Message] = []
        self.stop_tokens: list[int | None] = []  # the token that closed each message (None: end of stream)
        self.tokens: list[int] = []
        self.skipped_tokens = 0  # tokens dropped while recovering (non-strict)
        self._next_role = Role.parse(role) if role is not None else None
        self._state = "header" if role is not None else "expect_start"
        self._header_tokens: list[int] = []
        self._header: _Header | None = None
        self._content: list[str] = []
        self._decoder = None
        self.last_content_delta: str | None = None

    # ----- current message -------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """'expect_start', 'header' or 'content'."""
        return self._state

    @property
    def current_role(self) -> Role | None:
        return self._header.author.role if self._state == "content" else self._next_role

    @property
    def current_channel(self) -> str | None:
        return self._header.channel if self._state == "content" else None

    @property
    def current_recipient(self) -> str | None:
        return self._header.recipient if self._state == "content" else None

    @property
    def current_content_type(self) -> str | None:
        return self._header.content_type if self._state == "content" else None

    @property
    def current_content(self) -> str:
        return "".join(self._content) if self._state == "content" else ""

    # ----- feeding ----------------------------------------------------------------------------------------
    def _fail(self, what: str) -> None:
        raise HarmonyParseError(what)

    def process(self, token: int) -> "StreamParser":
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < tok.VOCAB_SIZE:
            if self.strict:
                self._fail(f"token {token!r} is not an id in [0, {tok.VOCAB_SIZE})")
            self.skipped_tokens += 1
            return self
        self.tokens.append(token)
        self.last_content_delta = None
        if self._state == "expect_start":
            if token == tok.START:
                self._state = "header"
                self._header_tokens = []
            elif self.strict:
                self._fail(f"unexpected token {token} while expecting <|start|> ({tok.START})")
            else:
                self.skipped_tokens += 1
        elif self._state == "header":
            self._process_header_token(token)
        else:
            self._process_content_token(token)
        return self

    def process_all(self, tokens) -> "StreamParser":
        for t in tokens:
            self.process(t)
        return self

    def _process_header_token(self, token: int) -> None:
        if token == tok.MESSAGE:
            header = self._parse_header(self._header_tokens)
            if header is None:  # non-strict: unusable header, message dropped
                self._reset_to_start()
                return
            self._open_content(header)
        elif token in tok.STOP_TOKENS:
            if self.strict:
                self._fail(f"stop token {token} inside a message header (before <|message|>)")
            self._salvage_header(token)
        elif token == tok.START:
            if self.strict:
                self._fail("<|start|> inside a message header (before <|message|>)")
            self.skipped_tokens += len(self._header_tokens)
            self._header_tokens = []
            self._next_role = None
        else:
            self._header_tokens.append(token)

    def _decode(self, tokens: list[int]) -> str:
        data = tok.get_encoding().decode_bytes(tokens)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            if self.strict:
                self._fail("message header is not valid UTF-8")
            return data.decode("utf-8", errors="replace")

    def _parse_header(self, tokens: list[int]) -> _Header | None:
        text = self._decode(tokens)
        try:
            header, leftover = _split_header(text, self._next_role, with_recipient=True)
        except HarmonyParseError:
            if self.strict:
                raise
            try:
                header, leftover = _split_header(text, self._next_role or Role.ASSISTANT, with_recipient=True)
            except HarmonyParseError:
                header, leftover = _Header(Author(self._next_role or Role.ASSISTANT), None, None, None), None
        if leftover is not None and self.strict:
            self._fail(f"unexpected words in message header: {leftover!r}")
        return header

    def _salvage_header(self, stop_token: int) -> None:
        """Non-strict: a stop token arrived before <|message|>. Keep a message if the role is known."""
        if self._next_role is not None and self._header_tokens:
            text = self._decode(self._header_tokens)
            try:
                header, leftover = _split_header(text, self._next_role, with_recipient=False)
            except HarmonyParseError:
                header, leftover = _Header(Author(self._next_role), None, None, None), text
            self._emit(header, leftover or "", stop_token)
        else:
            self.skipped_tokens += len(self._header_tokens) + 1
        self._reset_to_start()

    def _open_content(self, header: _Header) -> None:
        self._header = header
        self._next_role = None
        self._content = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._state = "content"

    def _process_content_token(self, token: int) -> None:
        if token in tok.STOP_TOKENS:
            self._close_content(token)
            return
        if token == tok.START:
            if self.strict:
                self._fail("<|start|> inside message content; expected <|end|>, <|return|> or <|call|> first")
            self._close_content(None)
            self._state = "header"
            self._header_tokens = []
            return
        piece = self._decoder.decode(tok.get_encoding().decode_single_token_bytes(token))
        if piece:
            self._content.append(piece)
            self.last_content_delta = piece

    def _close_content(self, stop_token: int | None) -> None:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._content.append(tail)
        self._emit(self._header, "".join(self._content), stop_token)
        self._reset_to_start()

    def _emit(self, header: _Header, text: str, stop_token: int | None) -> None:
        self.messages.append(Message(header.author, (TextContent(text),), header.channel, header.recipient,
                                     header.content_type))
        self.stop_tokens.append(stop_token)

    def _reset_to_start(self) -> None:
        self._state = "expect_start"
        self._header = None
        self._header_tokens = []
        self._content = []
        self._next_role = None

    def finish(self) -> "StreamParser":
        """End of stream: closes an open message (its stop token is recorded as None)."""
        self.last_content_delta = None
        if self._state == "content":
            self._close_content(None)
        elif self._state == "header":
            if self.strict:
                self._fail("stream ended inside a message header; expected <|message|> and content")
            if self._next_role is not None and self._header_tokens:
                self._salvage_header(None)  # type: ignore[arg-type]
            self._reset_to_start()
        return self

    process_eos = finish


def parse_messages(tokens, role: Role | str | None = Role.ASSISTANT, *, strict: bool = True) -> list[Message]:
    """All messages in a completion (``role``: the role already in the prompt, None if tokens start with
    ``<|start|>``)."""
    return StreamParser(role, strict=strict).process_all(tokens).finish().messages
