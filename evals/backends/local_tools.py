"""Tool-using requests on the local engine: harmony's own tool loop, one thread per sample, batched on one engine.

Each sample's loop (``harmony.run_tool_loop`` with the built-in tools of evals/tooluse.py) runs on its own thread.
Its ``generate`` does not touch the engine: it hands the round's engine request to the backend's stepping loop
through ``inbox`` and waits for the result, so the rounds of many samples share the engine's slots (continuous
batching) while tools run in the sandbox off the stepping thread. Only the stepping thread submits and steps.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

from evals.backends.base import Request, Result, ToolCall
from evals.tooluse import ToolSession


class ToolLoop:
    def __init__(self, req: Request, inbox: "queue.Queue", *, max_len: int, default_max_tokens: int | None):
        self.req = req
        self.inbox = inbox
        self.max_len = max_len
        self.default_max_tokens = default_max_tokens
        self.started = time.time()
        self.device_s = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.result: Result | None = None
        self.thread = threading.Thread(target=self._run, name=f"tool-loop-{req.id}", daemon=True)

    def start(self) -> "ToolLoop":
        self.thread.start()
        return self

    def _sampling(self, stop_token_ids, max_tokens: int | None, prompt_len: int):
        from gptoss_jax.engine import SamplingParams  # noqa: PLC0415

        s = self.req.sampling
        limit = s.max_tokens if s.max_tokens is not None else self.default_max_tokens
        room = self.max_len - prompt_len
        want = min(x for x in (limit, max_tokens, room) if x is not None)
        return SamplingParams(temperature=1.0 if s.temperature is None else s.temperature,
                              top_p=1.0 if s.top_p is None else s.top_p, top_k=s.top_k or 0,
                              seed=None if s.seed is None else (s.seed + self.completion_tokens) % (2 ** 31),
                              stop=tuple(s.stop), stop_token_ids=tuple(stop_token_ids), max_tokens=max(1, want))

    def generate(self, prompt_ids, *, stop_token_ids, constraint=None, max_tokens=None) -> list[int]:
        """run_tool_loop's generate_fn: one round on the shared engine."""
        from gptoss_jax.engine import Request as EngineRequest, RequestError  # noqa: PLC0415

        prompt = list(prompt_ids)
        if len(prompt) >= self.max_len:
            raise RequestError("request", f"the conversation reached {len(prompt)} tokens after "
                                          f"{self.completion_tokens} generated, past the engine's max_len "
                                          f"{self.max_len}")
        fut: Future = Future()
        self.inbox.put((self, EngineRequest(prompt, self._sampling(stop_token_ids, max_tokens, len(prompt)),
                                            constraint=constraint), fut))
        res = fut.result()
        self.prompt_tokens += res.prompt_tokens
        self.completion_tokens += res.completion_tokens
        if res.finish_reason in ("error", "cancelled"):
            raise RequestError("request", res.error or res.finish_reason)
        return list(res.token_ids)

    def _run(self) -> None:
        from gptoss_jax import harmony  # noqa: PLC0415

        req = self.req
        session = None
        try:
            session = ToolSession(req.builtin_tools, req.tool_config)
            out = harmony.run_tool_loop(
                self.generate, [dict(m) for m in req.messages], [dict(t) for t in req.tools] or None, {},
                builtin_tools=session.builtin, reasoning_effort=req.reasoning_effort,
                max_tokens=self.max_len, max_rounds=session.config.max_rounds)
            self.result = Result(
                content=out.content or "", reasoning=out.reasoning or "",
                tool_calls=tuple(ToolCall(t.name, t.arguments, t.id) for t in out.result.tool_calls),
                prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                latency_s=time.time() - self.started, device_seconds=self.device_s,
                finish_reason=out.finish_reason, started_at=self.started,
                transcript=transcript(out.conversation, session.events), tool_seconds=session.tool_seconds,
                rounds=out.rounds)
        except Exception as e:  # noqa: BLE001 - one sample's failure is its record, never the sweep's
            self.result = dataclasses.replace(
                Result.failure(f"tool loop: {type(e).__name__}: {e}", latency_s=time.time() - self.started,
                               started_at=self.started),
                transcript=tuple(session.events) if session else (), device_seconds=self.device_s,
                prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        finally:
            self.inbox.put((self, None, None))  # tells the stepping loop this sample is done


def transcript(conversation, tool_events) -> tuple[dict[str, Any], ...]:
    """The model's turns (channel, recipient, text) interleaved with the timed tool events, in order."""
    from gptoss_jax.harmony import Role  # noqa: PLC0415

    events = iter(tool_events)
    out: list[dict[str, Any]] = []
    for m in conversation:
        if m.author.role == Role.ASSISTANT:
            out.append({"type": "assistant", "channel": m.channel, "recipient": m.recipient, "text": m.text})
        elif m.author.role == Role.TOOL:
            out.append(next(events, {"type": "tool", "tool": m.author.name, "output": m.text}))
    return tuple(out)
