"""The Starlette app: routes, API key, OpenAI error bodies. Every handler turns input problems into one ApiError
(status + {"error": {...}}), so one bad request never reaches the engine and never affects another."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import time
from typing import Any, Awaitable, Callable

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gptoss_jax.server import chat_api, completions_api, responses_api
from gptoss_jax.server.engine_loop import EngineLoop
from gptoss_jax.server.errors import ApiError, bad_request
from gptoss_jax.server.metrics import Metrics
from gptoss_jax.server.running import ClientGone

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Context:
    """What the handlers share. enc: the harmony tokenizer (None for a model without its vocabulary: chat and
    responses are refused, completions take token ids)."""
    loop: EngineLoop
    model_name: str
    enc: Any
    metrics: Metrics
    max_top_logprobs: int
    api_key: str | None = None
    shutdown_grace_s: float = 30.0
    created: int = dataclasses.field(default_factory=lambda: int(time.time()))

    @property
    def fingerprint(self) -> str:
        return f"gptoss-jax-{self.model_name}"

    @staticmethod
    def aloop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def sse(self, gen, named: bool = False) -> EventSourceResponse:
        async def events():
            async for item in gen:
                if named:
                    yield {"event": item[0], "data": item[1]}
                else:
                    yield {"data": item}
        return EventSourceResponse(events(), ping=15)


def _authorized(ctx: Context, request: Request) -> bool:
    if ctx.api_key is None:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), ctx.api_key.encode())


def create_app(ctx: Context) -> Starlette:
    def api(fn: Callable[..., Awaitable[Any]], *, chat: bool):
        async def handler(request: Request) -> Response:
            try:
                if not _authorized(ctx, request):
                    raise ApiError(401, "invalid API key (send it as 'Authorization: Bearer KEY')",
                                   code="invalid_api_key")
                try:
                    body = json.loads(await request.body())
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise bad_request(f"the body is not valid JSON: {e}") from None
                if not isinstance(body, dict):
                    raise bad_request("the body must be a JSON object")
                model = body.get("model")
                if not isinstance(model, str):
                    raise bad_request("model is required (the name /v1/models lists)", "model")
                if model != ctx.model_name:
                    raise ApiError(404, f"the model {model!r} does not exist; this server serves "
                                        f"{ctx.model_name!r}", param="model", code="model_not_found")
                if chat and ctx.enc is None:
                    raise bad_request(f"model {ctx.model_name} does not use the o200k_harmony vocabulary, so it "
                                      f"cannot chat; use /v1/completions with token ids")
                out = await fn(ctx, request, body)
                return out if isinstance(out, Response) else JSONResponse(out)
            except ApiError as e:
                ctx.metrics.error(e.status)
                return JSONResponse(e.body(), status_code=e.status, headers=e.headers)
            except ClientGone:
                return Response(status_code=499)
            except Exception as e:  # noqa: BLE001 - a bug: this request fails with a 500, the server goes on
                log.exception("request failed")
                ctx.metrics.error(500)
                return JSONResponse(ApiError(500, f"internal error: {type(e).__name__}: {e}").body(), 500)
        return handler

    async def models(request: Request) -> Response:
        if not _authorized(ctx, request):
            return JSONResponse(ApiError(401, "invalid API key", code="invalid_api_key").body(), 401)
        return JSONResponse({"object": "list", "data": [
            {"id": ctx.model_name, "object": "model", "created": ctx.created, "owned_by": "gptoss-jax"}]})

    async def health(request: Request) -> Response:
        ok = ctx.loop.error is None and not ctx.loop.stopping
        return JSONResponse({"status": "ok" if ok else "unavailable", "queue_depth": ctx.loop.queue_depth(),
                             "busy_slots": ctx.loop.busy_slots()}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        ctx.metrics.gauges(ctx.loop.queue_depth(), ctx.loop.busy_slots())
        return Response(ctx.metrics.render(), media_type=ctx.metrics.content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn is shutting down (SIGTERM / SIGINT): what is in flight finishes (up to the grace), the rest is
        # cancelled, the engine thread (and a multi-process job's followers) end
        await asyncio.to_thread(ctx.loop.stop, ctx.shutdown_grace_s)

    return Starlette(routes=[
        Route("/v1/chat/completions", api(chat_api.complete, chat=True), methods=["POST"]),
        Route("/v1/completions", api(completions_api.complete, chat=False), methods=["POST"]),
        Route("/v1/responses", api(responses_api.create, chat=True), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)
