"""Structured outputs: token masks from a real grammar engine (llguidance) for the sampler.

Compile once per schema/grammar (cached), then start one stateful ``TokenConstraint`` per request:

    grammar = compile_json_schema(schema, envelope="final")     # cached by content
    c = grammar.new_constraint(max_tokens=512)
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
constraint keeps a *closing plan*: the shortest continuation (found by A* search over single-byte and
special tokens, each step checked by the grammar engine itself, with the count of open JSON strings,
objects and arrays as heuristic) that completes the grammar from the current state. While the remaining
budget exceeds the plan's length (plus a margin), the mask is the grammar's full mask; once it does not,
the mask allows only the plan's next token. Every output is therefore a string the grammar accepts, and
it ends within the budget whenever any completion fits. The plan is recomputed only near the end of the
budget, so the common path costs one llguidance mask (tens of microseconds).

Batch use: ``fill_bitmasks(constraints, out)`` fills a ``[batch, BITMASK_WORDS]`` array, computing the plain
masks in parallel on llguidance's thread pool (the GIL is released), so it can run on a host thread while
the device computes the next logits.
"""
from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gptoss_jax.errors import InputError

from . import tokenizer as tok
from .chat import normalize_tool_choice, normalize_tools

VOCAB_SIZE = tok.VOCAB_SIZE
BITMASK_WORDS = (VOCAB_SIZE + 31) // 32
DEFAULT_MAX_ANALYSIS_TOKENS = 512


class ConstraintError(InputError):
    """A schema/grammar that cannot be compiled (the message names the problem), or a token the constraint
    does not allow."""


def _llg():
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ConstraintError("structured outputs need the 'llguidance' package (pip install llguidance)") from e
    return llguidance


@functools.lru_cache(maxsize=1)
def ll_tokenizer():
    """llguidance's view of o200k_harmony (built once: about a second)."""
    from llguidance.tiktoken import lltokenizer_from_encoding
    _llg()
    return lltokenizer_from_encoding(tok.get_encoding(), n_vocab=VOCAB_SIZE, eos_token=tok.RETURN)


@functools.lru_cache(maxsize=1)
def _executor():
    return _llg().LLExecutor()


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
    merged = dict(schema)
    guidance = dict(merged.get("x-guidance") or {})
    guidance.update(_json_options(whitespace, lenient))
    merged["x-guidance"] = guidance
    try:
        text = json.dumps(merged)
    except (TypeError, ValueError) as e:
        raise ConstraintError(f"the JSON schema is not JSON-serializable: {e}") from e
    return f"%json {text}"


def _one_line(error: str) -> str:
    """llguidance's error as one line: its message without the grammar listing and the caret lines under it."""
    lines = [ln.strip() for ln in error.splitlines()]
    text = " ".join(ln for ln in lines if ln and not re.match(r"\d+ \| ", ln) and set(ln) != {"^"})
    return re.sub(r"^at \d+\(\d+\): (failed to compile JSON schema: )?", "", text)


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

    def __init__(self, lark: str, description: str):
        llg = _llg()
        self.lark = lark
        self.description = description
        self.stop_token_ids = tok.STOP_TOKENS_FOR_ASSISTANT_ACTIONS
        grammar = llg.LLMatcher.grammar_from_lark(lark)
        error = llg.LLMatcher.validate_grammar(grammar, ll_tokenizer())
        if error:
            raise ConstraintError(f"cannot compile {description}: {_one_line(error)}")
        self._grammar = grammar

    def new_constraint(self, max_tokens: int | None = None) -> "TokenConstraint":
        return TokenConstraint(self, max_tokens)

    def __repr__(self):
        return f"CompiledGrammar({self.description})"


_cache_lock = threading.Lock()
_cache: dict[str, CompiledGrammar] = {}


def _compiled(lark: str, description: str) -> CompiledGrammar:
    with _cache_lock:
        hit = _cache.get(lark)
    if hit is not None:
        return hit
    grammar = CompiledGrammar(lark, description)
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
    return _compiled(_envelope(f"body: {body}\n", envelope, max_analysis_tokens), "the JSON schema")


