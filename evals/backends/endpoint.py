"""Any OpenAI-compatible chat-completions endpoint, through the official `openai` client.

Concurrency is a thread pool of ``concurrency`` workers fed lazily from the request iterator. Each request is retried
with exponential backoff (full jitter, capped, honouring ``Retry-After``) on connection errors, timeouts, HTTP 429
and 5xx; a 400 fails that request only (e.g. prompt too long); 401/403/404 raise `BackendFatalError` since every
other request would fail the same way.

Reasoning effort is sent the way the server accepts it (``BackendConfig.reasoning_effort_param``):
  ``reasoning_effort``      top-level ``reasoning_effort`` field (vLLM, SGLang, Groq, OpenAI-style APIs; default)
  ``reasoning``             ``{"reasoning": {"effort": ...}}`` (OpenRouter)
  ``chat_template_kwargs``  ``{"chat_template_kwargs": {"reasoning_effort": ...}}`` (llama.cpp server, some vLLM)
  ``system``                a leading system message ``Reasoning: high`` (Ollama, LM Studio: harmony's own wording)
  ``none``                  not sent
The chain of thought is read from ``message.reasoning_content`` or ``message.reasoning`` (whichever the server fills).
"""
from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterable, Iterator

from evals.backends.base import Backend, BackendConfig, BackendFatalError, Request, Result, ToolCall
from evals.tooluse import run_message_loop

EFFORT_PARAMS = ("reasoning_effort", "reasoning", "chat_template_kwargs", "system", "none")


def _import_openai():
    try:
        import openai  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendFatalError(
            "the endpoint backend needs the `openai` package: pip install -e '.[evals]'") from e
    return openai


class EndpointBackend(Backend):
    def __init__(self, config: BackendConfig):
        if not config.base_url:
            raise BackendFatalError("the endpoint backend needs --base_url (e.g. http://localhost:8000/v1)")
        if not config.model:
            raise BackendFatalError("the endpoint backend needs --model (the model name the server serves)")
        if config.reasoning_effort_param not in EFFORT_PARAMS:
            raise BackendFatalError(
                f"--reasoning_effort_param={config.reasoning_effort_param!r} is not one of {EFFORT_PARAMS}")
        if config.concurrency < 1:
            raise BackendFatalError(f"--concurrency must be >= 1, got {config.concurrency}")
        self.config = config
        openai = _import_openai()
        self._openai = openai
        self._client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key or "EMPTY",
                                     timeout=config.timeout_s, max_retries=0)
        self._max_tokens_param = config.extra.get("max_tokens_param", "max_tokens")
        self._closed = threading.Event()

    def describe(self) -> dict[str, Any]:
        return {"kind": "endpoint", "model": self.config.model, "base_url": self.config.base_url,
                "reasoning_effort_param": self.config.reasoning_effort_param}

    def close(self) -> None:
        self._closed.set()
        try:
            self._client.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- one request ------------------------------------------------------------------------------------------
    def _body(self, req: Request) -> dict[str, Any]:
        messages = [dict(m) for m in req.messages]
        extra_body: dict[str, Any] = {}
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        mode = self.config.reasoning_effort_param
        if mode == "reasoning_effort":
            body["reasoning_effort"] = req.reasoning_effort
        elif mode == "reasoning":
            extra_body["reasoning"] = {"effort": req.reasoning_effort}
        elif mode == "chat_template_kwargs":
            extra_body["chat_template_kwargs"] = {"reasoning_effort": req.reasoning_effort}
        elif mode == "system":
            messages.insert(0, {"role": "system", "content": f"Reasoning: {req.reasoning_effort}"})
        if req.tools:
            body["tools"] = [dict(t) for t in req.tools]
        s = req.sampling
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.top_p is not None:
            body["top_p"] = s.top_p
        if s.max_tokens is not None:
            if self._max_tokens_param == "max_tokens":
                body["max_tokens"] = s.max_tokens
            else:
                extra_body[self._max_tokens_param] = s.max_tokens
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.top_k is not None:
            extra_body["top_k"] = s.top_k
        if extra_body:
            body["extra_body"] = extra_body
        return body

    def _retry_delay(self, attempt: int, err: Exception) -> float:
        retry_after = None
        response = getattr(err, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** attempt))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay

    def _run_one(self, req: Request, stop: threading.Event) -> Result:
        if req.builtin_tools:  # the harmony tools as function tools, looped until the model answers
            return run_message_loop(lambda msgs, tools: self._run_turn(dataclasses.replace(
                req, messages=tuple(msgs), tools=tuple(tools), builtin_tools=()), stop), req)
        return self._run_turn(req, stop)

    def _run_turn(self, req: Request, stop: threading.Event) -> Result:
        openai = self._openai
        started = time.time()
        t0 = time.monotonic()
        body = self._body(req)
        timeout = req.timeout_s or self.config.timeout_s
        last = "no attempt made"
        attempts = 0
        for attempt in range(self.config.max_retries + 1):
            if stop.is_set() or self._closed.is_set():
                return Result.failure("cancelled", started_at=started, attempts=attempts)
            attempts = attempt + 1
            try:
                resp = self._client.chat.completions.create(**body, timeout=timeout)
                return _parse_response(resp, latency=time.monotonic() - t0, started=started, attempts=attempts)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                raise BackendFatalError(
                    f"endpoint {self.config.base_url} refused the credentials (HTTP {e.status_code}): "
                    f"{_short(e)}; pass a valid --api_key") from e
            except openai.NotFoundError as e:
                raise BackendFatalError(
                    f"endpoint {self.config.base_url} answered 404 for model {self.config.model!r}: {_short(e)}; "
                    "check --base_url (it usually ends in /v1) and --model") from e
            except openai.BadRequestError as e:
                return Result.failure(f"endpoint rejected the request (HTTP 400): {_short(e)}",
                                      latency_s=time.monotonic() - t0, started_at=started, attempts=attempts)
            except openai.APITimeoutError as e:
                last = f"timed out after {timeout:g}s"
                err: Exception = e
            except openai.APIConnectionError as e:
                last = f"could not connect to {self.config.base_url}: {_short(e)}"
                err = e
            except openai.APIStatusError as e:
                if e.status_code == 429 or e.status_code >= 500:
                    last = f"HTTP {e.status_code}: {_short(e)}"
                    err = e
                else:
                    return Result.failure(f"endpoint error HTTP {e.status_code}: {_short(e)}",
                                          latency_s=time.monotonic() - t0, started_at=started, attempts=attempts)
            except MalformedResponse as e:
                last = f"malformed response: {e}"
                err = e
            if attempt < self.config.max_retries:
                if stop.wait(self._retry_delay(attempt, err)) or self._closed.is_set():
                    return Result.failure("cancelled", started_at=started, attempts=attempts)
        return Result.failure(f"{last} (gave up after {attempts} attempts)",
                              latency_s=time.monotonic() - t0, started_at=started, attempts=attempts)

    # ---- many requests ----------------------------------------------------------------------------------------
    def complete_many(self, requests: Iterable[Request]) -> Iterator[tuple[str, Result]]:
        stop = threading.Event()  # per call: concurrent calls (grader threads) must not cancel each other
        it = iter(requests)
        pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="endpoint")
        pending: dict[Future, Request] = {}
        window = self.config.concurrency * 2

        def fill() -> None:
            while len(pending) < window:
                try:
                    r = next(it)
                except StopIteration:
                    return
                pending[pool.submit(self._run_one, r, stop)] = r

        try:
            fill()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in done:
                    r = pending.pop(f)
                    yield r.id, f.result()  # only BackendFatalError escapes _run_one
                fill()
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


