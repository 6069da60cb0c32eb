"""llguidance at run time: the package, its view of o200k_harmony, and ``TokenConstraint``, one request's matcher
state (masks, tokens consumed, the closing plan that ends it within its token budget; see constrain.py)."""
from __future__ import annotations

import functools
import re

import numpy as np

from gptoss_jax.errors import InputError

from . import tokenizer as tok
from .closing import BITMASK_WORDS, SEARCHES, JsonDepth, PlanBudget, PlanResult, done, plan_completion


class ConstraintError(InputError):
    """A schema/grammar that cannot be compiled (the message names the problem), or a token the constraint
    does not allow."""


def llguidance_module():
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
    llguidance_module()
    return lltokenizer_from_encoding(tok.get_encoding(), n_vocab=tok.VOCAB_SIZE, eos_token=tok.RETURN)


def one_line(error: str) -> str:
    """llguidance's error as one line: its message without the grammar listing and the caret lines under it."""
    lines = [ln.strip() for ln in error.splitlines()]
    text = " ".join(ln for ln in lines if ln and not re.match(r"\d+ \| ", ln) and set(ln) != {"^"})
    return re.sub(r"^at \d+\(\d+\): (failed to compile JSON schema: )?", "", text)


class TokenConstraint:
    """Per-request constraint state. Not thread-safe per instance; different instances are independent.

    ``fill_bitmask(out)`` writes the allowed-token bitmask (int32 ``[BITMASK_WORDS]``); ``advance(token)``
    consumes the sampled token (raises ConstraintError for a token the mask did not allow);
    ``is_finished()`` is True once the grammar is complete (its final stop token consumed). ``last_plan`` is the
    most recent planning call's PlanResult (plan, masks spent, seconds), for inspection. ``grammar``: a
    constrain.CompiledGrammar (not imported here: constrain imports this module).
    """

    # How far from the end of the budget the planner starts to look (at least; further when the last plan found
    # was long), how often it re-plans there, and the slack kept between the plan's length and the remaining
    # budget (one sampled token can open a few structures at once, lengthening the plan).
    PLAN_WINDOW = 128
    REPLAN_EVERY = 4
    MARGIN = 8
    MAX_EXHAUSTED = 3   # planning calls in a row cut short by the budget before the constraint gives up

    def __init__(self, grammar, max_tokens: int | None = None, budget: PlanBudget = PlanBudget()):
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens > 0):
            raise ConstraintError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
        if not isinstance(budget, PlanBudget):
            raise ConstraintError(f"budget must be a PlanBudget, got {type(budget).__name__}")
        self.grammar, self.max_tokens, self.budget = grammar, max_tokens, budget
        self.generated: list[int] = []
        self.last_plan: PlanResult | None = None
        self._matcher = llguidance_module().LLMatcher(ll_tokenizer(), grammar._grammar, log_level=0)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot start {grammar.description}: {one_line(self._matcher.get_error())}")
        self._depth = JsonDepth()
        self._plan: list[int] | None = None  # closing mode: forced continuation
        self._plan_len: int | None = None    # length of the last plan found
        self._last_plan_at = -10 ** 9
        self._order = SEARCHES
        self._exhausted = 0
        if max_tokens is not None:
            self._plan_len = grammar.start_plan_length(max_tokens, budget)
            self._last_plan_at = 0

    def capped(self, max_tokens: int) -> "TokenConstraint":
        """This constraint if its budget is within ``max_tokens``, else a fresh one of the same grammar with that
        budget (before any token: a request's limit shrunk to fit its engine's context)."""
        if self.max_tokens is not None and self.max_tokens <= max_tokens:
            return self
        if self.generated:
            raise ConstraintError("cannot change the token budget of a constraint that has started")
        return TokenConstraint(self.grammar, max_tokens, self.budget)

    # ----- state
    @property
    def remaining_tokens(self) -> int | None:
        return None if self.max_tokens is None else self.max_tokens - len(self.generated)

    @property
    def closing(self) -> bool:
        """True once the constraint follows its closing plan (the budget is nearly spent)."""
        return self._plan is not None

    def is_finished(self) -> bool:
        return done(self._matcher, self.generated)

    def is_error(self) -> bool:
        return self._matcher.is_error()

    def text(self) -> str:
        return tok.get_encoding().decode(self.generated)

    # ----- masks
    def _replan_every(self) -> int:
        return max(self.REPLAN_EVERY, (self._plan_len or 0) // 8)

    def _maybe_enter_closing(self) -> None:
        remaining = self.remaining_tokens
        every = self._replan_every()
        if remaining is None or self._plan is not None or remaining > max(
                self.PLAN_WINDOW, (self._plan_len or 0) + 2 * every + self.MARGIN):
            return
        known = self._plan_len
        if len(self.generated) - self._last_plan_at < every and (known is None or
                                                                 remaining > known + every + self.MARGIN):
            return
        res = self.last_plan = plan_completion(self._matcher, self._depth, max_len=remaining, budget=self.budget,
                                               order=self._order)
        self._last_plan_at = len(self.generated)
        self._plan_len = None if res.plan is None else len(res.plan)
        if res.searcher:  # the search that found this plan goes first next time (a grammar keeps its kind)
            self._order = (res.searcher,) + tuple(x for x in SEARCHES if x != res.searcher)
        self._exhausted = self._exhausted + 1 if res.exhausted else 0
        if res.plan is None and not res.exhausted:
            raise ConstraintError(
                f"cannot finish {self.grammar.description} within max_tokens={self.max_tokens}: after "
                f"{len(self.generated)} tokens no completion of at most {remaining} tokens was found; give it more "
                "tokens or relax the schema (e.g. a long minLength, minItems or pattern)")
        if self._exhausted >= self.MAX_EXHAUSTED:
            raise ConstraintError(
                f"cannot plan the end of {self.grammar.description} within max_tokens={self.max_tokens}: "
                f"{self._exhausted} planning calls in a row ran out of their budget ({self.budget}); raise the "
                "budget or relax the schema")
        if res.plan is not None and len(res.plan) + self.MARGIN + every >= remaining:
            self._plan = res.plan

    def fill_bitmask(self, out: np.ndarray) -> None:
        if out.dtype != np.int32 or out.shape != (BITMASK_WORDS,) or not out.flags["C_CONTIGUOUS"]:
            raise ConstraintError(f"bitmask row must be a C-contiguous int32 array of shape ({BITMASK_WORDS},), got "
                                  f"{out.dtype} {out.shape}")
        self._maybe_enter_closing()
        if self._plan is None:
            self._matcher.unsafe_compute_mask_ptr(out.ctypes.data, out.nbytes)
        else:
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


def allowed_tokens(mask_row: np.ndarray) -> np.ndarray:
    """Boolean [VOCAB_SIZE] view of a packed bitmask row (for tests and host-side samplers)."""
    bits = np.unpackbits(mask_row.view(np.uint8), bitorder="little")
    return bits[:tok.VOCAB_SIZE].astype(bool)
