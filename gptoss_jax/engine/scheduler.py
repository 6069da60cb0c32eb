"""Engine: continuous batching over a fixed number of slots, on top of GptOss and its KVCache.

    engine = Engine(model, num_slots=8, max_len=8192)
    results = engine.generate([Request([1, 2, 3], SamplingParams(temperature=0, max_tokens=16)), ...])
    for ev in engine.stream(Request(ids)): print(ev.token_id)          # streaming, one request
    rid = engine.submit(req, on_token=callback); engine.step() ...      # streaming, many (a server's loop)

Every `step()` admits waiting requests into free slots (admission.py), dispatches one prefill call (one chunk for
up to buckets.rows_for(T) prefilling slots) and one decode call (up to decode_steps tokens for every decoding slot)
(rounds.py), and hands out the tokens of the rounds it reads (host_tokens.py). Requests join and leave between
calls; nothing recompiles, because every shape is a bucket (buckets.py).

Round trips: a round's results come back in ONE device-to-host transfer, and the rounds are double buffered: step
k dispatches rounds k and then reads rounds k-1, so the device computes while the host streams, detokenizes and
checks stops (a request the host stops, by a stop string or a cancellation, may have decoded one round more on the
device, which is dropped). A constrained request needs the host between its tokens (its next mask depends on the
last one), so a round that samples one of its tokens is read in the step that dispatched it; a decode round gives
it one token (its mask in the same dispatch as the others' tokens) and the others as many as keeps their slowdown
within constrained_slowdown (round_clock.py, from measured rounds). A late mask holds back its own request, never
the others (masks.py): the engine waits at most mask_wait_s, once, for a slow one, and while every constrained
request waits for a slow mask the others decode decode_steps tokens a call, double buffered, as if it were not
there.

Failures stay with their request: bad input is refused at submit (RequestError naming the field); a constraint,
detokenizer or callback that raises finishes its own request with finish_reason "error"; only a failing device call
fails the requests it carried (and, if the donated cache was lost, every request in flight).
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from gptoss_jax.api import GptOss
from gptoss_jax.engine import requests as rq
from gptoss_jax.engine.admission import NO_LIMIT, Admission  # noqa: F401 (NO_LIMIT: part of this module's API)
from gptoss_jax.engine.buckets import Buckets
from gptoss_jax.engine.host_tokens import TokenHandling
from gptoss_jax.engine.live import EngineStats, Live
from gptoss_jax.engine.masks import MaskPool, fit
from gptoss_jax.engine.prefix_cache import PrefixCache, PrefixCacheConfig
from gptoss_jax.engine.requests import Request, RequestError, Result, TokenEvent
from gptoss_jax.engine.round_clock import RoundClock
from gptoss_jax.engine.rounds import Round, Rounds
from gptoss_jax.engine.slots import SlotState
from gptoss_jax.engine.steps import steps_for
from gptoss_jax.model.transformer import KVCache
from gptoss_jax.progress import RequestProgress


def _carries_constrained(rounds: list[Round]) -> bool:
    """Whether a round samples a token of a constrained request (whose next mask needs it read): one that sat
    the round out for a late mask does not hold back the double buffering of the others."""
    return any(s.constrained and not s.done for r in rounds for s in r.requests()
               if r.kind == "decode" or s.decoding)


class Engine(Admission, Rounds, TokenHandling):
    """Continuous batching on one GptOss model. Not thread-safe except `submit` and `cancel`: one thread drives
    `step()` (directly, or through `generate` / `stream`).

    num_slots: requests decoded together (a multiple of the mesh's data parallelism).
    max_len: context of every slot (prompt + output), at most the model's 131072; the KV cache holds
      num_slots * max_len tokens (KVCache.bytes_per_token each) plus 128-token rings for the sliding layers.
    prefill_chunk / min_prefill_chunk: the chunk buckets (buckets.py).
    decode_steps: tokens per slot a decode call produces before returning to the host.
    max_top_logprobs: the most top_logprobs a request may ask for (a step computes only as many as its requests
      ask, bucketed).
    max_stop_token_ids: stop token ids a request may give (static).
    detokenize: ids -> str, needed for stop strings and Result.text.
    seed: draws the seeds of requests that give none.
    mask_threads / mask_wait_s: threads computing constraint masks; the longest the engine waits for a late mask
      (a request whose mask is later, or whose last mask was slower, sits the round out); with several processes
      every mask is waited for (they must take the same decisions).
    prefix_cache: reuse the KV entries of prompt heads computed before (prefix_cache.py); None: off.
    constrained_slowdown: the most a decoding constrained request may slow its unconstrained neighbours' tokens
      (round_clock.py: rounds while one decodes get the fewest steps that keep to it, measured; the constrained
      request takes one token a round); None: one-step rounds (fastest for the constrained request).
    """

    def __init__(self, model: GptOss, *, num_slots: int = 8, max_len: int = 8192, prefill_chunk: int = 512,
                 min_prefill_chunk: int = 32, decode_steps: int = 8, max_top_logprobs: int = 20,
                 max_stop_token_ids: int = 8, detokenize: rq.Detokenizer | None = None, seed: int = 0,
                 mask_threads: int = 4, mask_wait_s: float = 0.02, prefix_cache: PrefixCacheConfig | None = None,
                 constrained_slowdown: float | None = 1.25):
        cfg = model.cfg
        if not 1 <= max_len <= cfg.max_context:
            raise ValueError(f"max_len {max_len} must be in [1, {cfg.max_context}] (the model's context)")
        dp = model.data_parallel
        if num_slots < 1 or num_slots % dp:
            raise ValueError(f"num_slots {num_slots} must be a positive multiple of the data parallelism {dp}")
        if decode_steps < 1:
            raise ValueError(f"decode_steps must be >= 1, got {decode_steps}")
        self.model, self.cfg = model, cfg
        self.num_slots, self.max_len, self.decode_steps = num_slots, max_len, decode_steps
        chunk = min(prefill_chunk, max_len)
        self.buckets = Buckets(max_len=max_len, chunk=chunk, min_chunk=min(min_prefill_chunk, chunk),
                               num_slots=num_slots, data_parallel=dp)
        self.limits = rq.Limits(cfg.vocab_size, max_len, max_top_logprobs, max_stop_token_ids, detokenize is not None,
                                default_max_tokens=rq.default_max_tokens(cfg))
        self.detokenize = detokenize
        self.mask_words = -(-cfg.vocab_size // 32)
        self.steps = steps_for(model, max_len)
        # everything the steps take lives committed where the weights are, so the first call compiles the same
        # program as every later one (whose inputs are earlier outputs)
        if model.mesh is None:
            self._state_sharding = SingleDeviceSharding(next(iter(jax.tree.leaves(model.params)[0].devices())))
        else:
            self._state_sharding = NamedSharding(model.mesh, P())
        self.cache, self.state = self._allocate()
        self.prefix = None if prefix_cache is None else PrefixCache(
            prefix_cache, self.cache, num_slots, chunk, cfg.vocab_size, model.mesh, self.buckets.kv_for)
        self.slots: list[Live | None] = [None] * num_slots
        self.waiting: collections.deque[Live] = collections.deque()
        self.results: dict[str, Result] = {}
        self.stats = EngineStats()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self.masks = MaskPool(self.mask_words, threads=mask_threads,   # processes in lockstep: no timing decisions
                              wait_s=mask_wait_s if jax.process_count() == 1 else None)
        self._events: list[TokenEvent] = []
        self._all_ones = np.full((1, self.mask_words), -1, np.int32)
        self._pending: list[Round] = []    # rounds dispatched by the last step, read by the next
        self._wait_s = 0.0
        # constrained rounds' length (round_clock.py); processes in lockstep take no timing decisions
        self.clock = RoundClock(decode_steps, constrained_slowdown if jax.process_count() == 1 else None)
        self._last_decode: Round | None = None
        self._prefill_since_decode = False

    # ================================================================================================ public API
    def submit(self, request: Request, on_token: Callable[[TokenEvent], None] | None = None) -> str:
        """Queue a request; returns its id. Raises RequestError (naming the field) for input it cannot take.

        A constraint that offers capped(n) gets the request's real limit, at most what fits in this engine's
        context (so it closes its value in time, whoever built it); a value that cannot fit is refused here."""
        req, prompt, bias = rq.validate(request, self.limits)
        room = self.max_len - len(prompt)
        req = dataclasses.replace(req, constraint=fit(req.constraint, min(req.sampling.max_tokens or room, room)))
        with self._lock:
            seed = req.sampling.seed if req.sampling.seed is not None else int(self._rng.integers(0, 2 ** 31))
            if req.id in self.results or any(x.id == req.id for x in self._in_flight()):
                raise RequestError("id", f"request id {req.id!r} is already in use")
            self.waiting.append(Live(req, prompt, bias, seed, on_token, time.perf_counter()))
        return req.id

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self._cancelled.add(request_id)

    def has_work(self) -> bool:
        return bool(self.waiting) or any(s is not None for s in self.slots) or any(
            not s.done for r in self._pending for s in r.requests())

    def result(self, request_id: str) -> Result | None:
        """The finished request's Result (removed from the engine), or None while it runs."""
        return self.results.pop(request_id, None)

    def step(self) -> list[TokenEvent]:
        """One scheduling round: admit, dispatch a prefill and a decode call, read the rounds due (the previous
        step's while no constrained request decodes, else these). Returns the new TokenEvents."""
        self._events, self._wait_s = [], 0.0
        t0 = time.perf_counter()
        self._apply_cancellations()
        if _carries_constrained(self._pending):   # their next masks need the tokens in flight
            self._read(self._pending)
            self._pending = []
        self._admit_waiting()
        prefill = self._dispatch_prefill()
        decode = self._dispatch_decode()
        if decode is None:               # a step without a decode round: no cycle for the round clock to time
            self._last_decode = None
        new = [r for r in (prefill, decode) if r is not None]
        new = [r for r in new if not all(s.done for s in r.requests())]   # a device failure ended them
        due, self._pending = self._pending, new
        self._read(due)                  # the device runs the new rounds meanwhile
        if not new or _carries_constrained(new):
            self._read(self._pending, serial=True)
            self._pending = []
        if not new and not due:         # nothing could run: every request waits for its mask; wait, not spin
            self.masks.wait_any(s for s in self.slots if s is not None)
        self.stats.host_s += time.perf_counter() - t0 - self._wait_s
        return self._events

    def _read(self, rounds: list[Round], serial: bool = False) -> None:
        for rnd in rounds:
            if rnd.kind == "prefill":
                self._read_prefill(rnd)
            else:
                self._read_decode(rnd, serial)

    def stream(self, request: Request) -> Iterator[TokenEvent]:
        """Submit one request and yield its TokenEvents as they come (other requests keep running too); the last
        event carries the finish reason, and engine.result(event.request_id) the Result. Closing the iterator early
        cancels the request."""
        rid = self.submit(request)
        done = False
        try:
            while not done:
                for ev in self.step():
                    if ev.request_id == rid:
                        done = ev.finish_reason is not None
                        yield ev
                        if done:
                            break
        finally:
            if not done:                  # the consumer stopped early: the request stops too
                self.cancel(rid)

    def generate(self, requests: Sequence[Request], *, progress: bool = False) -> list[Result]:
        """Run a batch to completion; results in the order given. A request that fails validation comes back as a
        Result with finish_reason "error" (and the others run)."""
        ids: list[str | Result] = []
        for r in requests:
            try:
                ids.append(self.submit(r))
            except RequestError as e:
                rid = getattr(r, "id", None) or rq.next_request_id()
                n = len(r.prompt) if isinstance(r, Request) and hasattr(r.prompt, "__len__") else 0
                ids.append(Result(rid, n, 0, [], "error", error=str(e)))
        bar = RequestProgress(requests, enabled=progress)
        bar.step([], [i for i in ids if isinstance(i, Result)])     # refused at submit: done already
        pending = {i for i in ids if isinstance(i, str)}
        while pending:
            events = self.step()
            finished = [i for i in pending if i in self.results]
            pending.difference_update(finished)
            bar.step(events, [self.results[rid] for rid in finished])
        bar.close()
        return [i if isinstance(i, Result) else self.results.pop(i) for i in ids]

    def compilations(self) -> dict[str, int]:
        return self.steps.compilations()

    def close(self) -> None:
        self.masks.close()

    def _allocate(self) -> tuple[KVCache, SlotState]:
        device = self._state_sharding if self.model.mesh is None else None
        return self.steps.allocate(self.num_slots, self.max_len, self.limits.max_stop_token_ids, device)

    def _device_failure(self, involved: Sequence[Live], exc: Exception) -> None:
        """A device call failed: its requests fail; if the donated cache or state was consumed, both are rebuilt
        and every request that had state on the device fails too (its cache is gone)."""
        msg = f"device step failed: {type(exc).__name__}: {exc}"
        for s in involved:
            self._finish(s, "error", error=msg)
        lost = any(a.is_deleted() for a in jax.tree.leaves((self.cache, self.state)))
        if lost:
            for s in [x for x in self.slots if x is not None]:
                self._finish(s, "error", error=msg + " (the KV cache was lost with it)")
            self._pending = []             # their requests failed with the cache
            self.cache, self.state = self._allocate()
            if self.prefix is not None:
                self.prefix.clear()