class MalformedResponse(Exception):
    pass


def _short(e: Exception, limit: int = 300) -> str:
    msg = getattr(e, "message", None) or str(e)
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _field(obj: Any, name: str) -> Any:
    val = getattr(obj, name, None)
    if val is None:
        extra = getattr(obj, "model_extra", None) or {}
        val = extra.get(name)
    return val


def _parse_response(resp: Any, *, latency: float, started: float, attempts: int) -> Result:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise MalformedResponse("no choices in the response")
    choice = choices[0]
    msg = choice.message
    if msg is None:
        raise MalformedResponse("choice has no message")
    reasoning = _field(msg, "reasoning_content") or _field(msg, "reasoning") or ""
    if not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning)
    calls = []
    for tc in (msg.tool_calls or []):
        fn = getattr(tc, "function", None)
        if fn is None:
            continue
        calls.append(ToolCall(name=fn.name or "", arguments=fn.arguments or "", id=getattr(tc, "id", "") or ""))
    usage = getattr(resp, "usage", None)
    prompt = completion = cached = 0
    reasoning_tokens = None
    if usage is not None:
        prompt = usage.prompt_tokens or 0
        completion = usage.completion_tokens or 0
        ptd = getattr(usage, "prompt_tokens_details", None)
        if ptd is not None:
            cached = getattr(ptd, "cached_tokens", 0) or 0
        ctd = getattr(usage, "completion_tokens_details", None)
        if ctd is not None:
            reasoning_tokens = getattr(ctd, "reasoning_tokens", None)
    return Result(content=msg.content or "", reasoning=reasoning, tool_calls=tuple(calls),
                  prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached,
                  reasoning_tokens=reasoning_tokens, latency_s=latency, finish_reason=choice.finish_reason,
                  started_at=started, attempts=attempts)
