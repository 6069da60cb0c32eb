"""The harmony conversation model: messages with an author, channel, recipient and content type.

Mirrors the data model of the harmony format (and of the ``openai-harmony`` package) so that a conversation
built here renders to the same tokens. Content is text, a system content (model identity, dates, reasoning
effort, built-in tool namespaces, valid channels) or a developer content (instructions, function tools and,
as an extension the format describes, response formats for structured output).
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Iterable, Sequence, Union

from gptoss_jax.harmony.constants import REASONING_EFFORTS

DEFAULT_MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
DEFAULT_KNOWLEDGE_CUTOFF = "2024-06"
DEFAULT_CHANNELS = ("analysis", "commentary", "final")
CONSTRAIN_JSON = "<|constrain|>json"


class Role(str, enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    DEVELOPER = "developer"
    TOOL = "tool"

    @classmethod
    def parse(cls, value: "Role | str") -> "Role":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown role {value!r}; expected one of {[r.value for r in cls]}") from None


@dataclasses.dataclass(frozen=True)
class Author:
    role: Role
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class TextContent:
    text: str


@dataclasses.dataclass(frozen=True)
class ToolDescription:
    name: str
    description: str
    parameters: dict | None = None  # a JSON schema; None renders as a function without arguments


@dataclasses.dataclass(frozen=True)
class ToolNamespace:
    """A group of tools: ``functions`` (developer message) or a built-in one like ``browser`` (system)."""

    name: str
    description: str | None = None
    tools: tuple[ToolDescription, ...] = ()


@dataclasses.dataclass(frozen=True)
class ResponseFormat:
    """A structured-output format, rendered under ``# Response Formats`` in the developer message."""

    name: str
    schema: dict
    description: str | None = None


@dataclasses.dataclass(frozen=True)
class SystemContent:
    model_identity: str | None = DEFAULT_MODEL_IDENTITY
    reasoning_effort: str | None = "medium"
    conversation_start_date: str | None = None
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF
    valid_channels: tuple[str, ...] = DEFAULT_CHANNELS
    channel_required: bool = True
    tools: tuple[ToolNamespace, ...] = ()  # rendered in namespace-name order, as harmony does

    def __post_init__(self):
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {REASONING_EFFORTS} or None, "
                             f"got {self.reasoning_effort!r}")


@dataclasses.dataclass(frozen=True)
class DeveloperContent:
    instructions: str | None = None
    tools: tuple[ToolNamespace, ...] = ()
    response_formats: tuple[ResponseFormat, ...] = ()

    @property
    def function_tools(self) -> tuple[ToolDescription, ...]:
        for ns in self.tools:
            if ns.name == "functions":
                return ns.tools
        return ()


Content = Union[TextContent, SystemContent, DeveloperContent]


@dataclasses.dataclass(frozen=True)
class Message:
    author: Author
    content: tuple[Content, ...]
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None

    @classmethod
    def of(cls, role: Role | str, content: "str | Content | Sequence[Content]", *, name: str | None = None,
           channel: str | None = None, recipient: str | None = None,
           content_type: str | None = None) -> "Message":
        """Build a message; a string becomes one text content."""
        if isinstance(content, str):
            contents: tuple[Content, ...] = (TextContent(content),)
        elif isinstance(content, (TextContent, SystemContent, DeveloperContent)):
            contents = (content,)
        else:
            contents = tuple(content)
        return cls(Author(Role.parse(role), name), contents, channel, recipient, content_type)

    @property
    def role(self) -> Role:
        return self.author.role

    @property
    def text(self) -> str:
        """All text contents concatenated (system/developer contents contribute nothing)."""
        return "".join(c.text for c in self.content if isinstance(c, TextContent))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.author.role.value}
        if self.author.name is not None:
            out["name"] = self.author.name
        out["content"] = self.text
        for key in ("channel", "recipient", "content_type"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclasses.dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]

    @classmethod
    def of(cls, messages: Iterable[Message]) -> "Conversation":
        return cls(tuple(messages))

    def __iter__(self):
        return iter(self.messages)

    def __len__(self):
        return len(self.messages)
