"""Device rounds: what one prefill call and one decode call carry, their dispatch, and the one read of each.

A round's results come back as one int32 array (steps.py packs them), so reading a round is one device-to-host
transfer. The Engine (scheduler.py) decides when rounds are read: while no decoding request is constrained, the
next rounds are dispatched before the host reads the previous ones (double buffering: the device runs round N+1
while the host streams round N). A constrained request needs the host between its tokens (its next mask depends
on the last token), so a decode round takes it for one token, in the same single dispatch as everyone else's
tokens (the mask rides along as `words`), and the others as many as the round clock allows (round_clock.py);
constrained requests whose masks are not ready in time sit the round out while the others decode `decode_steps`
tokens. The round length is an argument of the one compiled decode program, not a shape. A mixin of the Engine.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from gptoss_jax.engine.live import Live, Packed
from gptoss_jax.engine.sampling import SamplerPlan, top_bucket


@dataclasses.dataclass
class Round:
    """A dispatched call whose results the host has not read yet."""
    kind: str                  # "prefill" or "decode"
    lives: list                # decode: the requests in it; prefill: (row, request, start, tokens, ends prompt)
    out: jax.Array             # the packed results
    k: int                     # top logprobs a row
    n_steps: int = 0           # decode: tokens a row at most
    score_len: int = 0         # prefill: chunk length when scoring, else 0
    t0: float = 0.0
    # decode rounds, for the round clock: dispatched right after a prefill; time to the next decode dispatch (None:
    # not known yet, or a prefill came between); whether it ran all its steps (None: not read yet); read serially
    after_prefill: bool = False
    cycle: float | None = None
    ran_all: bool | None = None
    serial: bool = False

    def requests(self) -> list[Live]:
        return self.lives if self.kind == "decode" else [s for _, s, _, _, _ in self.lives]


def _group_chunks(todo: list, bucket, rows_for) -> tuple[int, list]:
    """One prefill call's chunks: the first waiting one, then each next one (in order) whose bucket, or the call's
    if larger, still leaves it a row (a shorter chunk rides padded in a longer one's call instead of waiting for a
    call of its own). Returns (the call's chunk bucket, the group)."""
    t, group = bucket(todo[0]), [todo[0]]
    for s in todo[1:]:
        u = max(t, bucket(s))
        if len(group) < rows_for(u):
            t, group = u, group + [s]
    return t, group


class Rounds:
    """Engine methods that dispatch and read device rounds (self: the Engine)."""

    def _plan(self, lives) -> SamplerPlan:
        """What the sampler of a step over these requests computes: penalties, bias and logprobs if one uses them,
        as many top logprobs as the most any asks (bucketed)."""
        sps = [s.req.sampling for s in lives]
        asked = max((sp.top_logprobs for sp in sps), default=0)
        return SamplerPlan(penalties=any(sp.penalizes for sp in sps), bias=any(bool(sp.logit_bias) for sp in sps),
                           logprobs=any(sp.logprobs for sp in sps),
                           num_top=top_bucket(asked, self.limits.max_top_logprobs))

    def _decoders(self) -> list[Live]:
        return [s for s in self.slots if s is not None and s.decoding and not s.done]

    def _exhausted(self, s: Live) -> bool:
        """Whether the rounds in flight already take s to its max_tokens or to the end of the context (the device
        stops it there; another round would carry it for nothing)."""
        mt = s.req.sampling.max_tokens
        return (mt is not None and len(s.tokens) + s.ahead >= mt) or s.length + s.ahead >= self.max_len

    def _decode_kv(self, decoders, steps: int) -> int:
        need = max(s.length + s.ahead for s in decoders) + steps     # rounds in flight may have added tokens
        return self.buckets.kv_for(min(need, self.max_len))

    def _keep(self, decoders) -> np.ndarray:
        keep = np.zeros((self.num_slots,), bool)
        for s in decoders:
            keep[s.slot] = True
        return keep

    def _fetch(self, rnd: Round) -> Packed | None:
        """The round's results in one transfer (the wait for the device counted apart from host time)."""
        t = time.perf_counter()
        try:
            arr = np.asarray(jax.device_get(rnd.out))
        except Exception as e:  # noqa: BLE001
            self._device_failure(rnd.requests(), e)
            return None
        finally:
            self._wait_s += time.perf_counter() - t
        self.stats.transfers += 1
        return Packed(arr, rnd.k)

    # ================================================================================================== prefill
    def _dispatch_prefill(self) -> Round | None:
        todo = [s for s in self.slots if s is not None and not s.decoding and not s.done]
        b = self.buckets
        limit = (lambda s: b.chunk) if self.prefix is None else (
            lambda s: min(b.chunk, self.prefix.chunk_limit(s.slot, s.prefilled)))
        chunk_len = lambda s: min(limit(s), len(s.prompt) - s.prefilled)
        first = self._first_masks(todo, chunk_len)
        todo = [s for s in todo if not s.done and (not s.constrained or chunk_len(s) < len(s.prompt) - s.prefilled
                                                   or s.id in first)]
        if not todo:
            return None
        todo.sort(key=lambda s: s.t_admit)
        t, group = _group_chunks(todo, lambda s: b.chunk_for(chunk_len(s)), b.rows_for)
        n_rows = b.rows_for(t)
        kv = max(b.kv_for(s.prefilled + chunk_len(s)) for s in group)
        score = any(s.req.score_from is not None for s in group)
        tokens = np.zeros((n_rows, t), np.int32)
        positions = np.full((n_rows, t), -1, np.int32)
        targets = np.full((n_rows, t), -1, np.int32)
        rows = np.full((n_rows,), self.num_slots, np.int32)
        last_idx = np.zeros((n_rows,), np.int32)
        final = np.zeros((n_rows,), bool)
        words = None
        plan = []
        for r, s in enumerate(group):
            n, start = chunk_len(s), s.prefilled
            tokens[r, :n] = s.prompt[start:start + n]
            positions[r, :n] = np.arange(start, start + n)
            rows[r], last_idx[r], final[r] = s.slot, n - 1, start + n == len(s.prompt)
            if s.req.score_from is not None:
                for i in range(n):
                    nxt = start + i + 1
                    if s.req.score_from <= nxt < len(s.prompt):
                        targets[r, i] = s.prompt[nxt]
            if final[r] and s.constrained:               # the first token's mask, consumed
                if words is None:
                    words = np.repeat(self._all_ones, n_rows, axis=0)
                words[r], s.mask = first[s.id], None
            plan.append((r, s, start, n, bool(final[r])))
        if not plan:
            return None
        t0 = time.perf_counter()
        lives = [s for _, s, _, _, _ in plan]
        sampler = self._plan(lives)
        try:
            self.cache, self.state, out = self.steps.prefill(
                self.model.params, self.cache, self.state, tokens, positions, rows, last_idx, final, words,
                targets, kv_len=kv, score=score, plan=sampler)
        except Exception as e:  # noqa: BLE001
            self._device_failure(lives, e)
            return None
        self._prefill_since_decode = True
        for _, s, _, n, fin in plan:
            s.prefilled += n
            if self.prefix is not None:
                self.prefix.prefilled(self.cache, s.slot, s.prompt, s.prefilled)
            if fin:
                s.decoding = True
        return Round("prefill", plan, out, sampler.num_top, score_len=t if score else 0, t0=t0)

    def _first_masks(self, todo, chunk_len) -> dict[str, np.ndarray]:
        """Masks of the first sampled token for the slots whose next chunk ends the prompt (masks.py: a late one
        leaves its slot out of this round's prefill; a failed one finishes its request). Not consumed here: only
        the rows that make it into the round consume theirs."""
        deadline, rows = self.masks.deadline(time.perf_counter()), {}
        for s in todo:
            if s.mask is not None and len(s.prompt) - s.prefilled == chunk_len(s):
                try:
                    row = self.masks.take(s, deadline)
                except Exception as e:  # noqa: BLE001 - the constraint's own failure
                    self._finish(s, "error", error=f"constraint failed: {type(e).__name__}: {e}")
                    continue
                if row is not None:
                    rows[s.id] = row
        return rows

    def _read_prefill(self, rnd: Round) -> None:
        out = self._fetch(rnd)
        if out is None:
            return
        self.stats.prefill_calls += 1
        self.stats.prefill_tokens += sum(n for _, _, _, n, _ in rnd.lives)
        self.stats.prefill_s += time.perf_counter() - rnd.t0
        if rnd.score_len:
            target_lp, target_top = out.scores(rnd.score_len)
        for r, s, start, n, fin in rnd.lives:
            if s.done:
                continue
            if rnd.score_len and s.req.score_from is not None:
                for i in range(n):                        # the logprob of prompt[start + i + 1]
                    if s.req.score_from <= start + i + 1 < len(s.prompt):
                        s.prompt_lp.append(float(target_lp[r, i]))
                        s.prompt_top.append(bool(target_top[r, i]))
            if not fin:
                continue
            if s.req.sampling.max_tokens == 0:
                self._finish(s, "length")
                continue
            self._take(s, out, r)

    # =================================================================================================== decode
    def _dispatch_decode(self) -> Round | None:
        """One decode call: every unconstrained decoding request for decode_steps tokens, or, when some
        constrained requests have their next masks, those for one token with their masks and the others for the
        round clock's length."""
        decoders = self._decoders()
        if not decoders:
            return None
        ready: dict[int, np.ndarray] = {}
        constrained = [s for s in decoders if s.constrained]
        if constrained:
            deadline = self.masks.deadline(time.perf_counter())
            for s in constrained:
                row = self._take_mask(s, deadline)
                if row is not None and not s.done:
                    ready[s.slot] = row
        lives = [s for s in decoders if not s.done and (not s.constrained or s.slot in ready)
                 and not self._exhausted(s)]
        if not lives:
            return None
        words = masked = None
        n = self.decode_steps
        if ready:                 # the constrained take one token; the others as many as the clock allows
            n = self.clock.constrained_steps()
            words = np.repeat(self._all_ones, self.num_slots, axis=0)
            masked = np.zeros((self.num_slots,), bool)
            for slot, row in ready.items():
                words[slot], masked[slot] = row, True
        sampler = self._plan(lives)
        t0 = time.perf_counter()
        try:
            self.cache, self.state, out, _ = self.steps.decode_loop(
                self.model.params, self.cache, self.state, self._keep(lives), words, masked, np.int32(n),
                kv_len=self._decode_kv(lives, n), n_steps=self.decode_steps, plan=sampler)
        except Exception as e:  # noqa: BLE001
            self._device_failure(lives, e)
            return None
        for s in lives:
            s.ahead += n
        rnd = Round("decode", lives, out, sampler.num_top, n_steps=n, t0=t0, after_prefill=self._prefill_since_decode)
        last, self._last_decode, self._prefill_since_decode = self._last_decode, rnd, False
        if last is not None and not rnd.after_prefill:
            last.cycle = t0 - last.t0
            self._clock_feed(last)
        return rnd

    def _clock_feed(self, rnd: Round) -> None:
        """Give the round clock a decode round's cycle (dispatch to the next decode dispatch) once it is known and
        the round was read: a serially read round that ran all its steps, or a full double-buffered one; rounds
        with a prefill on either side are not timed."""
        if rnd.cycle is None or rnd.ran_all is None or rnd.after_prefill or not rnd.ran_all:
            return
        if rnd.serial:
            self.clock.record(rnd.n_steps, rnd.cycle)
        elif rnd.n_steps == self.decode_steps:
            self.clock.record_free(rnd.cycle)
        rnd.cycle = None

    def _read_decode(self, rnd: Round, serial: bool = False) -> None:
        """serial: read in the step that dispatched it (the round clock times only those)."""
        out = self._fetch(rnd)
        for s in rnd.lives:
            s.ahead -= rnd.n_steps
        if out is None:
            return
        self.stats.decode_calls += 1
        self.stats.decode_s += time.perf_counter() - rnd.t0
        rnd.serial, rnd.ran_all = serial, bool((out.token[rnd.n_steps - 1, [s.slot for s in rnd.lives]] >= 0).any())
        self._clock_feed(rnd)
        for i in range(rnd.n_steps):
            for s in rnd.lives:
                if not s.done and out.token[i, s.slot] >= 0:
                    self.stats.decode_tokens += 1
                    self._take(s, out, (i, s.slot))
