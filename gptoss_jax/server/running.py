"""Waiting on the engine from an HTTP handler: every result of one call, or its items as they come; a client that
goes away cancels what it started (its slots free at the engine's next round)."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

from gptoss_jax.engine import Result
from gptoss_jax.server.engine_loop import EngineLoop, Ticket


class ClientGone(Exception):
    pass


async def _disconnected(request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def items(loop: EngineLoop, tickets: list[Ticket]) -> AsyncIterator[tuple[str, object]]:
    """(rid, list of TokenEvents | Result) as they come, until every ticket has its Result. Leaving early (the
    consumer stops: a disconnected stream) cancels the unfinished ones."""
    queue = tickets[0].queue
    pending = {t.rid for t in tickets}
    try:
        while pending:
            rid, item = await queue.get()
            if isinstance(item, Result):
                pending.discard(rid)
            yield rid, item
    finally:
        for rid in pending:
            loop.cancel(rid)


async def results(request, loop: EngineLoop, tickets: list[Ticket]) -> dict[str, tuple[list, Result]]:
    """{rid: (TokenEvents, Result)} once all are done; raises ClientGone (after cancelling) if the client leaves."""
    out: dict[str, tuple[list, Result]] = {t.rid: ([], None) for t in tickets}

    async def collect():
        async for rid, item in items(loop, tickets):
            if isinstance(item, Result):
                out[rid] = (out[rid][0], item)
            else:
                out[rid][0].extend(item)

    work = asyncio.ensure_future(collect())
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            work.result()
            return out
        raise ClientGone()
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            try:
                await work
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - its finally cancelled the requests
                pass
