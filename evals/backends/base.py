"""The backend interface: how the eval harness talks to a model.

A backend turns `Request`s into `Result`s. Two implementations ship with evals/ (the OpenAI-compatible endpoint
and a deterministic scripted backend for tests); the in-process JAX engine plugs in as `evals/backends/local.py`
written against this file alone.

Contract
--------
``Backend.complete_many(requests) -> Iterator[tuple[str, Result]]``

* ``requests`` is any iterable of `Request` (it may be a lazy generator: a backend pulls from it only as fast as it
  has room, so a sweep of 100k samples never materialises 100k prompts). Request ids are unique within one call.
* It yields exactly one ``(request.id, Result)`` per request, in *completion* order (not submission order), as soon
  as each result is ready. This is what lets the local engine do continuous batching and the endpoint backend run a
  thread pool: the caller records and grades each result while the others are still running.
* A request that fails to run (endpoint error after retries, timeout, engine OOM for that sequence, context too
  long, ...) is *not* an exception: it yields a `Result` whose ``error`` is a one-line human-readable message and
  whose ``finish_reason`` is ``"error"``. The sweep records it as failed and carries on.
* Only a failure that dooms every request (bad credentials, unknown model, engine that cannot start) raises
  `BackendFatalError`, with a message that names what is wrong and what was expected.
* The caller may stop iterating early (``close()`` on the generator, Ctrl-C, an exception in the caller): the
  backend must then stop issuing new work; work already in flight may be dropped.
* A backend is reusable: ``complete_many`` may be called again after a previous call finished.

Cost accounting
---------------
Token counts feed the price table (prompt / completion / cached-input tokens, $ per million). ``device_seconds`` is
the accelerator time attributable to one request: for the local engine with continuous batching, each decode step's
wall time is split evenly among the sequences in that step (prefill time goes to its sequence), so the sum over a
sweep equals the time the device was busy. Endpoint backends leave it ``None`` (the provider bills tokens).

Reasoning effort
----------------
``Request.reasoning_effort`` is one of ``low | medium | high``; the local engine renders it into the harmony system
message (``Reasoning: high``); endpoint backends pass it the way the server expects (see endpoint.py).
"""
from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

from gptoss_jax.harmony.constants import REASONING_EFFORTS  # noqa: F401  (re-exported to the harness)