def compile_json_object(*, envelope: str | None = None,
                        max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar:
    return compile_json_schema({"type": "object"}, envelope=envelope, max_analysis_tokens=max_analysis_tokens)


def compile_regex(pattern: str, *, envelope: str | None = None,
                  max_analysis_tokens: int = DEFAULT_MAX_ANALYSIS_TOKENS) -> CompiledGrammar:
    """Text matching the whole regex (Rust regex syntax)."""
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex must be a string, got {type(pattern).__name__}")
    body = f"body: /{_llg().regex_to_lark(pattern, '')}/\n"
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


# ------------------------------------------------------------------------------------------------ per request
@functools.lru_cache(maxsize=1)
def _token_bytes_table() -> tuple[dict[int, bytes], list[int]]:
    """Bytes of the tokens the closing planner may use: one per printable byte, plus the harmony specials."""
    enc = tok.get_encoding()
    table: dict[int, bytes] = {}
    for b in list(range(0x20, 0x7F)) + [0x0A]:
        table[enc.encode_single_token(bytes([b]))] = bytes([b])
    for t in (tok.RETURN, tok.CALL, tok.END, tok.START, tok.CHANNEL, tok.MESSAGE, tok.CONSTRAIN):
        table[t] = b""
    return table, sorted(table)


PLANNER_STATS = {'expansions': 0}  # counters for tests and profiling
_STRUCTURAL_BYTES = {b'"', b'{', b'}', b'[', b']', b',', b':'}


class _JsonDepth:
    """Open strings/containers of the JSON text since the last special token (the planner's heuristic)."""

    __slots__ = ("depth", "in_string", "escape")

    def __init__(self, depth=0, in_string=False, escape=False):
        self.depth, self.in_string, self.escape = depth, in_string, escape

    def copy(self):
        return _JsonDepth(self.depth, self.in_string, self.escape)

    def feed(self, data: bytes, special: bool) -> None:
        if special:
            self.depth, self.in_string, self.escape = 0, False, False
            return
        for c in data:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif c == 0x5C:
                    self.escape = True
                elif c == 0x22:
                    self.in_string = False
            elif c == 0x22:
                self.in_string = True
            elif c in (0x7B, 0x5B):
                self.depth += 1
            elif c in (0x7D, 0x5D):
                self.depth = max(0, self.depth - 1)

    def is_structural(self, data: bytes, special: bool) -> bool:
        """Would this token move the structure (close a string, open/close a container, separate items, or
        change message)? Content bytes (string characters, digits, letters) do not."""
        if special:
            return True
        if self.in_string:
            return data == b'"' and not self.escape
        return data in _STRUCTURAL_BYTES

    def estimate(self) -> int:
        return self.depth + int(self.in_string) + 1


def _allowed_ids(mask_words: np.ndarray, candidates: Iterable[int]) -> list[int]:
    return [t for t in candidates if (int(mask_words[t >> 5]) >> (t & 31)) & 1]


# Plans longer than this are not searched (the planner backtracks instead).
MAX_PLAN_TOKENS = 256


def _take_forced(node, ndepth: _JsonDepth, path: list[int], enc):
    """Consume the grammar's forced tokens (they cost no decision). Returns (node, depth, path) or None."""
    forced = node.compute_ff_tokens()
    while forced:
        if not node.consume_tokens(forced):
            return None
        ndepth = ndepth.copy()
        for t in forced:
            ndepth.feed(enc.decode_single_token_bytes(t), special=t >= tok.FIRST_SPECIAL_ID)
        path = path + list(forced)
        forced = node.compute_ff_tokens()
    return node, ndepth, path


def _done(node, path: list[int]) -> bool:
    return node.is_stopped() or (node.is_accepting() and bool(path) and path[-1] in tok.STOP_TOKENS)


def plan_completion(matcher, depth: _JsonDepth, *, max_expansions: int = 2000) -> list[int] | None:
    """A short token sequence that completes the grammar from ``matcher``'s state (which is not modified),
    or None if none was found within ``max_expansions`` nodes.

    Depth-first search, children tried best first: at each node the candidates are the allowed single-byte
    and special tokens; when some of them move the structure (close a string, open/close a container,
    separate items, stop), only those are tried; content bytes (string characters, digits) only where the
    structure cannot move yet (string patterns, enums, numbers). Candidates are ordered by the number of
    structures left open after them, so closing comes first. Forced tokens are taken at once. Each step is
    checked by llguidance, so a plan is always a valid continuation."""
    table, candidates = _token_bytes_table()
    enc = tok.get_encoding()
    mask = np.empty(BITMASK_WORDS, dtype=np.int32)
    start = _take_forced(matcher.deep_copy(), depth.copy(), [], enc)
    if start is None:
        return None
    stack = [start]
    expansions = 0
    while stack and expansions < max_expansions:
        node, ndepth, path = stack.pop()
        if node.is_error():
            continue
        if _done(node, path):
            return path
        if len(path) >= MAX_PLAN_TOKENS:
            continue
        expansions += 1
        PLANNER_STATS["expansions"] += 1
        node.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        allowed = _allowed_ids(mask, candidates)
        structural = [t for t in allowed if ndepth.is_structural(table[t], t >= tok.FIRST_SPECIAL_ID)]
        ranked = []
        for t in structural or allowed:
            cdepth = ndepth.copy()
            cdepth.feed(table[t], special=t >= tok.FIRST_SPECIAL_ID)
            h = 0 if t in tok.STOP_TOKENS and t != tok.END else cdepth.estimate()
            ranked.append((h, t < tok.FIRST_SPECIAL_ID, t, cdepth))
        children = []
        if structural:
            ranked.sort(key=lambda item: item[:3])
            for h, _, t, cdepth in ranked:
                child = node.deep_copy()
                if child.consume_token(t):
                    taken = _take_forced(child, cdepth, path + [t], enc)
                    if taken is not None:
                        children.append(taken)
                if len(children) >= 4:  # bounded branching: the best few are enough in practice
                    break
        else:
            # Content only (inside a pattern string, an enum, a number): look one step ahead and prefer the
            # bytes after which the structure can move again (e.g. a digit after which a number may end).
            scored = []
            for h, _, t, cdepth in ranked:
                child = node.deep_copy()
                if not child.consume_token(t):
                    continue
                taken = _take_forced(child, cdepth, path + [t], enc)
                if taken is None:
                    continue
                cnode, cdepth2, cpath = taken
                cnode.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
                opens = any(cdepth2.is_structural(table[u], u >= tok.FIRST_SPECIAL_ID)
                            for u in _allowed_ids(mask, candidates))
                scored.append((not (opens or _done(cnode, cpath)), h, t, taken))
            scored.sort(key=lambda item: item[:3])
            children = [item[3] for item in scored[:4]]
        stack.extend(reversed(children))
    return None


class TokenConstraint:
    """Per-request constraint state. Not thread-safe per instance; different instances are independent.

    ``fill_bitmask(out)`` writes the allowed-token bitmask (int32 ``[BITMASK_WORDS]``); ``advance(token)``
    consumes the sampled token (raises ConstraintError for a token the mask did not allow);
    ``is_finished()`` is True once the grammar is complete (its final stop token consumed).
    """

    # How far from the end of the budget the planner starts to look, how often it re-plans there, and the
    # slack kept between the plan's length and the remaining budget (one sampled token can open a few
    # structures at once, lengthening the plan).
    PLAN_WINDOW = 128
    REPLAN_EVERY = 4
    MARGIN = 8

    def __init__(self, grammar: CompiledGrammar, max_tokens: int | None = None):
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens > 0):
            raise ConstraintError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
        self.grammar = grammar
        self.max_tokens = max_tokens
        self.generated: list[int] = []
        self._matcher = _llg().LLMatcher(ll_tokenizer(), grammar._grammar, log_level=0)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot start {grammar.description}: {_one_line(self._matcher.get_error())}")
        self._depth = _JsonDepth()
        self._plan: list[int] | None = None  # closing mode: forced continuation
        self._plan_len_estimate: int | None = None
        self._last_plan_at = -10 ** 9

    # ----- state
    @property
    def remaining_tokens(self) -> int | None:
        return None if self.max_tokens is None else self.max_tokens - len(self.generated)

    @property
    def closing(self) -> bool:
        """True once the constraint follows its closing plan (the budget is nearly spent)."""
        return self._plan is not None

    def is_finished(self) -> bool:
        return self._matcher.is_stopped() or (
            self._matcher.is_accepting() and bool(self.generated) and self.generated[-1] in tok.STOP_TOKENS)

    def is_error(self) -> bool:
        return self._matcher.is_error()

    def text(self) -> str:
        return tok.get_encoding().decode(self.generated)

    # ----- masks
    def _maybe_enter_closing(self) -> None:
        remaining = self.remaining_tokens
        if remaining is None or self._plan is not None or remaining > self.PLAN_WINDOW:
            return
        if len(self.generated) - self._last_plan_at < self.REPLAN_EVERY:
            known = self._plan_len_estimate
            if known is None or remaining > known + self.REPLAN_EVERY + self.MARGIN:
                return
        plan = plan_completion(self._matcher, self._depth)
        self._last_plan_at = len(self.generated)
        self._plan_len_estimate = None if plan is None else len(plan)
        if plan is not None and len(plan) + self.MARGIN + self.REPLAN_EVERY >= remaining:
            self._plan = plan

    def needs_full_mask(self) -> bool:
        """False when the next mask is a single forced token (closing plan); used by fill_bitmasks."""
        self._maybe_enter_closing()
        return self._plan is None

    def fill_bitmask(self, out: np.ndarray) -> None:
        if out.dtype != np.int32 or out.shape != (BITMASK_WORDS,) or not out.flags["C_CONTIGUOUS"]:
            raise ConstraintError(f"bitmask row must be a C-contiguous int32 array of shape ({BITMASK_WORDS},), got "
                                  f"{out.dtype} {out.shape}")
        if self.needs_full_mask():
            self._matcher.unsafe_compute_mask_ptr(out.ctypes.data, out.nbytes)
        else:
            self._fill_forced(out)

    def _fill_forced(self, out: np.ndarray) -> None:
        out.fill(0)
        t = self._plan[0]
        out.view(np.uint32)[t >> 5] = np.uint32(1 << (t & 31))

    def advance(self, token_id: int) -> None:
        token_id = int(token_id)
        if self._plan is not None:
            if token_id != self._plan[0]:
                raise ConstraintError(f"token {token_id} is not allowed: the constraint is closing and only "
                                      f"allows {self._plan[0]}")
            self._plan.pop(0)
        if not self._matcher.consume_token(token_id):
            raise ConstraintError(f"token {token_id} ({tok.get_encoding().decode([token_id])!r}) is not allowed by "
                                  f"{self.grammar.description}: {self._matcher.get_error()[:200]}")
        self.generated.append(token_id)
        self._depth.feed(tok.get_encoding().decode_single_token_bytes(token_id), special=token_id >=
                         tok.FIRST_SPECIAL_ID)


