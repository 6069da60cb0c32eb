"""The function-calling loop: generate, run the called tool, feed the result back, generate again.

``generate_fn(prompt_ids, *, stop_token_ids, constraint=None, max_tokens) -> list[int]`` is the caller's
sampler (the engine; a scripted fake in tests). It returns the completion tokens after ``<|start|>assistant``
(including the stop token it stopped on). The loop works on the harmony conversation itself, so analysis,
preambles, built-in tool calls (browser, python) and their results stay in the prompt exactly as harmony
prescribes; the OpenAI-style view is derived at the end.

tool_choice is enforced with a grammar on the completion (constrain.compile_tool_choice), not by hoping:
'required' / a named function constrain the first round to a call (later rounds are 'auto', so the model can
answer after seeing the result); 'none' constrains every round to analysis + a final answer. Bad calls (invalid
JSON, unknown function, an exception in the function) become an error tool result for the model, not a crash.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence

from .. import tokenizer as tok
from ..chat import chat_to_conversation, normalize_tool_choice, normalize_tools
from ..constrain import compile_tool_choice
from ..conversation import Author, Message, Role, TextContent
from ..parse import StreamParser
from ..render import render_conversation
from ..results import ChatResult, result_from_messages

GenerateFn = Callable[..., list]


class ToolLoopError(RuntimeError):
    """The caller's generate_fn returned something that is not a list of token ids."""


@dataclasses.dataclass(frozen=True)
class ToolCallRecord:
    round: int
    recipient: str  # "functions.NAME", "browser.search", "python", ...
    arguments: str
    result: str
    error: bool


@dataclasses.dataclass(frozen=True)
class ToolLoopResult:
    """The outcome: ``result`` is the last round's ChatResult with ``reasoning`` gathered over all rounds;
    ``messages`` the OpenAI-style messages the loop appended (assistant tool calls, tool results, the final
    assistant message); ``conversation`` the full harmony conversation; ``finish_reason`` is 'stop',
    'length' or 'max_rounds'."""

    result: ChatResult
    messages: list[dict]
    conversation: tuple[Message, ...]
    calls: tuple[ToolCallRecord, ...]
    rounds: int
    finish_reason: str

    @property
    def content(self) -> str | None:
        return self.result.content

    @property
    def reasoning(self) -> str | None:
        return self.result.reasoning


def _error(text: str) -> str:
    return json.dumps({"error": text}, ensure_ascii=False)


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def call_function(name: str, arguments: str, impls: Mapping[str, Callable[..., Any]]) -> tuple[str, bool]:
    """Run one function call; returns (result text, is_error). Never raises for a bad call."""
    impl = impls.get(name)
    if impl is None:
        return _error(f"unknown function {name!r}; available: {sorted(impls)}"), True
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as e:
        return _error(f"arguments for {name} are not valid JSON ({e.msg} at position {e.pos}); expected a JSON "
                      "object"), True
    if not isinstance(args, dict):
        return _error(f"arguments for {name} must be a JSON object, got {type(args).__name__}"), True
    try:
        return _result_text(impl(**args)), False
    except TypeError as e:
        return _error(f"bad arguments for {name}: {e}"), True
    except Exception as e:  # the tool's own failure goes back to the model
        return _error(f"{name} failed: {type(e).__name__}: {e}"), True


