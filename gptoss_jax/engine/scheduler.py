"""Engine: continuous batching over a fixed number of slots, on top of GptOss and its KVCache.

    engine = Engine(model, num_slots=8, max_len=8192)
    results = engine.generate([Request([1, 2, 3], SamplingParams(temperature=0, max_tokens=16)), ...])
    for ev in engine.stream(Request(ids)): print(ev.token_id)          # streaming, one request
    rid = engine.submit(req, on_token=callback); engine.step() ...      # streaming, many (a server's loop)

Every `step()` admits waiting requests into free slots, runs one prefill call (one chunk for up to
buckets.rows_for(T) prefilling slots) and one decode call (up to decode_steps tokens for every decoding slot), then
hands out the new tokens. Requests join and leave between calls; nothing recompiles, because every shape is a
bucket (buckets.py). Without constrained requests, the decode call is dispatched before the prefill's results are
read, so the host bookkeeping of one overlaps the device work of the other. With constrained requests, decoding
goes one token a round trip: decode_forward is dispatched, the constraints' next masks (computed on a thread pool
since their last token arrived) are joined, then decode_sample applies them.

Failures stay with their request: bad input is refused at submit (RequestError naming the field); a constraint,
detokenizer or callback that raises finishes its own request with finish_reason "error"; only a failing device call
fails the requests it carried (and, if the donated cache was lost, every request in flight).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from gptoss_jax.api import GptOss
from gptoss_jax.engine import requests as rq
from gptoss_jax.engine.buckets import Buckets
from gptoss_jax.engine.prefix_cache import PrefixCache, PrefixCacheConfig
from gptoss_jax.engine.requests import Request, RequestError, Result, TokenEvent
from gptoss_jax.engine.sampling import SamplerPlan, top_bucket
from gptoss_jax.engine.slots import SlotState
from gptoss_jax.engine.steps import steps_for
from gptoss_jax.model.transformer import KVCache
from gptoss_jax.progress import Progress

NO_LIMIT = 2 ** 30


@dataclasses.dataclass
class _Live:
    """Host record of a request from submit to finish."""
    req: Request
    prompt: list[int]
    bias: dict
    seed: int
    on_token: Callable[[TokenEvent], None] | None
    t_submit: float
    slot: int = -1
    prefilled: int = 0
    decoding: bool = False
    tokens: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)
    top: list = dataclasses.field(default_factory=list)
    prompt_lp: list = dataclasses.field(default_factory=list)
    prompt_top: list = dataclasses.field(default_factory=list)
    mask: concurrent.futures.Future | None = None     # the constraint's mask for the next token
    t_admit: float = 0.0
    t_first: float = 0.0
    done: bool = False
    cached: int = 0          # prompt tokens reused from the prefix cache

    @property
    def id(self) -> str:
        return self.req.id

    @property
    def length(self) -> int:
        """Tokens in this slot's cache once the last token is fed back: position of the last token."""
        return len(self.prompt) + max(len(self.tokens) - 1, 0)


@dataclasses.dataclass
class EngineStats:
    prefill_calls: int = 0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_calls: int = 0
    decode_tokens: int = 0
    decode_s: float = 0.0


