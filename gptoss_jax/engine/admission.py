"""Admission: cancellations, waiting requests into free slots (through the prefix cache when the engine has one),
and the constraint masks (computed off the engine thread by masks.MaskPool) taken when a round needs them. A mixin
of the Engine."""
from __future__ import annotations

import time
from typing import Iterable

import numpy as np

from gptoss_jax.engine import requests as rq
from gptoss_jax.engine.live import Live

NO_LIMIT = 2 ** 30


class Admission:
    """Engine methods that move requests in and out of slots (self: the Engine)."""

    def _in_flight(self) -> Iterable[Live]:
        yield from self.waiting
        yield from (s for s in self.slots if s is not None)

    def _apply_cancellations(self) -> None:
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
            if not cancelled:
                return
            for live in [w for w in self.waiting if w.id in cancelled]:
                self.waiting.remove(live)
                self._finish(live, "cancelled")
        for live in [s for s in self.slots if s is not None and s.id in cancelled]:
            self._finish(live, "cancelled")

    def _admit_waiting(self) -> None:
        while True:
            free = [i for i, s in enumerate(self.slots) if s is None]
            with self._lock:
                if not free or not self.waiting:
                    return
                live = self.waiting.popleft()
            hit = None
            if self.prefix is None:
                slot = free[0]
            else:
                slot, hit = self.prefix.place(live.prompt, free, reuse=live.req.score_from is None)
            sp = live.req.sampling
            stop_ids = np.full((self.limits.max_stop_token_ids,), -1, np.int32)
            stop_ids[:len(sp.stop_token_ids)] = sp.stop_token_ids
            values = dict(temperature=np.float32(sp.temperature), top_p=np.float32(sp.top_p),
                          top_k=np.int32(sp.top_k), min_p=np.float32(sp.min_p),
                          presence=np.float32(sp.presence_penalty), frequency=np.float32(sp.frequency_penalty),
                          repetition=np.float32(sp.repetition_penalty), key=rq.seed_key_data(live.seed),
                          stop_ids=stop_ids,
                          max_new=np.int32(NO_LIMIT if sp.max_tokens is None else sp.max_tokens))
            bias_row = None
            if live.bias:
                bias_row = np.zeros((self.cfg.vocab_size,), np.float32)
                bias_row[list(live.bias)] = list(live.bias.values())
            try:
                self.state = self.steps.admit(self.state, np.int32(slot), values, bias_row)
                if hit is not None:
                    self.cache, self.state = self.prefix.restore(self.cache, self.state, slot, hit, live.prompt)
                    live.prefilled = live.cached = hit.length
            except Exception as e:  # noqa: BLE001 - a device failure: this request fails, the engine goes on
                self._device_failure([live], e)
                continue
            live.slot, live.t_admit = slot, time.perf_counter()
            self.slots[slot] = live
            if self.prefix is not None:
                self.prefix.admitted(slot, live.prompt, hit)
            if live.req.constraint is not None:
                live.mask = self.masks.start(live.req.constraint)

    # ------------------------------------------------------------------------------------------------ masks
    def _take_mask(self, s: Live, deadline: float) -> np.ndarray | None:
        """s's mask for its next token if it is ready by `deadline` (perf_counter seconds; waited for only when
        expected soon: masks.py), consumed (the next one starts when that token is read); None if there is none,
        it is late (the request sits this round out) or the constraint raised (which finishes its request)."""
        if s.mask is None:
            return None
        try:
            words = self.masks.take(s, deadline)
        except Exception as e:  # noqa: BLE001 - the constraint's own failure
            self._finish(s, "error", error=f"constraint failed: {type(e).__name__}: {e}")
            return None
        if words is not None:
            s.mask = None
        return words