def run_tool_loop(generate_fn: GenerateFn, messages: Sequence[Any], tools: Sequence[Any] | None,
                  tool_impls: Mapping[str, Callable[..., Any]], tool_choice: Any = "auto", max_rounds: int = 8, *,
                  builtin_tools: Sequence[Any] = (), reasoning_effort: str | None = "medium",
                  max_tokens: int = 4096, max_analysis_tokens: int = 1024, **render_kwargs) -> ToolLoopResult:
    """Run the model with function tools until it answers (or ``max_rounds`` generations were made).

    ``tool_impls`` maps function names to Python callables taking the JSON arguments as keyword arguments;
    their return value (str, or anything JSON-serializable) is the tool result. ``builtin_tools`` are tool
    objects with ``namespace`` (a ToolNamespace for the system message) and ``call(recipient, content,
    content_type) -> str`` (e.g. BrowserTool, PythonTool). Extra keyword arguments go to chat_to_conversation
    (current_date, developer_instructions, response_format, ...)."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    function_names = [t.name for t in normalize_tools(tools)]
    choice = normalize_tool_choice(tool_choice, function_names)
    builtins_by_ns = {b.namespace.name: b for b in builtin_tools}
    conversation = list(chat_to_conversation(
        messages, tools, reasoning_effort, tool_choice=tool_choice,
        builtin_tools=tuple(b.namespace for b in builtin_tools), **render_kwargs).messages)
    openai_messages: list[dict] = []
    calls: list[ToolCallRecord] = []
    reasoning_parts: list[str] = []
    result: ChatResult | None = None
    finish = "max_rounds"
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        round_choice = choice.mode if (rounds == 1 or choice.mode == "none") else "auto"
        grammar = None
        if round_choice != "auto":
            grammar = compile_tool_choice(tools, tool_choice if round_choice != "none" else "none",
                                          max_analysis_tokens=max_analysis_tokens)
        constraint = grammar.new_constraint(max_tokens=max_tokens) if grammar is not None else None
        prompt = render_conversation(conversation, next_role=Role.ASSISTANT)
        completion = generate_fn(prompt, stop_token_ids=sorted(tok.STOP_TOKENS_FOR_ASSISTANT_ACTIONS),
                                 constraint=constraint, max_tokens=max_tokens)
        if not isinstance(completion, (list, tuple)) or not all(isinstance(t, int) for t in completion):
            raise ToolLoopError(f"generate_fn must return a list of token ids, got {type(completion).__name__}")
        parser = StreamParser(Role.ASSISTANT, strict=False).process_all(completion).finish()
        produced = list(parser.messages)  # as history they render with <|end|>/<|call|>, as harmony wants
        conversation += produced
        result = result_from_messages(produced, parser.stop_tokens)
        if result.reasoning:
            reasoning_parts.append(result.reasoning)
        last = produced[-1] if produced else None
        is_call = (last is not None and last.author.role == Role.ASSISTANT and last.recipient not in (None, "all")
                   and result.finish_reason == "tool_calls")
        if not is_call:
            finish = result.finish_reason
            openai_messages.append(result.to_message())
            break
        text, is_error = _run_call(last, tool_impls, builtins_by_ns)
        calls.append(ToolCallRecord(rounds, last.recipient, last.text, text, is_error))
        conversation.append(Message(Author(Role.TOOL, last.recipient), (TextContent(text),),
                                    channel=last.channel, recipient="assistant"))
        if last.recipient.startswith("functions."):
            call = result.tool_calls[-1]
            openai_messages.append({"role": "assistant", "content": None, "tool_calls": [call.to_openai()],
                                    **({"reasoning_content": result.reasoning} if result.reasoning else {})})
            openai_messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text})
    assert result is not None
    merged = dataclasses.replace(result, reasoning="\n".join(reasoning_parts) or None)
    return ToolLoopResult(merged, openai_messages, tuple(conversation), tuple(calls), rounds, finish)


def _run_call(call: Message, impls: Mapping[str, Callable[..., Any]], builtins: Mapping[str, Any]) -> tuple[str, bool]:
    recipient = call.recipient or ""
    if recipient.startswith("functions."):
        return call_function(recipient[len("functions."):], call.text, impls)
    namespace = recipient.split(".", 1)[0]
    tool = builtins.get(namespace)
    if tool is None:
        return _error(f"unknown tool {recipient!r}; available: "
                      f"{['functions.' + n for n in sorted(impls)] + sorted(builtins)}"), True
    try:
        return tool.call(recipient, call.text, call.content_type), False
    except Exception as e:  # a built-in tool's failure goes back to the model
        return _error(f"{recipient} failed: {type(e).__name__}: {e}"), True
