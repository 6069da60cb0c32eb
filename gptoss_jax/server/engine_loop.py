"""The engine on its own thread. HTTP handlers submit engine requests and read their tokens from asyncio queues;
the thread admits new requests and cancellations between engine steps, so no request waits on another's I/O and a
slow client never slows the batch.

Multi-process jobs: process 0 holds the HTTP front end and this loop; every other process runs `follow()`. Each
round process 0 tells the others what enters the engine before anyone steps: a control word [new requests,
cancellations, stop] goes out by a small device broadcast (no host state grows with the rounds), and only when there
is something new, the specs and ids as JSON (distributed.broadcast_json). Every process builds the same Requests
(specs.build), applies the same cancellations and runs the same engine.step(), so the device steps line up.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from gptoss_jax.engine import Engine, Request, RequestError, Result, TokenEvent
from gptoss_jax.engine.requests import validate
from gptoss_jax.server.errors import ApiError

log = logging.getLogger(__name__)
IDLE_S = 1.0  # an idle loop still runs a round this often (multi-process: the followers' keep-alive)


@dataclasses.dataclass
class Ticket:
    """One engine request as the HTTP side sees it. The queue (shared by the requests of one HTTP call) receives
    (rid, list of TokenEvents) items, then (rid, Result)."""
    rid: str
    prompt_tokens: int
    queue: asyncio.Queue
    aloop: asyncio.AbstractEventLoop
    t_submit: float = dataclasses.field(default_factory=time.perf_counter)
    t_last: float = 0.0

    def put(self, item) -> None:
        try:
            self.aloop.call_soon_threadsafe(self.queue.put_nowait, (self.rid, item))
        except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
            pass


class EngineLoop:
    """engine: the Engine (driven only by this loop's thread); build: spec -> Request (specs.build);
    max_queue: requests waiting for a slot beyond which submissions get 429; metrics: a metrics.Metrics or None;
    multiprocess: broadcast each round to the other processes (they run `follow`)."""

    def __init__(self, engine: Engine, build: Callable[[dict], Request], *, max_queue: int, metrics=None,
                 multiprocess: bool = False):
        self.engine, self.build, self.max_queue, self.metrics = engine, build, max_queue, metrics
        self.multiprocess = multiprocess
        self._cond = threading.Condition()
        self._adds: collections.deque[tuple[dict, Request, Ticket]] = collections.deque()
        self._cancels: list[str] = []
        self._tickets: dict[str, Ticket] = {}
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # ------------------------------------------------------------------------------------------ HTTP side
    def prepare(self, spec: dict) -> Request:
        """Build and validate a spec's Request now (on the caller's thread), so bad input is a 400 before queueing.
        Raises RequestError / ChatInputError / ConstraintError."""
        req = self.build(spec)
        return validate(req, self.engine.limits)[0]

    def submit(self, items: list[tuple[dict, Request]], aloop: asyncio.AbstractEventLoop) -> list[Ticket]:
        """Queue prepared requests (all or none); raises ApiError 429 when the queue is full, 503 when stopping."""
        with self._cond:
            if self._stopping or self._closed or self.error is not None:
                raise ApiError(503, "the server is shutting down" if self.error is None else
                               f"the engine failed: {self.error}")
            if self.queue_depth() + len(items) > self.max_queue:
                raise ApiError(429, f"the request queue is full ({self.max_queue} waiting requests, --max_queue); "
                                    f"retry later", headers={"retry-after": "1"})
            tickets, queue = [], asyncio.Queue()
            for spec, req in items:
                t = Ticket(req.id, len(req.prompt), queue, aloop)
                self._tickets[req.id] = t
                self._adds.append((spec, req, t))
                tickets.append(t)
            self._cond.notify()
        return tickets

    def cancel(self, rid: str) -> None:
        """Stop a request (its client went away); safe from any thread, a no-op once it finished."""
        with self._cond:
            if rid in self._tickets:
                self._cancels.append(rid)
                self._cond.notify()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def queue_depth(self) -> int:
        return len(self._adds) + len(self.engine.waiting)

    def busy_slots(self) -> int:
        return sum(s is not None for s in self.engine.slots)

    # ---------------------------------------------------------------------------------------- the thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gptoss-engine", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Stop taking requests, let those in flight finish for up to grace_s, cancel the rest, end the thread
        (and, multi-process, the followers)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        deadline = time.monotonic() + grace_s
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            with self._cond:
                if not self._tickets:
                    break
            time.sleep(0.05)
        with self._cond:
            self._cancels.extend(self._tickets)
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _take_inbox(self) -> tuple[list, list[str], bool]:
        with self._cond:
            if not (self._adds or self._cancels or self._closed or self.engine.has_work()):
                self._cond.wait(IDLE_S)
            adds, self._adds = list(self._adds), collections.deque()
            cancels, self._cancels = self._cancels, []
            return adds, cancels, self._closed

    def _run(self) -> None:
        try:
            while True:
                adds, cancels, closed = self._take_inbox()
                # a request cancelled before it entered the engine never enters it
                never = {req.id for _, req, _ in adds} & set(cancels)
                for _, req, t in [a for a in adds if a[1].id in never]:
                    self._deliver_result(t, Result(req.id, len(req.prompt), 0, [], "cancelled"))
                adds = [a for a in adds if a[1].id not in never]
                cancels = [c for c in cancels if c not in never]
                if self.multiprocess:
                    broadcast_round([spec for spec, _, _ in adds], cancels, closed)
                self._apply([(req, t) for _, req, t in adds], cancels)
                if closed and not self.engine.has_work():
                    return
                if self.engine.has_work():
                    self._deliver(self.engine.step())
                self._update_gauges()
        except BaseException as e:  # noqa: BLE001 - the engine thread died: every waiting client hears it
            log.exception("engine loop failed")
            self.error = e
            with self._cond:
                tickets, self._tickets = list(self._tickets.values()), {}
            for t in tickets:
                t.put(Result(t.rid, t.prompt_tokens, 0, [], "error", error=f"engine failed: {e}"))

    def _apply(self, adds: list[tuple[Request, Ticket]], cancels: list[str]) -> None:
        for req, t in adds:
            try:
                self.engine.submit(req)
            except RequestError as e:  # validated already; a duplicate id would land here
                self._deliver_result(t, Result(req.id, len(req.prompt), 0, [], "error", error=str(e)))
        for rid in cancels:
            self.engine.cancel(rid)

    def _deliver(self, events: list[TokenEvent]) -> None:
        now = time.perf_counter()
        by_id: dict[str, list[TokenEvent]] = {}
        for ev in events:
            by_id.setdefault(ev.request_id, []).append(ev)
        for rid, evs in by_id.items():
            t = self._tickets.get(rid)
            res = self.engine.result(rid) if evs[-1].finish_reason is not None else None
            if t is None:
                continue
            toks = [e for e in evs if e.token_id >= 0]
            if toks and self.metrics is not None:
                self.metrics.tokens(t, len(toks), now)
            if toks:
                t.t_last = now
            t.put(evs)
            if res is not None:
                self._deliver_result(t, res)

    def _deliver_result(self, t: Ticket, res: Result) -> None:
        with self._cond:
            self._tickets.pop(t.rid, None)
        if self.metrics is not None:
            self.metrics.finished(res)
        t.put(res)

    def _update_gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.gauges(self.queue_depth(), self.busy_slots())


# ------------------------------------------------------------------------------------------ multi-process
def broadcast_round(specs: list[dict], cancels: list[str], closed: bool) -> tuple[list[dict], list[str], bool]:
    """Process 0 sends this round's changes, the others receive them (collective: every process calls it once a
    round, in the same order)."""
    from jax.experimental import multihost_utils

    from gptoss_jax import distributed

    word = np.array([len(specs), len(cancels), int(closed)], np.int32)
    word = np.asarray(multihost_utils.broadcast_one_to_all(word))
    if word[0] or word[1]:
        specs, cancels = distributed.broadcast_json([specs, cancels] if distributed.is_main() else None,
                                                    what="serve_round", timeout_s=None)
    else:
        specs, cancels = [], []
    return specs, cancels, bool(word[2])


def follow(engine: Engine, build: Callable[[dict], Request]) -> None:
    """The engine loop of a process other than 0: the same submissions, cancellations and steps as process 0's
    loop, nothing delivered; returns when process 0 stops."""
    while True:
        specs, cancels, closed = broadcast_round([], [], False)
        for spec in specs:
            try:
                engine.submit(build(spec))
            except Exception as e:  # noqa: BLE001 - process 0 validated it; a difference here is a bug to see
                log.error("request %s could not be rebuilt on this process: %s", spec.get("id"), e)
                raise
        for rid in cancels:
            engine.cancel(rid)
        if closed and not engine.has_work():
            return
        if engine.has_work():
            for ev in engine.step():
                if ev.finish_reason is not None:
                    engine.result(ev.request_id)