class BackendFatalError(RuntimeError):
    """A backend failure that dooms every request (bad credentials, unknown model, engine cannot start)."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling parameters for one request. ``None`` means "the backend's default"."""

    temperature: float | None = 1.0
    top_p: float | None = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()

    def key(self) -> str:
        """A short stable string naming the sampling point of a sweep (the seed is excluded: it varies per sample)."""
        parts = [f"t{self.temperature}", f"p{self.top_p}"]
        if self.top_k is not None:
            parts.append(f"k{self.top_k}")
        if self.max_tokens is not None:
            parts.append(f"m{self.max_tokens}")
        if self.stop:
            parts.append("s" + str(len(self.stop)))
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Request:
    """One chat completion to run.

    messages: OpenAI-style chat messages, e.g. ``{"role": "user", "content": "..."}``; roles ``system``,
        ``developer``, ``user``, ``assistant`` (optionally with ``tool_calls``) and ``tool`` (with ``tool_call_id``).
    tools: OpenAI-style function tools, ``{"type": "function", "function": {"name", "description", "parameters"}}``.
    reasoning_effort: ``low | medium | high``.
    timeout_s: wall-clock limit for this request (None: the backend's default).
    metadata: free-form, not sent to the model (task name, sample id, ...): backends may log it.
    builtin_tools: harmony built-in tools (``python``, ``browser``) the backend offers and runs in a loop until the
        model answers (evals/tooluse.py); tool_config: their `evals.tooluse.ToolConfig` (None: defaults).
    """

    id: str
    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    reasoning_effort: str = "medium"
    sampling: Sampling = Sampling()
    timeout_s: float | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    builtin_tools: tuple[str, ...] = ()
    tool_config: Any = None

    def __post_init__(self):
        if self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(
                f"request {self.id!r}: reasoning_effort {self.reasoning_effort!r} is not one of {REASONING_EFFORTS}")
        if not self.messages:
            raise ValueError(f"request {self.id!r}: no messages")


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A function call the model made. ``arguments`` is the JSON text as the model emitted it (may be invalid)."""

    name: str
    arguments: str
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Result:
    """What came back for one request.

    content: the final answer (harmony ``final`` channel / ``message.content``), "" if none.
    reasoning: the full chain of thought (harmony ``analysis`` channel / ``reasoning_content``), "" if none.
    tool_calls: function calls (harmony ``commentary`` channel addressed to ``functions.*``).
    prompt_tokens / completion_tokens / cached_tokens: usage; cached_tokens is the part of prompt_tokens that was
        served from a prefix cache (billed at the cached-input price). reasoning_tokens: part of completion_tokens.
    latency_s: wall time from submission to completion of this request (including retries).
    device_seconds: accelerator seconds attributable to this request (local engine), None for endpoints.
    finish_reason: ``stop | length | tool_calls | error | ...``.
    error: None if the request ran; otherwise a one-line message saying what failed.
    transcript: for tool-using requests, every turn and tool call in order (``{"type": "assistant" | "tool", ...}``);
        tool_seconds: time spent in tools (part of latency_s); rounds: model turns.
    """

    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int | None = None
    latency_s: float = 0.0
    device_seconds: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    started_at: float | None = None  # unix time the request was submitted
    attempts: int = 1
    transcript: tuple[Mapping[str, Any], ...] = ()
    tool_seconds: float = 0.0
    rounds: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failure(cls, message: str, *, latency_s: float = 0.0, started_at: float | None = None,
                attempts: int = 1) -> "Result":
        return cls(error=message, finish_reason="error", latency_s=latency_s, started_at=started_at,
                   attempts=attempts)

    def usage_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cached_tokens": self.cached_tokens, "reasoning_tokens": self.reasoning_tokens}


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Everything a backend factory gets from the CLI / sweep file.

    kind: ``endpoint | local | scripted``. model: endpoint model name, or for ``local`` a checkpoint path or preset
    (the local backend defines what it accepts). extra: ``--backend_arg key=value`` pairs passed through verbatim
    (e.g. the local engine's batch size or mesh), so the local backend needs no flags of its own in evals/cli.py.
    """

    kind: str = "endpoint"
    model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = 8
    max_retries: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float = 600.0
    reasoning_effort_param: str = "reasoning_effort"
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What goes into records and reports (never the API key)."""
        return {"kind": self.kind, "model": self.model, "base_url": self.base_url}


class Backend(abc.ABC):
    """See the module docstring for the contract."""

    #: True when cost comes from device time (local engine) rather than provider token prices.
    bills_device_time: bool = False

    @abc.abstractmethod
    def complete_many(self, requests: Iterable[Request]) -> Iterator[tuple[str, Result]]:
        """Yield ``(request.id, Result)`` for every request, in completion order."""

    def complete(self, request: Request) -> Result:
        """Run one request (a convenience over `complete_many`)."""
        for rid, result in self.complete_many([request]):
            if rid == request.id:
                return result
        raise RuntimeError(f"backend returned no result for request {request.id!r}")

    def describe(self) -> dict[str, Any]:
        """Identifying facts for records (model, url, engine config); never secrets."""
        return {"kind": type(self).__name__}

    def close(self) -> None:
        """Release threads, connections or device memory. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def now() -> float:
    return time.time()


def check_unique_ids(requests: Sequence[Request]) -> None:
    seen: set[str] = set()
    for r in requests:
        if r.id in seen:
            raise ValueError(f"duplicate request id {r.id!r} in one complete_many call")
        seen.add(r.id)
