"""Token masks of constrained requests, computed on a thread pool off the engine's critical path.

A request's next mask starts as soon as its last token is known (at admission, or when a token is sampled) and
runs while the device computes. When the engine needs masks it takes those that are ready; a late mask holds back
its own request only, never the batch:
- the engine waits for a mask at most until `wait_s` after it dispatched the device step (the wait overlaps the
  device's work), and only for a request whose previous mask took less than `wait_s`;
- a request whose mask is late (or whose last mask was slow: a closing plan near the end of its budget, a
  pathological grammar) sits the round out and stays active; it samples in the first round its mask is ready.
So a slow constraint delays the others' decoding by at most one `wait_s`, once, however long it computes.
"""
from __future__ import annotations

import concurrent.futures
import time
from typing import Iterable

import numpy as np

from gptoss_jax.engine.requests import RequestError


def fit(constraint, limit: int):
    """The constraint fitted to a request's token limit: constraint.capped(limit) where it offers that (it then
    closes its value in time), else the constraint itself. Raises RequestError with the constraint's refusal."""
    if not callable(getattr(constraint, "capped", None)):
        return constraint
    try:
        return constraint.capped(limit)
    except Exception as e:  # noqa: BLE001 - the constraint's own refusal names the problem
        raise RequestError("constraint", f"{type(e).__name__}: {e}") from None


class MaskPool:
    """threads: masks computed at once (llguidance releases the GIL while it computes one)."""

    def __init__(self, words: int, *, threads: int, wait_s: float):
        if threads < 1 or wait_s < 0:
            raise ValueError(f"mask threads must be >= 1 and the mask wait >= 0, got {threads} and {wait_s}")
        self.words, self.wait_s = words, wait_s
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="gptoss-mask")

    def start(self, constraint) -> concurrent.futures.Future:
        """Compute constraint's next mask in the background; the future holds (row [words] int32, seconds)."""
        return self._pool.submit(self._fill, constraint)

    def _fill(self, constraint) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = np.zeros((self.words,), np.int32)
        constraint.fill_bitmask(out)
        return out, time.perf_counter() - t0

    @staticmethod
    def usable(live) -> bool:
        """Whether live can take part in this round: unconstrained, its mask ready, or its mask expected soon."""
        return live.mask is None or live.mask.done() or not live.mask_slow

    def take(self, live, deadline: float) -> np.ndarray | None:
        """live's mask if it is ready by `deadline` (perf_counter time; waited for only when expected soon), else
        None: late, the request sits this round out. Raises what the constraint raised."""
        fut = live.mask
        if not fut.done():
            if live.mask_slow:
                return None
            concurrent.futures.wait([fut], timeout=max(0.0, deadline - time.perf_counter()))
            if not fut.done():
                live.mask_slow = True
                return None
        row, seconds = fut.result()
        live.mask_slow = seconds > self.wait_s
        return row

    @staticmethod
    def wait_any(lives: Iterable, timeout: float = 0.05) -> None:
        """Block until one of the pending masks of `lives` is done (or `timeout`): a round with nothing else to
        run waits here instead of spinning."""
        pending = [s.mask for s in lives if s.mask is not None and not s.mask.done()]
        if pending:
            concurrent.futures.wait(pending, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
