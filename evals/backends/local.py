"""The in-process JAX engine as an eval backend: harmony rendering, continuous batching, harmony parsing.

    gptoss eval --backend=local --model=/ckpt/gpt-oss-120b --backend_arg=mesh=1,8,1 --backend_arg=num_slots=64
    gptoss eval --backend=local --model=demo        # a preset: its synthetic checkpoint (random weights)

`--model` is a checkpoint folder (either release layout, or an Orbax conversion) or a config preset. Backend
arguments (`--backend_arg key=value`): mesh, dtype (bfloat16), num_slots (8), max_len (8192), max_tokens (the most
tokens any completion runs: default none for a checkpoint, and for a preset, whose random weights never stop, the
engine's default for the model: 64 for the small presets; said once when it applies; every limit is also capped at
what fits in max_len after the prompt), moe_impl, attention_impl, moe_dequant (kernels: auto), synthetic_dir, seed
(of the synthetic checkpoint), compilation_cache_dir (default ~/.cache/gptoss_jax/xla; 'off' disables it).
Requests are pulled lazily, a few more than there are slots, so the engine's slots stay full while the harness
records and grades finished samples.

Tool-using requests (``Request.builtin_tools``) run harmony's tool loop on a thread each (local_tools.py); their
rounds are batched with everything else on the one engine.

Cost: each engine step's wall time is split evenly among the requests holding a slot during it, so the
device-seconds of a sweep add up to the time the device was busy.
"""
from __future__ import annotations

import dataclasses
import queue
import sys
import time
from typing import Any, Iterable, Iterator

from evals.backends.base import Backend, BackendConfig, BackendFatalError, Request, Result, ToolCall

_INT_ARGS = ("num_slots", "max_len", "max_tokens", "seed", "decode_steps", "prefill_chunk", "replicas")


def create(config: BackendConfig) -> Backend:
    return LocalBackend(config)


def _args(config: BackendConfig) -> dict:
    known = {"mesh", "dtype", "moe_impl", "attention_impl", "moe_dequant", "synthetic_dir", "compilation_cache_dir",
             "replicas", *_INT_ARGS}
    unknown = sorted(set(config.extra) - known)
    if unknown:
        raise BackendFatalError(f"--backend_arg {unknown} not understood by the local backend; expected some of "
                                f"{sorted(known)}")
    out = dict(config.extra)
    for k in _INT_ARGS:
        if k in out:
            try:
                out[k] = int(out[k])
            except ValueError:
                raise BackendFatalError(f"--backend_arg {k}={out[k]!r}: expected an integer") from None
    return out


