"""Closing plans: a short continuation that completes a grammar from a matcher's state, found within a budget.

``plan_completion(matcher, depth, max_len=R, budget=PlanBudget())`` runs two searches, each step checked by
llguidance itself (so a plan is always a valid continuation), both stopping at ``max_len`` tokens (a longer plan
is of no use to a request with R tokens left) and together at the budget (llguidance masks and seconds):

- greedy, one path, no backtracking: where some allowed tokens move the structure (close a string, open or close
  a container, separate items, change message), the best of them (stop tokens first, then the fewest strings and
  containers left open); else the allowed token with the most bytes. One mask a token: cheap, and it reaches the
  end of bulk content (a string of minLength 5000, a pattern ``^[a-z]{5000}$``) or tells that it cannot in time.
- depth-first over single-byte and special tokens, children ranked the same way, content bytes ranked by a one-step
  lookahead that prefers bytes after which the structure can move (a pattern ``^[a-z]+@[a-z]+\\.com$``, where
  taking the longest token would loop): for what the greedy path misses.

The result says whether the budget cut the searches short (``exhausted``: nothing is known) or the greedy path ran
to ``max_len`` without finishing and the depth-first search found nothing either (no completion of at most
``max_len`` tokens was found: the caller may give up with an error).
"""
from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from . import tokenizer as tok

BITMASK_WORDS = (tok.VOCAB_SIZE + 31) // 32
_STRUCTURAL_BYTES = {b'"', b'{', b'}', b'[', b']', b',', b':'}
_SPECIALS = (tok.RETURN, tok.CALL, tok.END, tok.START, tok.CHANNEL, tok.MESSAGE, tok.CONSTRAIN)


@dataclasses.dataclass(frozen=True)
class PlanBudget:
    """What one planning call may spend, both searches together: llguidance mask computations (deterministic work)
    and wall-clock seconds (the bound for grammars whose single masks are slow)."""
    max_masks: int = 2000
    max_seconds: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.max_masks, int) and self.max_masks >= 2):
            raise ValueError(f"PlanBudget.max_masks must be an int >= 2, got {self.max_masks!r}")
        if not self.max_seconds > 0:
            raise ValueError(f"PlanBudget.max_seconds must be > 0, got {self.max_seconds!r}")


@dataclasses.dataclass
class PlanResult:
    plan: list[int] | None          # the continuation (ending in a stop token), or None
    masks: int = 0                  # llguidance mask computations spent
    seconds: float = 0.0
    exhausted: bool = False         # the budget ran out before the searches could conclude
    searcher: str = ""              # 'depth-first' or 'greedy' (whichever found the plan)


class _Meter:
    """Counts masks against a limit and a deadline."""

    def __init__(self, max_masks: int, seconds: float):
        self.left, self.deadline, self.used = max_masks, time.perf_counter() + seconds, 0

    def has_left(self) -> bool:
        return self.left > 0 and time.perf_counter() <= self.deadline

    def spend(self) -> bool:
        """Account for one mask; False when the budget is spent."""
        if self.left <= 0 or time.perf_counter() > self.deadline:
            return False
        self.left -= 1
        self.used += 1
        return True


@functools.lru_cache(maxsize=1)
def _tables():
    """(sorted ids of the tokens the depth-first search uses: one per printable byte plus the harmony specials;
    every token id ordered by byte length, longest first; the ids of the structure-moving tokens (closing a
    string, opening or closing a container, separating items, changing message) in a string, in a string after a
    backslash, and outside strings)."""
    enc = tok.get_encoding()
    single: dict[int, bytes] = {}
    for b in list(range(0x20, 0x7F)) + [0x0A]:
        single[enc.encode_single_token(bytes([b]))] = bytes([b])
    for t in _SPECIALS:
        single[t] = b""
    lengths = np.zeros(tok.VOCAB_SIZE, np.int32)
    for t in range(tok.FIRST_SPECIAL_ID):
        lengths[t] = len(enc.decode_single_token_bytes(t))
    ids = lambda data: np.array(sorted(t for t, b in single.items() if b in data or not b), np.int64)
    structure = (ids({b'"'}), ids(set()), ids(_STRUCTURAL_BYTES))
    return np.array(sorted(single), np.int64), np.argsort(-lengths, kind="stable").astype(np.int64), structure


