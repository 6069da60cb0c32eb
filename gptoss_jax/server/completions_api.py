"""/v1/completions: raw prompts, no harmony: a string (needs the o200k_harmony tokenizer, so a model with its
vocabulary) or token ids, or a list of either (one choice group each). Each choice also carries `token_ids` (as
vLLM's return_token_ids), which is how a model without the harmony vocabulary (e.g. `--model=tiny`) answers."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Mapping

from gptoss_jax.engine import Result
from gptoss_jax.server import params, running, specs
from gptoss_jax.server.errors import bad_request, from_input_error
from gptoss_jax.server.harmony_stream import StopFilter


def _prompts(ctx, prompt) -> list[list[int]]:
    def one(p, where):
        if isinstance(p, str):
            if ctx.enc is None:
                raise bad_request(f"{where}: text needs the o200k_harmony tokenizer, which model {ctx.model_name} "
                                  f"does not use; send token ids", "prompt")
            return ctx.enc.encode(p, allowed_special="all")
        if isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
            return list(p)
        raise bad_request(f"{where}: expected a string or a list of token ids", "prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return [one(p, f"prompt[{i}]") for i, p in enumerate(prompt)]
    return [one(prompt, "prompt")]


def parse(ctx, body: Mapping[str, Any]):
    if body.get("echo"):
        raise bad_request("echo is not supported", "echo")
    if body.get("suffix"):
        raise bad_request("suffix is not supported", "suffix")
    if "prompt" not in body:
        raise bad_request("prompt is required", "prompt")
    top = params.integer(body, "logprobs", None, lo=0)
    if top is not None and top > ctx.max_top_logprobs:
        raise bad_request(f"logprobs must be at most {ctx.max_top_logprobs}, got {top}", "logprobs")
    sampling = params.sampling(body, max_tokens=params.integer(body, "max_tokens", 16, lo=1),
                               logprobs=top is not None, top_logprobs=top or 0)
    n, cid = params.count(body), f"cmpl-{uuid.uuid4().hex[:24]}"
    items = []
    for i, prompt in enumerate(_prompts(ctx, body.get("prompt"))):
        for j in range(n):
            spec = specs.tokens_spec(f"{cid}-{i * n + j}", prompt, params.with_seed(sampling, j))
            try:
                items.append((spec, ctx.loop.prepare(spec)))
            except ValueError as e:
                raise from_input_error(e, "prompt") from None
    return items, sampling, cid


def _text(ctx, ids: list[int]) -> str:
    return ctx.enc.decode(ids) if ctx.enc is not None else ""


def _choice_tokens(r: Result) -> list[int]:
    """Generated ids without a final stop token (as the engine's Result.text)."""
    ids = list(r.token_ids)
    return ids[:-1] if r.finish_reason == "stop" and isinstance(r.stop_reason, int) else ids


def _logprobs(ctx, r: Result, ids: list[int]) -> dict[str, Any] | None:
    if r.logprobs is None:
        return None
    tokens = [_text(ctx, [t]) for t in ids]
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    top = [{_text(ctx, [t]) or str(t): v for t, v in row} for row in r.top_logprobs] if r.top_logprobs else None
    return {"tokens": tokens, "token_logprobs": r.logprobs[:len(ids)], "top_logprobs": top[:len(ids)] if top else None,
            "text_offset": offsets}


def _usage(results: list[Result], groups: int) -> dict[str, Any]:
    per = max(1, len(results) // groups)
    p = sum(r.prompt_tokens for r in results[::per])
    c = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": sum(r.cached_tokens for r in results[::per])}}


async def complete(ctx, request, body: Mapping[str, Any]):
    from gptoss_jax.server.chat_api import check_failed
    items, sampling, cid = parse(ctx, body)
    groups = len(items) // params.count(body)
    tickets = ctx.loop.submit(items, ctx.aloop())
    if params.boolean(body, "stream", False):
        opts = body.get("stream_options") if isinstance(body.get("stream_options"), Mapping) else {}
        return ctx.sse(_stream(ctx, tickets, cid, sampling.stop, bool(opts.get("include_usage")), groups))
    done = await running.results(request, ctx.loop, tickets)
    results = [done[t.rid][1] for t in tickets]
    check_failed(results)
    choices = []
    for i, r in enumerate(results):
        ids = _choice_tokens(r)
        text = r.text if r.text is not None else _text(ctx, ids)
        choices.append({"index": i, "text": text, "logprobs": _logprobs(ctx, r, ids), "token_ids": ids,
                        "finish_reason": "stop" if r.finish_reason == "cancelled" else r.finish_reason})
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": ctx.model_name,
            "system_fingerprint": ctx.fingerprint, "choices": choices, "usage": _usage(results, groups)}


async def _stream(ctx, tickets, cid: str, stops, include_usage: bool, groups: int):
    index = {t.rid: i for i, t in enumerate(tickets)}
    ids = {t.rid: [] for t in tickets}
    shown = {t.rid: "" for t in tickets}
    filters = {t.rid: StopFilter(stops) for t in tickets}
    created, results = int(time.time()), []

    def chunk(rid, text, new_ids, finish=None):
        c = {"index": index[rid], "text": text, "logprobs": None, "finish_reason": finish, "token_ids": new_ids}
        return json.dumps({"id": cid, "object": "text_completion", "created": created, "model": ctx.model_name,
                           "choices": [c], **({"usage": None} if include_usage else {})})

    async for rid, item in running.items(ctx.loop, tickets):
        if isinstance(item, Result):
            if item.finish_reason == "error":
                yield json.dumps({"error": {"message": f"generation failed: {item.error}", "type": "server_error",
                                            "param": None, "code": None}})
                return
            results.append(item)
            yield chunk(rid, filters[rid].flush(), [], "stop" if item.finish_reason == "cancelled"
                        else item.finish_reason)
            continue
        new = [ev.token_id for ev in item if ev.token_id >= 0]
        ids[rid] += new
        text = _text(ctx, ids[rid])
        delta = ""
        if not text.endswith("\ufffd"):
            delta, shown[rid] = text[len(shown[rid]):], text
        yield chunk(rid, filters[rid].feed(delta), new)
    if include_usage:
        yield json.dumps({"id": cid, "object": "text_completion", "created": created, "model": ctx.model_name,
                          "choices": [], "usage": _usage(results, groups)})
    yield "[DONE]"
