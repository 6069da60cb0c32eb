"""Closing plans: a short continuation that completes a grammar from a matcher's state, found within a budget.

``plan_completion(matcher, depth, max_len=R, budget=PlanBudget())`` runs two searches, each step checked by
llguidance itself (so a plan is always a valid continuation), both stopping at ``max_len`` tokens (a longer plan
is of no use to a request with R tokens left) and together at the budget (llguidance masks and seconds):

- greedy, one path, no backtracking: where some allowed tokens move the structure (close a string, open or close
  a container, separate items, change message), the best of them (stop tokens first, then the fewest strings and
  containers left open); else the allowed token with the most bytes, taken as a run (doubling batches checked by
  llguidance without masks, bisected to where the structure can move). Cheap: a string of minLength 5000 or a
  pattern ``^[a-z]{5000}$`` costs a dozen masks, and it tells when such content cannot end in time.
- depth-first over single-byte and special tokens, children ranked the same way, content bytes ranked by a one-step
  lookahead that prefers bytes after which the structure can move: for what the greedy path misses (a pattern
  ``^[a-z]+@[a-z]+\\.com$``, where the longest token, letters, would run on forever).

Without a plan the result says whether that is a verdict (``exhausted`` False: llguidance refused the greedy path,
or the greedy path did not end in time and the depth-first search spent its masks or tried every branch) or the
budget ran out first (``exhausted`` True: nothing is known). Seconds never make a verdict: a loaded machine only
makes a planning call inconclusive.
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
# why a search ended without a plan
ROOM, LIMIT, MASKS, TIME, SPACE = "room", "llguidance limit", "masks", "time", "every branch tried"


@dataclasses.dataclass(frozen=True)
class PlanBudget:
    """What one planning call may spend, both searches together: llguidance mask computations (deterministic work)
    and wall-clock seconds (the bound for grammars whose single masks are slow)."""
    max_masks: int = 1000
    max_seconds: float = 2.0

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

    def why(self) -> str:
        return MASKS if self.left <= 0 else TIME

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
    return (np.array(sorted(single), np.int64), np.argsort(-lengths, kind="stable").astype(np.int64), structure,
            int(lengths.max()))


def max_token_bytes() -> int:
    """Bytes of the longest token of o200k_harmony (128): a value of B bytes takes at least B / this tokens."""
    return _tables()[3]


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


def _depth_first(matcher, depth: JsonDepth, max_len: int, meter: _Meter) -> tuple[list[int] | None, str]:
    """(plan, '') or (None, why): SPACE (every branch tried), MASKS or TIME (the budget ran out)."""
    mask = np.empty(BITMASK_WORDS, dtype=np.int32)
    candidates = _tables()[0]
    start = _take_forced(matcher.deep_copy(), depth.copy(), [])
    stack = [start] if start is not None else []
    while stack:
        node, ndepth, path = stack.pop()
        if node.is_error() or len(path) > max_len:
            continue
        if done(node, path):
            return path, ""
        if len(path) >= max_len:
            continue
        if not meter.spend():
            return None, meter.why()
        node.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        structural = _allowed(mask, _structural_ids(ndepth)).tolist()
        content = _allowed(mask, candidates).tolist() or [t for t in [_longest_allowed(mask)] if t is not None]
        ranked = _ranked(ndepth, structural or content)   # content: also a multi-byte token (a UTF-8 tail)
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
                    return None, meter.why()
                cnode, cdepth, cpath = taken
                cnode.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
                opens = _allowed(mask, _structural_ids(cdepth)).size > 0
                scored.append((not (opens or done(cnode, cpath)), rank, taken))
            scored.sort(key=lambda item: item[:2])
            children = [item[2] for item in scored[:4]]
        stack.extend(reversed(children))
    return None, SPACE


def _greedy(matcher, depth: JsonDepth, max_len: int, meter: _Meter) -> tuple[list[int] | None, str]:
    """One path: structural tokens best first, else the longest allowed token, repeated as a run while the
    structure cannot move (_content_run). (plan, '') or (None, why): ROOM (the path does not end within max_len),
    LIMIT (llguidance refuses the path: a value longer than it can lex), MASKS or TIME (the budget ran out)."""
    mask = np.empty(BITMASK_WORDS, dtype=np.int32)
    taken = _take_forced(matcher.deep_copy(), depth.copy(), [])
    while taken is not None:
        node, ndepth, path = taken
        if node.is_error():
            return None, LIMIT
        if done(node, path):
            return (path, "") if len(path) <= max_len else (None, ROOM)
        if len(path) >= max_len:
            return None, ROOM
        if not meter.spend():
            return None, meter.why()
        node.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        structural = _allowed(mask, _structural_ids(ndepth)).tolist()
        if structural:
            t = _ranked(ndepth, structural)[0][1]
            if not node.consume_token(t):
                return None, LIMIT
            taken = _take_forced(node, _feed(ndepth, t), path + [t])
            continue
        t = _longest_allowed(mask)
        if t is None:
            return None, LIMIT
        run = _content_run(node, ndepth, t, max_len - len(path), meter, mask)
        if run is None:
            return None, LIMIT if meter.has_left() else meter.why()
        node, count = run
        taken = _take_forced(node, ndepth if _neutral(t) else _feed(ndepth, t), path + [t] * count)
    return None, LIMIT


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

    Without a plan, ``exhausted`` is False (no completion that fits was found: the caller may give up) when
    llguidance itself refused the greedy path (a value longer than it can lex), or when the greedy path did not end
    within ``max_len`` and the depth-first search tried every branch or spent its share of masks (not of seconds:
    a slow machine never turns into a verdict)."""
    t0 = time.perf_counter()
    meter = _Meter(budget.max_masks, budget.max_seconds)
    why: dict[str, str] = {}
    for i, search in enumerate(order):
        if search == "greedy":
            plan, why[search] = _greedy(matcher, depth, max_len, meter)
        else:   # first of two: half the budget, so the greedy path always gets its turn
            share = meter if i == len(order) - 1 else _Meter(meter.left // 2, (meter.deadline - t0) / 2)
            plan, why[search] = _depth_first(matcher, depth, max_len, share)
            if share is not meter:
                meter.left -= share.used
                meter.used += share.used
        if plan is not None:
            return PlanResult(plan, meter.used, time.perf_counter() - t0, searcher=search)
        if why.get("greedy") == LIMIT:
            break
    verdict = why.get("greedy") == LIMIT or (why.get("greedy") == ROOM and why.get("depth-first") in (MASKS, SPACE))
    return PlanResult(None, meter.used, time.perf_counter() - t0, exhausted=not verdict)