def fill_bitmasks(constraints: Sequence[TokenConstraint | None], out: np.ndarray) -> None:
    """Fill row i of ``out`` ([batch, BITMASK_WORDS] int32) for constraint i; a None slot allows everything.
    Plain masks are computed in parallel by llguidance (GIL released)."""
    if out.dtype != np.int32 or out.ndim != 2 or out.shape[1] != BITMASK_WORDS or out.shape[0] < len(constraints):
        raise ConstraintError(f"bitmask must be int32 [>= {len(constraints)}, {BITMASK_WORDS}], got {out.dtype} "
                              f"{out.shape}")
    if not out.flags["C_CONTIGUOUS"]:
        raise ConstraintError("bitmask must be C-contiguous")
    parallel = []
    for i, c in enumerate(constraints):
        if c is None:
            out[i].fill(-1)
        elif c.needs_full_mask():
            parallel.append((c._matcher, i))
        else:
            c._fill_forced(out[i])
    if parallel:
        _executor().unsafe_compute_mask_ptr(parallel, out.ctypes.data, BITMASK_WORDS * 4, out.shape[0])


def allowed_tokens(mask_row: np.ndarray) -> np.ndarray:
    """Boolean [VOCAB_SIZE] view of a packed bitmask row (for tests and host-side samplers)."""
    bits = np.unpackbits(mask_row.view(np.uint8), bitorder="little")
    return bits[:VOCAB_SIZE].astype(bool)
