"""A deterministic backend for tests: a Python function decides each answer.

The responder gets the `Request` and returns a `Result`, a string (the final content), or a dict of `Result`
fields. An exception raised by the responder becomes a failed `Result` (as an endpoint error would), so tests can
exercise the failure path. Results are yielded in submission order (the scripted backend has no concurrency), which
keeps test output reproducible.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Iterator

from evals.backends.base import Backend, Request, Result, ToolCall
from evals.tooluse import run_message_loop

Responder = Callable[[Request], "Result | str | dict[str, Any]"]


def _count_tokens(text: str) -> int:
    # A stand-in token count (whitespace words); deterministic, so cost tables in tests are reproducible.
    return len(text.split())


class ScriptedBackend(Backend):
    def __init__(self, responder: Responder, *, name: str = "scripted"):
        self._responder = responder
        self._name = name
        self.calls: list[Request] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "model": self._name}

    def complete_many(self, requests: Iterable[Request]) -> Iterator[tuple[str, Result]]:
        for req in requests:
            if req.builtin_tools:  # the tool loop over function tools, as an endpoint runs it
                yield req.id, run_message_loop(
                    lambda msgs, tools, req=req: self._one(dataclasses.replace(
                        req, messages=tuple(msgs), tools=tuple(tools), builtin_tools=())), req)
            else:
                yield req.id, self._one(req)

    def _one(self, req: Request) -> Result:
        self.calls.append(req)
        started = time.time()
        try:
            out = self._responder(req)
        except Exception as e:  # noqa: BLE001 - the point is to turn any failure into a failed Result
            return Result.failure(f"scripted responder raised {type(e).__name__}: {e}", started_at=started)
        return _to_result(out, req, started)


def _to_result(out: Any, req: Request, started: float) -> Result:
    if isinstance(out, Result):
        return out
    if isinstance(out, str):
        out = {"content": out}
    if not isinstance(out, dict):
        raise TypeError(f"scripted responder returned {type(out).__name__}; expected Result, str or dict")
    fields = dict(out)
    calls = fields.pop("tool_calls", ())
    fields["tool_calls"] = tuple(c if isinstance(c, ToolCall) else ToolCall(**c) for c in calls)
    prompt_text = " ".join(str(m.get("content") or "") for m in req.messages)
    fields.setdefault("prompt_tokens", _count_tokens(prompt_text))
    fields.setdefault("completion_tokens",
                      _count_tokens(fields.get("content", "")) + _count_tokens(fields.get("reasoning", "")))
    fields.setdefault("finish_reason", "tool_calls" if fields["tool_calls"] else "stop")
    fields.setdefault("started_at", started)
    fields.setdefault("latency_s", time.time() - started)
    return Result(**fields)
