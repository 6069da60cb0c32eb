"""Chat with the engine in the harmony format: OpenAI-style messages in, OpenAI-style results out.

The one place where harmony (rendering, parsing, constraints) meets the engine (requests, sampling); the CLI's
`generate --chat` and `chat`, `gptoss demo` and the eval harness's local backend all go through it.

    engine = Engine(gptoss_jax.load(path), num_slots=8)
    req = ChatRequest([{"role": "user", "content": "2+2?"}], reasoning_effort="low")
    result = complete(engine, req)            # ChatCompletion: .content, .reasoning, .tool_calls, .usage
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping, Sequence

from gptoss_jax import harmony
from gptoss_jax.harmony.results import assistant_message
from gptoss_jax.engine import Engine, Request, RequestError, Result, SamplingParams


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """An OpenAI-style chat completion request.

    messages: OpenAI chat messages; tools: OpenAI function tools; tool_choice: auto | none | required | a name
    ({"type": "function", "function": {"name": ...}} also works); response_format: OpenAI's (text, json_object,
    json_schema): enforced by constrained decoding of the final channel; builtin_tools: ('browser', 'python').
    sampling: the engine's SamplingParams (its stop_token_ids are replaced by harmony's).
    plan_budget: what the constraint may spend planning how to close its value in time (harmony.PlanBudget).
    """
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    reasoning_effort: str = "medium"
    tool_choice: Any = "auto"
    response_format: Any = None
    builtin_tools: Sequence[str] = ()
    developer_instructions: str | None = None
    current_date: Any = None
    sampling: SamplingParams = SamplingParams()
    id: str | None = None
    plan_budget: harmony.PlanBudget = harmony.PlanBudget()


@dataclasses.dataclass
class ChatCompletion:
    """What one chat request produced: the parsed harmony result plus the engine's accounting."""
    content: str | None
    reasoning: str | None
    tool_calls: tuple[harmony.ToolCall, ...]
    finish_reason: str            # stop | tool_calls | length | error | cancelled
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]
    error: str | None = None
    timings: dict = dataclasses.field(default_factory=dict)
    parsed: harmony.ChatResult | None = None

    def to_message(self) -> dict[str, Any]:
        return assistant_message(self.content, self.reasoning, self.tool_calls)


def to_engine_request(req: ChatRequest, *, max_len: int | None = None,
                      default_max_tokens: int | None = None) -> Request:
    """Render the conversation, compile its constraint (response_format or tool_choice), set harmony's stops.

    max_len (the engine's context): a constraint plans to close its value within what fits after the prompt (a
    schema that cannot is refused here); an explicit max_tokens past the context is left for the engine to refuse.
    default_max_tokens (the engine's limits.default_max_tokens): the limit of a request that sets none (within the
    context), which the constraint plans to finish within; without it such a request runs to the engine's own
    default, to which the engine refits the constraint.
    Raises harmony.ChatInputError / harmony.ConstraintError for input that cannot be mapped, naming what is wrong.
    """
    if isinstance(req.messages, (list, tuple)) and not req.messages:
        raise harmony.ChatInputError("messages is empty; expected at least one message (e.g. a user message)")
    prompt = harmony.render_chat(
        req.messages, req.tools, req.reasoning_effort, tool_choice=req.tool_choice,
        developer_instructions=req.developer_instructions, current_date=req.current_date,
        builtin_tools=tuple(req.builtin_tools), response_format=req.response_format)
    grammar = harmony.compile_response_format(req.response_format)
    tool_grammar = harmony.compile_tool_choice(req.tools or (), req.tool_choice) if req.tools else None
    if grammar is not None and tool_grammar is not None:
        raise harmony.ConstraintError("response_format and a forcing tool_choice cannot both constrain one turn; "
                                      "use tool_choice='auto' with a response_format")
    grammar = grammar or tool_grammar
    stops = tuple(sorted(grammar.stop_token_ids if grammar is not None
                         else harmony.STOP_TOKENS_FOR_ASSISTANT_ACTIONS))
    sampling = dataclasses.replace(req.sampling, stop_token_ids=stops)
    room = max_len - len(prompt) if max_len is not None and len(prompt) < max_len else None
    limit = sampling.max_tokens
    if limit is None and default_max_tokens is not None:   # the default, within the context
        limit = default_max_tokens if room is None else min(default_max_tokens, room)
        sampling = dataclasses.replace(sampling, max_tokens=limit)
    # an explicit limit past the context stays: the engine refuses it by name. The constraint plans for what can
    # really be generated (with no limit here, the engine refits it to its own default: Engine.submit)
    plan = limit if room is None else room if limit is None else min(limit, room)
    constraint = grammar.new_constraint(max_tokens=plan, budget=req.plan_budget) if grammar is not None else None
    return Request(prompt, sampling, constraint=constraint, id=req.id)