class LocalBackend(Backend):
    """Loads the model when the sweep first needs it (describe / complete_many), so a resumed sweep with nothing
    left to run, or one refused for bad flags, never waits for a load; the checkpoint's config is checked at once.
    In a multi-process job every process loads at once (loading is collective)."""
    bills_device_time = True

    def __init__(self, config: BackendConfig):
        from gptoss_jax import distributed
        from gptoss_jax.api import is_preset
        from gptoss_jax.config import PRESETS, get_config
        from gptoss_jax.engine.requests import default_max_tokens

        self.args = _args(config)
        if not config.model:
            raise BackendFatalError("--backend=local needs --model: a checkpoint folder or a preset such as "
                                    f"{sorted(PRESETS)}")
        try:
            self.cfg = get_config(config.model)
        except ValueError as e:  # no such folder, not a checkpoint, bad config.json
            raise BackendFatalError(f"local backend cannot start: {e}") from None
        self.default_max_tokens = default_max_tokens(self.cfg)   # the engine's, for a request that sets none
        self.cap = self.args.get("max_tokens")
        if self.cap is None and is_preset(config.model):   # random weights: long completions only take time
            self.cap = self.default_max_tokens
            self.cap_note = (f"local backend: {config.model} is a synthetic model with random weights, which never "
                             f"stop; every completion is capped at {self.cap} tokens (--backend_arg max_tokens=N "
                             f"changes it)")
        else:
            self.cap_note = None
        self.config = config
        self.model = self.engine = None
        if distributed.is_initialized():
            self._start()

    def _start(self) -> None:
        if self.engine is not None:
            return
        from gptoss_jax import distributed
        from gptoss_jax.api import build_model
        from gptoss_jax.engine import Engine
        from gptoss_jax.engine.compilation import enable_persistent_cache
        from gptoss_jax.kernels import Kernels

        args, config = self.args, self.config
        enable_persistent_cache(args.get("compilation_cache_dir"))   # a second sweep loads what this one compiles
        try:
            kernels = Kernels(**{field: args.get(arg, "auto") for field, arg in
                                 (("moe", "moe_impl"), ("attention", "attention_impl"), ("dequant", "moe_dequant"))})
            self.model = build_model(config.model, mesh=args.get("mesh"), dtype=args.get("dtype", "bfloat16"),
                                     kernels=kernels, seed=args.get("seed", 0), replicas=args.get("replicas", 1),
                                     synthetic_dir=args.get("synthetic_dir"))
            self.engine = Engine(self.model, num_slots=args.get("num_slots", 8),
                                 max_len=min(args.get("max_len", 8192), self.model.cfg.max_context),
                                 **{k: args[k] for k in ("decode_steps", "prefill_chunk") if k in args})
        except (ValueError, OSError) as e:  # bad checkpoint, config, mesh or engine sizes: nothing can run
            raise BackendFatalError(f"local backend cannot start: {e}") from None
        if self.cap_note and distributed.is_main():
            print(self.cap_note, file=sys.stderr)

    def describe(self) -> dict:
        self._start()
        return {**self.config.describe(), "engine": {"num_slots": self.engine.num_slots,
                                                     "max_len": self.engine.max_len,
                                                     "dtype": self.model.dtype.name}}

    def _limit(self, max_tokens: int | None) -> int | None:
        """A request's completion limit under this backend's cap (if any)."""
        return max_tokens if self.cap is None else min(max_tokens or self.cap, self.cap)

    def _engine_request(self, req: Request):
        from gptoss_jax import chat as chat_lib
        from gptoss_jax.engine import SamplingParams

        s = req.sampling
        sampling = SamplingParams(
            temperature=1.0 if s.temperature is None else s.temperature,
            top_p=1.0 if s.top_p is None else s.top_p, top_k=s.top_k or 0, seed=s.seed, stop=tuple(s.stop),
            max_tokens=self._limit(s.max_tokens))
        chat_req = chat_lib.ChatRequest(messages=req.messages, tools=list(req.tools) or None,
                                        reasoning_effort=req.reasoning_effort, sampling=sampling, id=req.id)
        return chat_lib.to_engine_request(chat_req, max_len=self.engine.max_len,
                                          default_max_tokens=self.default_max_tokens)

    def _result(self, res, started: float, device_s: float) -> Result:
        from gptoss_jax import chat as chat_lib

        c = chat_lib.from_engine_result(res)
        latency = time.time() - started
        if c.error is not None:
            return Result.failure(c.error, latency_s=latency, started_at=started)
        return Result(content=c.content or "", reasoning=c.reasoning or "",
                      tool_calls=tuple(ToolCall(t.name, t.arguments, t.id) for t in c.tool_calls),
                      prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, latency_s=latency,
                      device_seconds=device_s, finish_reason=c.finish_reason, started_at=started)

    def complete_many(self, requests: Iterable[Request]) -> Iterator[tuple[str, Result]]:
        from evals.backends.local_tools import ToolLoop
        from gptoss_jax.engine import RequestError

        self._start()
        source = iter(requests)
        exhausted = False
        # engine id -> (started unix time, [device seconds], the ToolLoop and Future waiting for it, or None)
        live: dict[str, tuple[float, list[float], Any]] = {}
        loops: dict[str, ToolLoop] = {}                        # tool-using requests, each looping on its thread
        inbox: "queue.Queue" = queue.Queue()                   # (loop, engine request | None, Future) from loops
        try:
            while True:
                while not exhausted and len(live) + len(loops) < 2 * self.engine.num_slots:
                    req = next(source, None)
                    if req is None:
                        exhausted = True
                        break
                    if req.builtin_tools:
                        capped = dataclasses.replace(req, sampling=dataclasses.replace(
                            req.sampling, max_tokens=self._limit(req.sampling.max_tokens)))
                        loops[req.id] = ToolLoop(capped, inbox, max_len=self.engine.max_len,
                                                 default_max_tokens=self.cap).start()
                        continue
                    started = time.time()
                    try:
                        rid = self.engine.submit(self._engine_request(req))
                    except (RequestError, ValueError) as e:  # bad chat input, overlong prompt, bad sampling value
                        yield req.id, Result.failure(str(e), started_at=started)
                        continue
                    live[rid] = (started, [0.0], None)
                if not live and not loops:
                    return
                # rounds asked for by tool loops; when the engine is idle, wait for one (a tool is running)
                while True:
                    try:
                        loop, ereq, fut = inbox.get(block=not live, timeout=0.05)
                    except queue.Empty:
                        break
                    if ereq is None:
                        loops.pop(loop.req.id, None)
                        yield loop.req.id, loop.result
                        continue
                    try:
                        live[self.engine.submit(ereq)] = (time.time(), [0.0], (loop, fut))
                    except (RequestError, ValueError) as e:
                        fut.set_exception(e)
                if not live:
                    continue
                before = {s.id for s in self.engine.slots if s is not None}
                t0 = time.perf_counter()
                events = self.engine.step()
                dt = time.perf_counter() - t0
                # whoever held a slot during the step: before it, after it, or admitted and finished within it
                holding = (before | {s.id for s in self.engine.slots if s is not None}
                           | {ev.request_id for ev in events}) & live.keys()
                for rid in holding:
                    live[rid][1][0] += dt / len(holding)
                for ev in events:
                    if ev.finish_reason is None or ev.request_id not in live:
                        continue
                    started, device_s, waiter = live.pop(ev.request_id)
                    if waiter is not None:
                        loop, fut = waiter
                        loop.device_s += device_s[0]
                        fut.set_result(self.engine.result(ev.request_id))
                        continue
                    yield ev.request_id, self._result(self.engine.result(ev.request_id), started, device_s[0])
        finally:
            for rid, (_, _, waiter) in live.items():   # the caller stopped early: stop what is still running
                self.engine.cancel(rid)
                if waiter is not None:
                    waiter[1].cancel()
            while True:  # rounds asked for after the stop: refused (a cancelled Future ends the loop thread's wait)
                try:
                    _, ereq, fut = inbox.get_nowait()
                except queue.Empty:
                    break
                if fut is not None:
                    fut.cancel()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
