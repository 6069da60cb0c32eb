"""Structured outputs: token masks from a real grammar engine (llguidance) for the sampler.

Compile once per schema/grammar (cached), then start one stateful ``TokenConstraint`` per request:

    grammar = compile_json_schema(schema, envelope="final")     # cached by content
    c = grammar.new_constraint(max_tokens=512)                 # refused if no value fits in 512 tokens
    row = np.empty(BITMASK_WORDS, np.int32)
    while not c.is_finished():
        c.fill_bitmask(row)             # bit t of row[t // 32] set <=> token t allowed
        token = sample(logits, row)     # the engine does this inside its jitted sampler
        c.advance(token)

Kinds: JSON schema, ``json_object`` (any JSON object), regex, choice (one of given strings); each either
bare (only the value, ending in ``<|return|>``) or in a harmony envelope (``envelope="final"``: the
completion after ``<|start|>assistant`` may hold one bounded analysis message, then the final-channel
header is forced, then the value, then ``<|return|>``). ``compile_tool_choice`` builds the envelope that
enforces ``tool_choice`` ``required`` / a named function (the call header plus arguments valid under the
function's parameter schema) or ``none`` (no call: analysis then a final answer).

Termination within ``max_tokens`` (without changing what the grammar accepts): under a near-uniform
sampler, strings, arrays and free text may run arbitrarily long. When ``max_tokens`` is given, the
constraint keeps a *closing plan*: a short continuation that completes the grammar from the current state
(closing.py: a depth-first search for JSON structure, a greedy one for bulk content, each step checked by
llguidance). While the remaining budget exceeds the plan's length (plus a margin), the mask is the grammar's
full mask; once it does not, the mask allows only the plan's next token. Every output is therefore a string
the grammar accepts, and it ends within the budget whenever a completion is found that fits. The plan is
recomputed only near the end of the budget, so the common path costs one llguidance mask (tens of microseconds).

Bounded cost: every planning call has a ``PlanBudget`` (mask computations and seconds), so one mask costs at
most one llguidance mask plus that budget. A JSON schema whose shortest value cannot fit in a gpt-oss context
(schema_bounds.py: minLength, minItems, required properties, ...) is refused when compiled; a grammar that cannot
be completed within a request's tokens is refused when its constraint starts (``new_constraint`` raises
ConstraintError: that bound, or the planner's verdict that no completion fits); a request that runs out of room
later (or whose planning runs out of its budget three times in a row) fails with such an error instead of ending
with a truncated value. Schemas and tools nested deeper than llguidance takes are refused when compiled.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Mapping, Sequence

from . import tokenizer as tok
from .chat import MAX_JSON_DEPTH, json_too_deep, normalize_tool_choice, normalize_tools
from .closing import BITMASK_WORDS, JsonDepth, PlanBudget, PlanResult, max_token_bytes, plan_completion
from .matcher import ConstraintError, TokenConstraint, allowed_tokens, ll_tokenizer, llguidance_module, one_line
from .schema_bounds import min_json_bytes

VOCAB_SIZE = tok.VOCAB_SIZE
DEFAULT_MAX_ANALYSIS_TOKENS = 512
MAX_CONTEXT = 131072   # gpt-oss's context: a value that cannot fit in it is refused when its schema is compiled
__all__ = ["BITMASK_WORDS", "CompiledGrammar", "ConstraintError", "PlanBudget", "PlanResult", "TokenConstraint",
           "allowed_tokens", "compile_choice", "compile_json_object", "compile_json_schema", "compile_regex",
           "compile_response_format", "compile_tool_choice", "ll_tokenizer"]


# ------------------------------------------------------------------------------------------------ grammars
def _json_options(whitespace: str, lenient: bool) -> dict:
    if whitespace not in ("compact", "flexible"):
        raise ConstraintError(f"whitespace must be 'compact' or 'flexible', got {whitespace!r}")
    opts: dict[str, Any] = {"whitespace_flexible": whitespace == "flexible"}
    if lenient:
        opts["lenient"] = True
    return opts


def _json_body(schema: Mapping, whitespace: str = "compact", lenient: bool = False) -> str:
    if not isinstance(schema, Mapping):
        raise ConstraintError(f"a JSON schema must be an object (dict), got {type(schema).__name__}")
    if json_too_deep(schema):
        raise ConstraintError(f"the JSON schema is nested more than {MAX_JSON_DEPTH} levels deep; expected at most "
                              f"{MAX_JSON_DEPTH} levels of objects and arrays")
    merged = dict(schema)
    guidance = dict(merged.get("x-guidance") or {})
    guidance.update(_json_options(whitespace, lenient))
    merged["x-guidance"] = guidance
    try:
        text = json.dumps(merged)
    except (TypeError, ValueError) as e:
        raise ConstraintError(f"the JSON schema is not JSON-serializable: {e}") from e
    return f"%json {text}"


def _lark_string(text: str) -> str:
    return json.dumps(text)


def _analysis_rule(max_analysis_tokens: int) -> str:
    if not (isinstance(max_analysis_tokens, int) and max_analysis_tokens >= 1):
        raise ConstraintError(f"max_analysis_tokens must be a positive int, got {max_analysis_tokens!r}")
    return (f'analysis: <|channel|> "analysis" <|message|> thought <|end|> <|start|> "assistant"\n'
            f"thought[max_tokens={max_analysis_tokens}]: /(.|\\n)*/\n")


def _envelope(body_rules: str, envelope: str | None, max_analysis_tokens: int) -> str:
    if envelope is None:
        return f"start: body <|return|>\n{body_rules}"
    if envelope != "final":
        raise ConstraintError(f"envelope must be None or 'final', got {envelope!r}")
    return ('start: analysis? final\n'
            'final: <|channel|> "final" <|message|> body <|return|>\n'
            + _analysis_rule(max_analysis_tokens) + body_rules)


class CompiledGrammar:
    """A validated llguidance grammar; ``new_constraint()`` starts a fresh per-request state.

    ``stop_token_ids``: what the sampler should stop on while this grammar runs (an envelope lets
    ``<|end|>`` close an analysis message mid-completion, so only ``<|return|>``/``<|call|>`` stop)."""

    def __init__(self, lark: str, description: str, min_tokens: int = 0):
        llg = llguidance_module()
        self.lark = lark
        self.description = description
        self.min_tokens = min_tokens   # a lower bound on the tokens of any completion (schema_bounds.py)
        self.stop_token_ids = tok.STOP_TOKENS_FOR_ASSISTANT_ACTIONS
        grammar = llg.LLMatcher.grammar_from_lark(lark)
        error = llg.LLMatcher.validate_grammar(grammar, ll_tokenizer())
        if error:
            raise ConstraintError(f"cannot compile {description}: {one_line(error)}")
        self._grammar = grammar
        self._start_lock = threading.Lock()
        self._start_found: int | None = None   # the shortest plan from the start found so far
        self._start_none_within = 0            # no plan of at most this many tokens exists (greedy ran that far)

    def new_constraint(self, max_tokens: int | None = None, budget: PlanBudget = PlanBudget()) -> "TokenConstraint":
        """A fresh per-request state. With max_tokens, raises ConstraintError when no completion of the grammar
        fits in that many tokens (planning within ``budget``; the result is kept for the next request)."""
        return TokenConstraint(self, max_tokens, budget)

    def start_plan_length(self, max_tokens: int, budget: PlanBudget) -> int | None:
        """Length of a completion from the start that fits in max_tokens, None if the budget ran out first;
        raises ConstraintError when none fits."""
        if self.min_tokens > max_tokens:
            raise ConstraintError(f"{self.description} cannot be completed within max_tokens={max_tokens}: its "
                                  f"shortest value takes at least {self.min_tokens} tokens; raise max_tokens or relax "
                                  "the schema (e.g. a long minLength or minItems)")
        with self._start_lock:
            if self._start_found is not None and self._start_found <= max_tokens:
                return self._start_found
            if max_tokens > self._start_none_within:
                matcher = llguidance_module().LLMatcher(ll_tokenizer(), self._grammar, log_level=0)
                res = plan_completion(matcher, JsonDepth(), max_len=max_tokens, budget=budget)
                if res.plan is not None:
                    self._start_found = min(len(res.plan), self._start_found or len(res.plan))
                    return len(res.plan)
                if res.exhausted:
                    return None
                self._start_none_within = max_tokens
        raise ConstraintError(f"{self.description} cannot be completed within max_tokens={max_tokens}: no "
                              f"completion of at most {max_tokens} tokens was found; raise max_tokens or relax the "
                              "schema (e.g. a long minLength, minItems or pattern)")

    def __repr__(self):
        return f"CompiledGrammar({self.description})"


_cache_lock = threading.Lock()
_cache: dict[str, CompiledGrammar] = {}


def _compiled(lark: str, description: str, min_tokens: int = 0) -> CompiledGrammar:
    with _cache_lock:
        hit = _cache.get(lark)
    if hit is not None:
        return hit
    grammar = CompiledGrammar(lark, description, min_tokens)
    with _cache_lock:
        if len(_cache) > 1024:
            _cache.clear()
        _cache[lark] = grammar
    return grammar


def compile_json_schema(schema: Mapping, *, envelope: str | None = None,
                        max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS, whitespace: str = "compact",
                        lenient: bool = False) -> CompiledGrammar:
    """JSON valid under ``schema``. ``whitespace='compact'`` (default) allows no insignificant whitespace
    (the same JSON values are accepted); ``lenient`` ignores keywords llguidance does not implement instead
    of failing."""
    body = _json_body(schema, whitespace, lenient)
    shortest = min_json_bytes(schema)
    min_tokens = -(-shortest // max_token_bytes())
    if min_tokens > MAX_CONTEXT:
        raise ConstraintError(f"the JSON schema's shortest value takes {shortest} bytes, at least {min_tokens} tokens: "
                              f"more than a gpt-oss context holds ({MAX_CONTEXT} tokens); relax the schema (e.g. a "
                              "long minLength or minItems)")
    return _compiled(_envelope(f"body: {body}\n", envelope, max_analysis_tokens), "the JSON schema", min_tokens)


def compile_json_object(*, envelope: str | None = None,
                        max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar:
    return compile_json_schema({"type": "object"}, envelope=envelope, max_analysis_tokens=max_analysis_tokens)


def compile_regex(pattern: str, *, envelope: str | None = None,
                  max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar:
    """Text matching the whole regex (Rust regex syntax)."""
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex must be a string, got {type(pattern).__name__}")
    body = f"body: /{llguidance_module().regex_to_lark(pattern, '')}/\n"
    lark = _envelope(body, envelope, max_analysis_tokens)
    return _compiled(lark, f"the regex {pattern!r}")


def compile_choice(options: Sequence[str], *, envelope: str | None = None,
                   max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar:
    """Exactly one of the given strings."""
    if isinstance(options, str) or not options or not all(isinstance(o, str) for o in options):
        raise ConstraintError(f"choice needs a non-empty list of strings, got {options!r}")
    body = "body: " + " | ".join(_lark_string(o) for o in options) + "\n"
    return _compiled(_envelope(body, envelope, max_analysis_tokens), f"the choice {list(options)!r}")


def compile_tool_choice(tools: Sequence[Any], tool_choice: Any, *,
                        max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar | None:
    """The harmony envelope enforcing ``tool_choice`` on the completion after ``<|start|>assistant``:
    'required' -> optional analysis, then a call ``<|channel|>commentary to=functions.NAME <|constrain|>json
    <|message|>{arguments}<|call|>`` to one of the tools with arguments valid under its parameters (parsed
    leniently); a named function -> the same for that function only; 'none' -> optional analysis then a
    final answer, no call; 'auto' -> None (no constraint)."""
    descriptions = normalize_tools(tools)
    choice = normalize_tool_choice(tool_choice, [t.name for t in descriptions])
    if choice.mode == "auto":
        return None
    if choice.mode == "none":
        lark = ('start: analysis? final\n'
                'final: <|channel|> "final" <|message|> answer <|return|>\n'
                'answer: /(.|\\n)*/\n' + _analysis_rule(max_analysis_tokens))
        return _compiled(lark, "tool_choice='none'")
    chosen = [t for t in descriptions if choice.mode == "required" or t.name == choice.name]
    rules = []
    names = []
    for i, t in enumerate(chosen):
        params = t.parameters if t.parameters is not None else {"type": "object"}
        rules.append(f'call{i}: {_lark_string(t.name)} " " <|constrain|> "json" <|message|> '
                     f'{_json_body(params, lenient=True)} <|call|>')
        names.append(f"call{i}")
    lark = ('start: analysis? call\n'
            f'call: <|channel|> "commentary to=functions." ({" | ".join(names)})\n'
            + "\n".join(rules) + "\n" + _analysis_rule(max_analysis_tokens))
    what = f"tool_choice={choice.mode}" + (f" ({choice.name})" if choice.name else "")
    return _compiled(lark, what)


def compile_response_format(response_format: Any, *, envelope: str | None = "final",
                            max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar | None:
    """OpenAI ``response_format`` -> grammar (None for 'text')."""
    rtype = response_format.get("type") if isinstance(response_format, Mapping) else None
    if response_format is None or rtype == "text":
        return None
    if rtype == "json_object":
        return compile_json_object(envelope=envelope, max_analysis_tokens=max_analysis_tokens)
    if rtype == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise ConstraintError("response_format json_schema needs a 'schema' object")
        return compile_json_schema(schema, envelope=envelope, max_analysis_tokens=max_analysis_tokens)
    raise ConstraintError(f"response_format type {rtype!r} is not supported; expected text, json_object or "
                          "json_schema")