def from_engine_result(res: Result) -> ChatCompletion:
    """Parse the engine's tokens (non-strict: a truncated or malformed completion still yields what it holds)."""
    if res.finish_reason in ("error", "cancelled"):
        return ChatCompletion(None, None, (), res.finish_reason, res.prompt_tokens, res.completion_tokens,
                              list(res.token_ids), error=res.error, timings=dict(res.timings))
    parsed = harmony.parse_completion(res.token_ids)
    finish = "length" if res.finish_reason == "length" else parsed.finish_reason
    return ChatCompletion(parsed.content, parsed.reasoning, parsed.tool_calls, finish, res.prompt_tokens,
                          res.completion_tokens, list(res.token_ids), timings=dict(res.timings), parsed=parsed)


def complete(engine: Engine, req: ChatRequest) -> ChatCompletion:
    """One chat turn on `engine`; the completion limit fits the engine's context (see to_engine_request)."""
    [res] = engine.generate([to_engine_request(req, max_len=engine.max_len,
                                               default_max_tokens=engine.limits.default_max_tokens)])
    return from_engine_result(res)


@dataclasses.dataclass
class ChatDelta:
    """A piece of streamed output: text added to `channel` (analysis | commentary | final), addressed to
    `recipient` (None, or e.g. functions.get_weather for a tool call being written)."""
    channel: str | None
    recipient: str | None
    text: str


def stream(engine: Engine, req: ChatRequest) -> Iterator[ChatDelta | ChatCompletion]:
    """Yield ChatDeltas as tokens arrive, then the ChatCompletion."""
    parser = harmony.StreamParser("assistant", strict=False)
    rid = None
    for ev in engine.stream(to_engine_request(req, max_len=engine.max_len,
                                              default_max_tokens=engine.limits.default_max_tokens)):
        rid = ev.request_id
        if ev.token_id < 0:
            continue
        parser.process(ev.token_id)
        if parser.last_content_delta:
            yield ChatDelta(parser.current_channel, parser.current_recipient, parser.last_content_delta)
    yield from_engine_result(engine.result(rid))


def generate_fn(engine: Engine, sampling: SamplingParams) -> Callable[..., list[int]]:
    """An engine-backed `generate_fn` for harmony.run_tool_loop (function calling with Python tools). A round's
    constraint is fitted to what is left of the engine's context by the engine itself (Engine.submit)."""
    def fn(prompt_ids, *, stop_token_ids, constraint=None, max_tokens=None) -> list[int]:
        if sampling.max_tokens is None:   # the loop's budget for a round, within what the context leaves
            room = engine.limits.room(len(prompt_ids))
            limit = min(max_tokens or engine.limits.default_max_tokens, room) if room >= 1 else None
        else:                             # the caller's own: one past the context is the engine's error
            limit = min(sampling.max_tokens, max_tokens or sampling.max_tokens)
        s = dataclasses.replace(sampling, stop_token_ids=tuple(stop_token_ids), max_tokens=limit)
        [res] = engine.generate([Request(list(prompt_ids), s, constraint=constraint)])
        if res.finish_reason == "error":
            raise RequestError("request", res.error or "generation failed")
        return list(res.token_ids)
    return fn


__all__ = ["ChatCompletion", "ChatDelta", "ChatRequest", "complete", "from_engine_result",
           "generate_fn", "stream", "to_engine_request"]