class JsonDepth:
    """Open strings/containers of the JSON text since the last special token (the planner's heuristic)."""

    __slots__ = ("depth", "in_string", "escape")

    def __init__(self, depth=0, in_string=False, escape=False):
        self.depth, self.in_string, self.escape = depth, in_string, escape

    def copy(self) -> "JsonDepth":
        return JsonDepth(self.depth, self.in_string, self.escape)

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

    def estimate(self) -> int:
        return self.depth + int(self.in_string) + 1


def _allowed(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    words = mask.view(np.uint32)
    return ids[((words[ids >> 5] >> (ids & 31).astype(np.uint32)) & 1).astype(bool)]


def _longest_allowed(mask: np.ndarray) -> int | None:
    by_length = _tables()[1]
    for start in range(0, by_length.size, 4096):
        hit = _allowed(mask, by_length[start:start + 4096])
        if hit.size:
            return int(hit[0])
    return None


def _feed(depth: JsonDepth, token: int) -> JsonDepth:
    special = token >= tok.FIRST_SPECIAL_ID
    depth = depth.copy()
    depth.feed(b"" if special else tok.get_encoding().decode_single_token_bytes(token), special)
    return depth


def _take_forced(node, depth: JsonDepth, path: list[int]):
    """Consume the grammar's forced tokens (they cost no decision). Returns (node, depth, path) or None."""
    forced = node.compute_ff_tokens()
    while forced:
        if not node.consume_tokens(forced):
            return None
        for t in forced:
            depth = _feed(depth, t)
        path = path + list(forced)
        forced = node.compute_ff_tokens()
    return node, depth, path


def done(node, path: list[int]) -> bool:
    return node.is_stopped() or (node.is_accepting() and bool(path) and path[-1] in tok.STOP_TOKENS)


def _structural_ids(depth: JsonDepth) -> np.ndarray:
    """Ids of the single-byte and special tokens that would move the structure in this state."""
    in_string, in_string_escaped, outside = _tables()[2]
    return (in_string_escaped if depth.escape else in_string) if depth.in_string else outside


def _ranked(depth: JsonDepth, tokens) -> list:
    """Candidates (rank, token, depth after), best first: stop tokens, then by structures left open."""
    ranked = []
    for t in tokens:
        after = _feed(depth, t)
        h = 0 if t in tok.STOP_TOKENS and t != tok.END else after.estimate()
        ranked.append(((h, t < tok.FIRST_SPECIAL_ID, t), t, after))
    ranked.sort(key=lambda item: item[0])
    return ranked


def _depth_first(matcher, depth: JsonDepth, max_len: int, meter: _Meter) -> list[int] | None:
    mask = np.empty(BITMASK_WORDS, dtype=np.int32)
    candidates = _tables()[0]
    start = _take_forced(matcher.deep_copy(), depth.copy(), [])
    stack = [start] if start is not None else []
    while stack:
        node, ndepth, path = stack.pop()
        if node.is_error() or len(path) > max_len:
            continue
        if done(node, path):
            return path
        if len(path) >= max_len:
            continue
        if not meter.spend():
            return None
        node.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        structural = _allowed(mask, _structural_ids(ndepth)).tolist()
        ranked = _ranked(ndepth, structural or _allowed(mask, candidates).tolist())
        children = []
        if structural:
            for _, t, after in ranked:
                child = node.deep_copy()
                if child.consume_token(t) and (taken := _take_forced(child, after, path + [t])) is not None:
                    children.append(taken)
                if len(children) >= 4:  # bounded branching: the best few are enough in practice
                    break
        else:
            # content only (a pattern string, an enum, a number): prefer the bytes after which the structure
            # can move again (e.g. a digit after which a number may end), by a one-step lookahead
            scored = []
            for rank, t, after in ranked:
                child = node.deep_copy()
                if not child.consume_token(t) or (taken := _take_forced(child, after, path + [t])) is None:
                    continue
                if not meter.spend():
                    break
                cnode, cdepth, cpath = taken
                cnode.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
                opens = _allowed(mask, _structural_ids(cdepth)).size > 0
                scored.append((not (opens or done(cnode, cpath)), rank, taken))
            scored.sort(key=lambda item: item[:2])
            children = [item[2] for item in scored[:4]]
        stack.extend(reversed(children))
    return None


def _greedy(matcher, depth: JsonDepth, max_len: int, meter: _Meter) -> tuple[list[int] | None, bool]:
    """One path: structural tokens best first, else the longest allowed token, repeated as a run while the
    structure cannot move (_content_run). Returns (plan, exhausted)."""
    mask = np.empty(BITMASK_WORDS, dtype=np.int32)
    taken = _take_forced(matcher.deep_copy(), depth.copy(), [])
    while taken is not None:
        node, ndepth, path = taken
        if node.is_error():
            return None, False
        if done(node, path):
            return (path, False) if len(path) <= max_len else (None, False)
        if len(path) >= max_len:
            return None, False
        if not meter.spend():
            return None, True
        node.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        structural = _allowed(mask, _structural_ids(ndepth)).tolist()
        if structural:
            t = _ranked(ndepth, structural)[0][1]
            if not node.consume_token(t):
                return None, False
            taken = _take_forced(node, _feed(ndepth, t), path + [t])
            continue
        t = _longest_allowed(mask)
        if t is None:
            return None, False
        run = _content_run(node, ndepth, t, max_len - len(path), meter, mask)
        if run is None:
            return None, not meter.has_left()
        node, count = run
        taken = _take_forced(node, ndepth if _neutral(t) else _feed(ndepth, t), path + [t] * count)
    return None, False


_MAX_BATCH = 128   # tokens llguidance checks in one call of a content run (bounds the time between budget checks)


def _neutral(token: int) -> bool:
    """Content whose bytes move no structure: repeating it leaves the JsonDepth as it is."""
    return not any(c in b'"\\{}[]' for c in tok.get_encoding().decode_single_token_bytes(token))


def _content_run(node, depth: JsonDepth, t: int, room: int, meter: _Meter, mask: np.ndarray):
    """Take content token t (allowed now) as many times as is useful, at most `room`: doubling batches checked by
    llguidance without masks (try_consume_tokens), one mask after each to see whether the structure can move yet;
    the batch after which it can is narrowed down by bisection. A run of 5000 letters costs a dozen masks.
    Returns (node after the run, count), or None (llguidance's own limits refused it, or the budget ran out)."""
    if not _neutral(t):
        return (node, 1) if node.consume_token(t) else None
    count, batch = 0, 1
    while count < room:
        batch = min(batch, room - count, _MAX_BATCH)
        trial = node.deep_copy()
        got = trial.try_consume_tokens([t] * batch)
        if trial.is_error():
            return None
        if got == 0:
            break
        if not meter.spend():
            return None
        trial.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        if not _allowed(mask, _structural_ids(depth)).size:
            node, count = trial, count + got
            if got < batch:        # t is no longer allowed: the run ends here
                break
            batch *= 2
            continue
        lo, hi = 0, got            # the structure can move after `hi` more, not after `lo`
        while hi - lo > 1:
            mid = (lo + hi) // 2
            probe = node.deep_copy()
            probe.try_consume_tokens([t] * mid)
            if not meter.spend():
                return None
            probe.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
            lo, hi = (lo, mid) if _allowed(mask, _structural_ids(depth)).size else (mid, hi)
        node.try_consume_tokens([t] * hi)
        return node, count + hi
    return (node, count) if count else None


SEARCHES = ("greedy", "depth-first")


def plan_completion(matcher, depth: JsonDepth, *, max_len: int, budget: PlanBudget = PlanBudget(),
                    order: tuple[str, ...] = SEARCHES) -> PlanResult:
    """A continuation of at most ``max_len`` tokens that completes the grammar from ``matcher``'s state (which is
    not modified), found within ``budget`` (shared by the searches, tried in ``order``); see the module docstring.

    ``exhausted`` is False when the greedy search ran to ``max_len`` without finishing (or into llguidance's own
    limits) and the depth-first one, given a quarter of the budget after that, found nothing either: no completion
    that fits was found."""
    t0 = time.perf_counter()
    meter = _Meter(budget.max_masks, budget.max_seconds)
    exhausted, used = True, 0
    for search in order:
        if search == "greedy":
            plan, exhausted = _greedy(matcher, depth, max_len, meter)
        elif exhausted:
            plan = _depth_first(matcher, depth, max_len, meter)
        else:  # the greedy path cannot fit: a quarter of the budget to look for what it missed
            second = _Meter(min(meter.left, budget.max_masks // 4),
                            min(meter.deadline - time.perf_counter(), budget.max_seconds / 4))
            plan = _depth_first(matcher, depth, max_len, second)
            used += second.used
        if plan is not None:
            return PlanResult(plan, meter.used + used, time.perf_counter() - t0, searcher=search)
    return PlanResult(None, meter.used + used, time.perf_counter() - t0, exhausted=exhausted)