class Engine:
    """Continuous batching on one GptOss model. Not thread-safe except `submit` and `cancel`: one thread drives
    `step()` (directly, or through `generate` / `stream`).

    num_slots: requests decoded together (a multiple of the mesh's data parallelism).
    max_len: context of every slot (prompt + output), at most the model's 131072; the KV cache holds
      num_slots * max_len tokens (KVCache.bytes_per_token each) plus 128-token rings for the sliding layers.
    prefill_chunk / min_prefill_chunk: the chunk buckets (buckets.py).
    decode_steps: tokens a decode call produces per slot before returning to the host.
    max_top_logprobs: the most top_logprobs a request may ask for (static: every step computes that many).
    max_stop_token_ids: stop token ids a request may give (static).
    detokenize: ids -> str, needed for stop strings and Result.text.
    seed: draws the seeds of requests that give none.
    prefix_cache: reuse the KV entries of prompt heads computed before (prefix_cache.py); None: off.
    """

    def __init__(self, model: GptOss, *, num_slots: int = 8, max_len: int = 8192, prefill_chunk: int = 512,
                 min_prefill_chunk: int = 32, decode_steps: int = 8, max_top_logprobs: int = 20,
                 max_stop_token_ids: int = 8, detokenize: rq.Detokenizer | None = None, seed: int = 0,
                 mask_threads: int = 4, prefix_cache: PrefixCacheConfig | None = None):
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
        self.limits = rq.Limits(cfg.vocab_size, max_len, max_top_logprobs, max_stop_token_ids, detokenize is not None)
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
        self.slots: list[_Live | None] = [None] * num_slots
        self.waiting: collections.deque[_Live] = collections.deque()
        self.results: dict[str, Result] = {}
        self.stats = EngineStats()
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._cancelled: set[str] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(mask_threads, thread_name_prefix="gptoss-mask")
        self._events: list[TokenEvent] = []
        self._all_ones = np.full((1, self.mask_words), -1, np.int32)

    # ================================================================================================ public API
    def submit(self, request: Request, on_token: Callable[[TokenEvent], None] | None = None) -> str:
        """Queue a request; returns its id. Raises RequestError (naming the field) for input it cannot take."""
        req, prompt, bias = rq.validate(request, self.limits)
        with self._lock:
            seed = req.sampling.seed if req.sampling.seed is not None else int(self._rng.integers(0, 2 ** 31))
            if req.id in self.results or any(x.id == req.id for x in self._in_flight()):
                raise RequestError("id", f"request id {req.id!r} is already in use")
            self.waiting.append(_Live(req, prompt, bias, seed, on_token, time.perf_counter()))
        return req.id

    def cancel(self, request_id: str) -> None:
        with self._lock:
            self._cancelled.add(request_id)

    def has_work(self) -> bool:
        return bool(self.waiting) or any(s is not None for s in self.slots)

    def result(self, request_id: str) -> Result | None:
        """The finished request's Result (removed from the engine), or None while it runs."""
        return self.results.pop(request_id, None)

    def step(self) -> list[TokenEvent]:
        """One scheduling round: admit, one prefill call, one decode call. Returns the new TokenEvents."""
        self._events = []
        self._apply_cancellations()
        self._admit_waiting()
        pending_prefill = self._dispatch_prefill()
        decoders = [s for s in self.slots if s is not None and s.decoding and not s.done]
        constrained = any(s.req.constraint is not None for s in decoders)
        if constrained:
            if pending_prefill:
                self._finish_prefill(*pending_prefill)
            self._decode_one_constrained()
        else:
            pending_decode = self._dispatch_decode(decoders) if decoders else None
            if pending_prefill:
                self._finish_prefill(*pending_prefill)
            if pending_decode:
                self._finish_decode(*pending_decode)
        return self._events

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
        bar = Progress(len(ids), "generate", unit=" requests", enabled=progress)
        t0, toks = time.perf_counter(), 0
        pending = {i for i in ids if isinstance(i, str)}
        while pending:
            self.step()
            for rid in [i for i in pending if i in self.results]:
                pending.discard(rid)
                toks += self.results[rid].completion_tokens
                bar.update(1, note=f"{toks / max(time.perf_counter() - t0, 1e-9):.1f} tokens/s")
        bar.close()
        return [i if isinstance(i, Result) else self.results.pop(i) for i in ids]

    def compilations(self) -> dict[str, int]:
        return self.steps.compilations()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _allocate(self) -> tuple[KVCache, SlotState]:
        device = self._state_sharding if self.model.mesh is None else None
        return self.steps.allocate(self.num_slots, self.max_len, self.limits.max_stop_token_ids, device)

    # ================================================================================================ admission
    def _in_flight(self) -> Iterable[_Live]:
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
                live.mask = self._pool.submit(self._fill_mask, live.req.constraint)

    def _fill_mask(self, constraint) -> np.ndarray:
        out = np.zeros((self.mask_words,), np.int32)
        constraint.fill_bitmask(out)
        return out

    # ================================================================================================== prefill
    def _dispatch_prefill(self):
        todo = [s for s in self.slots if s is not None and not s.decoding and not s.done]
        if not todo:
            return None
        todo.sort(key=lambda s: s.t_admit)
        b = self.buckets
        limit = (lambda s: b.chunk) if self.prefix is None else (
            lambda s: min(b.chunk, self.prefix.chunk_limit(s.slot, s.prefilled)))
        chunk_len = lambda s: min(limit(s), len(s.prompt) - s.prefilled)
        t = b.chunk_for(chunk_len(todo[0]))
        group = [s for s in todo if b.chunk_for(chunk_len(s)) == t][:b.rows_for(t)]
        n_rows = b.rows_for(t)
        kv = max(b.kv_for(s.prefilled + chunk_len(s)) for s in group)
        score = any(s.req.score_from is not None for s in group)
        tokens = np.zeros((n_rows, t), np.int32)
        positions = np.full((n_rows, t), -1, np.int32)
        targets = np.full((n_rows, t), -1, np.int32)
        rows = np.full((n_rows,), self.num_slots, np.int32)
        last_idx = np.zeros((n_rows,), np.int32)
        final = np.zeros((n_rows,), bool)
        words = np.repeat(self._all_ones, n_rows, axis=0)
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
            if final[r] and s.mask is not None:
                try:
                    words[r] = s.mask.result()
                except Exception as e:  # noqa: BLE001 - the constraint's own failure
                    self._finish(s, "error", error=f"constraint failed: {e!r}")
                    rows[r], final[r] = self.num_slots, False
                    continue
            plan.append((r, s, n, bool(final[r])))
        t0 = time.perf_counter()
        try:
            self.cache, self.state, out = self.steps.prefill(
                self.model.params, self.cache, self.state, tokens, positions, rows, last_idx, final, words,
                targets, kv_len=kv, score=score, plan=self._plan(group))
        except Exception as e:  # noqa: BLE001
            self._device_failure([s for _, s, _, _ in plan], e)
            return None
        for _, s, n, fin in plan:
            s.prefilled += n
            if self.prefix is not None:
                self.prefix.prefilled(self.cache, s.slot, s.prompt, s.prefilled)
            if fin:
                s.decoding = True
        return plan, out, t0

    def _finish_prefill(self, plan, out, t0) -> None:
        try:
            out = jax.device_get(out)
        except Exception as e:  # noqa: BLE001
            self._device_failure([s for _, s, _, _ in plan], e)
            return
        self.stats.prefill_calls += 1
        self.stats.prefill_tokens += sum(n for _, _, n, _ in plan)
        self.stats.prefill_s += time.perf_counter() - t0
        for r, s, n, fin in plan:
            if s.done:
                continue
            if "target_logprob" in out:
                ok_t = slice(0, n)
                for lp, top, tgt in zip(out["target_logprob"][r, ok_t], out["target_is_top"][r, ok_t],
                                        range(s.prefilled - n + 1, s.prefilled + 1)):
                    if s.req.score_from <= tgt < len(s.prompt):
                        s.prompt_lp.append(float(lp))
                        s.prompt_top.append(bool(top))
            if not fin:
                continue
            if s.req.sampling.max_tokens == 0:
                self._finish(s, "length")
                continue
            self._take(s, out, r, 0)

    def _plan(self, lives) -> SamplerPlan:
        """What the sampler of a step over these requests computes: penalties, bias and logprobs if one uses them,
        as many top logprobs as the most any asks (bucketed)."""
        sps = [s.req.sampling for s in lives]
        asked = max((sp.top_logprobs for sp in sps), default=0)
        return SamplerPlan(penalties=any(sp.penalizes for sp in sps), bias=any(bool(sp.logit_bias) for sp in sps),
                           logprobs=any(sp.logprobs for sp in sps),
                           num_top=top_bucket(asked, self.limits.max_top_logprobs))

    # =================================================================================================== decode
    def _decode_kv(self, decoders, steps: int) -> int:
        need = max(s.length for s in decoders) + steps
        return self.buckets.kv_for(min(need, self.max_len))

    def _keep(self, decoders) -> np.ndarray:
        keep = np.zeros((self.num_slots,), bool)
        for s in decoders:
            keep[s.slot] = True
        return keep

    def _dispatch_decode(self, decoders):
        n = self.decode_steps
        t0 = time.perf_counter()
        try:
            self.cache, self.state, outs, _ = self.steps.decode_loop(
                self.model.params, self.cache, self.state, self._keep(decoders),
                kv_len=self._decode_kv(decoders, n), n_steps=n, plan=self._plan(decoders))
        except Exception as e:  # noqa: BLE001
            self._device_failure(decoders, e)
            return None
        return decoders, outs, t0

    def _finish_decode(self, decoders, outs, t0) -> None:
        try:
            outs = jax.device_get(outs)
        except Exception as e:  # noqa: BLE001
            self._device_failure(decoders, e)
            return
        self.stats.decode_calls += 1
        self.stats.decode_s += time.perf_counter() - t0
        for i in range(outs["token"].shape[0]):
            for s in decoders:
                if not s.done and outs["token"][i, s.slot] >= 0:
                    self.stats.decode_tokens += 1
                    self._take(s, outs, (i, s.slot), i)

    def _decode_one_constrained(self) -> None:
        decoders = [s for s in self.slots if s is not None and s.decoding and not s.done]
        if not decoders:
            return
        t0 = time.perf_counter()
        keep = self._keep(decoders)
        try:
            logits, self.cache = self.steps.decode_forward(self.model.params, self.cache, self.state, keep,
                                                           kv_len=self._decode_kv(decoders, 1))
        except Exception as e:  # noqa: BLE001
            self._device_failure(decoders, e)
            return
        # the device runs the forward while the masks (started when the last tokens arrived) finish here
        words = np.repeat(self._all_ones, self.num_slots, axis=0)
        for s in decoders:
            if s.mask is not None:
                try:
                    words[s.slot] = s.mask.result()
                except Exception as e:  # noqa: BLE001
                    self._finish(s, "error", error=f"constraint failed: {e!r}")
                    keep[s.slot] = False
        try:
            self.state, outs = self.steps.decode_sample(logits, self.state, keep, words, plan=self._plan(decoders))
        except Exception as e:  # noqa: BLE001
            self._device_failure(decoders, e)
            return
        self._finish_decode([s for s in decoders if not s.done], outs, t0)

    # ============================================================================================= per token
    def _take(self, s: _Live, out: dict, idx, step: int) -> None:
        """Host side of one sampled token of request s: record, check every stop condition, stream it."""
        if not out["ok"][idx]:
            self._finish(s, "error", error="no token is allowed here (the constraint's mask and the logit bias "
                                           "left nothing to sample)")
            return
        tok = int(out["token"][idx])
        sp = s.req.sampling
        if not s.tokens:
            s.t_first = time.perf_counter()
        s.tokens.append(tok)
        lp = float(out["logprob"][idx]) if sp.logprobs else None
        top = None
        if sp.top_logprobs:
            top = [(int(i), float(v)) for i, v in zip(out["top_ids"][idx][:sp.top_logprobs],
                                                      out["top_logprobs"][idx][:sp.top_logprobs])]
        if sp.logprobs:
            s.logprobs.append(lp)
        if sp.top_logprobs:
            s.top.append(top)
        reason, stop_reason, error = None, None, None
        try:
            if tok in sp.stop_token_ids:
                reason, stop_reason = "stop", tok
            elif sp.stop and (hit := self._stop_string(s)) is not None:
                reason, stop_reason = "stop", hit
            elif sp.max_tokens is not None and len(s.tokens) >= sp.max_tokens:
                reason = "length"
            elif s.length >= self.max_len:
                reason = "length"
            c = s.req.constraint
            if c is not None and reason is None:
                c.advance(tok)
                if c.is_finished():
                    reason, stop_reason = "stop", "constraint"
                else:
                    s.mask = self._pool.submit(self._fill_mask, c)
        except Exception as e:  # noqa: BLE001 - detokenizer / constraint failure: this request only
            reason, error = "error", f"{type(e).__name__}: {e}"
        ev = TokenEvent(s.id, len(s.tokens) - 1, tok, lp, top, reason)
        self._emit(s, ev)
        if reason is not None and not s.done:
            self._finish(s, reason, stop_reason, error, event_sent=True)

    def _stop_string(self, s: _Live) -> str | None:
        stops = s.req.sampling.stop
        look = 4 * max(len(x) for x in stops) + 4
        tail = self.detokenize(s.tokens[-look:])
        hits = [(tail.find(x), x) for x in stops if x in tail]
        return min(hits)[1] if hits else None

    def _emit(self, s: _Live, ev: TokenEvent) -> None:
        self._events.append(ev)
        if s.on_token is not None:
            try:
                s.on_token(ev)
            except Exception as e:  # noqa: BLE001 - the caller's callback failed: its request ends
                if not s.done:
                    self._finish(s, "error", error=f"on_token callback raised {type(e).__name__}: {e}",
                                 event_sent=ev.finish_reason is not None)

    def _finish(self, s: _Live, reason: str, stop_reason=None, error: str | None = None, *,
                event_sent: bool = False) -> None:
        if s.done:
            return
        s.done = True
        if s.slot >= 0 and self.slots[s.slot] is s:
            self.slots[s.slot] = None
            if self.prefix is not None:
                self.prefix.finished(s.slot)
        now = time.perf_counter()
        sp = s.req.sampling
        text = None
        if self.detokenize is not None:
            try:
                ids = s.tokens[:-1] if reason == "stop" and isinstance(stop_reason, int) else s.tokens
                text = self.detokenize(ids)
                if isinstance(stop_reason, str) and stop_reason in text and stop_reason != "constraint":
                    text = text[:text.find(stop_reason)]
            except Exception as e:  # noqa: BLE001
                reason, error = "error", f"detokenize failed: {type(e).__name__}: {e}"
        first = s.t_first or now
        res = Result(
            id=s.id, prompt_tokens=len(s.prompt), completion_tokens=len(s.tokens), token_ids=list(s.tokens),
            finish_reason=reason, stop_reason=stop_reason, logprobs=s.logprobs if sp.logprobs else None,
            top_logprobs=s.top if sp.top_logprobs else None,
            prompt_logprobs=s.prompt_lp if s.req.score_from is not None else None,
            prompt_greedy=s.prompt_top if s.req.score_from is not None else None,
            text=text, error=error, seed=s.seed, cached_tokens=s.cached,
            timings={"queued_s": (s.t_admit or now) - s.t_submit, "ttft_s": first - s.t_submit,
                     "prefill_s": first - (s.t_admit or now), "decode_s": now - first, "total_s": now - s.t_submit})
        self.results[s.id] = res
        if not event_sent:
            self._emit(s, TokenEvent(s.id, len(s.tokens), -1, finish_reason=reason))

    def _device_failure(self, involved: Sequence[_Live], exc: Exception) -> None:
        """A device call failed: its requests fail; if the donated cache or state was consumed, both are rebuilt
        and every request that had state on the device fails too (its cache is gone)."""
        msg = f"device step failed: {type(exc).__name__}: {exc}"
        for s in involved:
            self._finish(s, "error", error=msg)
        lost = any(a.is_deleted() for a in jax.tree.leaves((self.cache, self.state)))
        if lost:
            for s in [x for x in self.slots if x is not None]:
                self._finish(s, "error", error=msg + " (the KV cache was lost with it)")
            self.cache, self.state = self._allocate()
            if self.prefix is not None:
                self.prefix.clear()
