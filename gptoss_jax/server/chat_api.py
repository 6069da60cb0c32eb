"""/v1/chat/completions: OpenAI chat in, harmony through gptoss_jax.chat, OpenAI chat out (whole or SSE chunks).

Reasoning: `reasoning_effort` (also `reasoning: {effort}` and `chat_template_kwargs.reasoning_effort`, as other
servers take it); the chain of thought comes back as `message.reasoning_content` (delta.reasoning_content when
streaming), never in `content`. Tools: `tools` + `tool_choice` (auto / none / required / a named function: the last
three enforced by constrained decoding); tool results go in the next turn as `tool` messages. `response_format`
json_object / json_schema: constrained decoding of the final answer. logprobs are those of the answer's tokens.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Mapping

from gptoss_jax import chat as chat_lib
from gptoss_jax.engine import Result
from gptoss_jax.server import params, running, specs
from gptoss_jax.server.errors import ApiError, bad_request, from_input_error
from gptoss_jax.server.harmony_stream import HarmonyStream, StopFilter, cut_at_stop


def effort(body: Mapping[str, Any]) -> Any:
    for v in (body.get("reasoning_effort"), (body.get("reasoning") or {}).get("effort")
              if isinstance(body.get("reasoning"), Mapping) else None,
              (body.get("chat_template_kwargs") or {}).get("reasoning_effort")
              if isinstance(body.get("chat_template_kwargs"), Mapping) else None):
        if v is not None:
            return v
    return "medium"


def logprob_fields(body: Mapping[str, Any], max_top: int) -> tuple[bool, int]:
    want = params.boolean(body, "logprobs", False)
    top = params.integer(body, "top_logprobs", 0, lo=0)
    if top and not want:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    if top > max_top:
        raise bad_request(f"top_logprobs must be at most {max_top} (--max_top_logprobs), got {top}", "top_logprobs")
    return want, top


def prepare(ctx, chat: Mapping[str, Any], sampling, n: int, prefix: str):
    """(spec, Request) for each of n choices, built and validated now (400 on bad input)."""
    out = []
    for i in range(n):
        spec = specs.chat_spec(f"{prefix}-{i}", chat, params.with_seed(sampling, i))
        try:
            out.append((spec, ctx.loop.prepare(spec)))
        except ValueError as e:  # RequestError, ChatInputError, ConstraintError: each names what is wrong
            raise from_input_error(e, "messages") from None
    return out


def parse(ctx, body: Mapping[str, Any]):
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of chat messages", "messages")
    max_tokens = params.integer(body, "max_completion_tokens", None, lo=1)
    if max_tokens is None:
        max_tokens = params.integer(body, "max_tokens", None, lo=1)
    want_lp, top = logprob_fields(body, ctx.max_top_logprobs)
    sampling = params.sampling(body, max_tokens=max_tokens, logprobs=want_lp, top_logprobs=top)
    chat = {"messages": messages, "tools": body.get("tools") or None, "tool_choice": body.get("tool_choice"),
            "response_format": body.get("response_format"), "reasoning_effort": effort(body)}
    if chat["tool_choice"] is None:
        chat.pop("tool_choice")
    return prepare(ctx, chat, sampling, params.count(body), f"chatcmpl-{uuid.uuid4().hex[:24]}"), sampling


def logprob_entry(enc, token: int, lp: float, top) -> dict[str, Any]:
    def one(t, v):
        raw = enc.decode_single_token_bytes(t)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": v, "bytes": list(raw)}
    entry = one(token, lp)
    entry["top_logprobs"] = [one(t, v) for t, v in (top or [])]
    return entry


def usage(results: list[Result], reasoning_tokens: int) -> dict[str, Any]:
    p = sum(r.prompt_tokens for r in results[:1])           # n choices share one prompt
    c = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": sum(r.cached_tokens for r in results[:1])},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}


def check_failed(results: list[Result]) -> None:
    for r in results:
        if r.finish_reason == "error":
            raise ApiError(500, f"generation failed: {r.error}")


def finish_reason(reason: str, result: Result) -> str:
    if isinstance(result.stop_reason, str) and result.finish_reason == "stop":
        return "stop"
    return {"cancelled": "stop"}.get(reason, reason)


async def complete(ctx, request, body: Mapping[str, Any]):
    items, sampling = parse(ctx, body)
    stops = sampling.stop
    tickets = ctx.loop.submit(items, ctx.aloop())
    if params.boolean(body, "stream", False):
        opts = body.get("stream_options") if isinstance(body.get("stream_options"), Mapping) else {}
        return ctx.sse(stream_chunks(ctx, tickets, items[0][0]["id"].rsplit("-", 1)[0], stops,
                                     bool(opts.get("include_usage"))))
    done = await running.results(request, ctx.loop, tickets)
    results = [done[t.rid][1] for t in tickets]
    check_failed(results)
    choices, reasoning_tokens = [], 0
    for i, (t, r) in enumerate(zip(tickets, results)):
        parsed = chat_lib.from_engine_result(r)
        tracker = HarmonyStream()
        for tok in r.token_ids:
            tracker.feed(tok)
        tracker.finish()
        reasoning_tokens += tracker.reasoning_tokens
        msg = parsed.to_message()
        msg["content"] = cut_at_stop(msg.get("content"), stops)
        if "reasoning_content" in msg:
            msg["reasoning_content"] = cut_at_stop(msg["reasoning_content"], stops)
        lp = None
        if sampling.logprobs:
            lp = {"content": [logprob_entry(ctx.enc, r.token_ids[k], r.logprobs[k],
                                            r.top_logprobs[k] if r.top_logprobs else None)
                              for k in tracker.content_tokens]}
        choices.append({"index": i, "message": msg, "logprobs": lp, "finish_reason": finish_reason(
            parsed.finish_reason, r)})
    return {"id": tickets[0].rid.rsplit("-", 1)[0], "object": "chat.completion", "created": int(time.time()),
            "model": ctx.model_name, "system_fingerprint": ctx.fingerprint, "choices": choices,
            "usage": usage(results, reasoning_tokens)}


async def stream_chunks(ctx, tickets, cid: str, stops, include_usage: bool):
    """SSE data of a streamed chat completion: one chunk per piece of reasoning, answer or tool call, a last chunk
    per choice with its finish reason, then (include_usage) one with the usage, then [DONE]."""
    index = {t.rid: i for i, t in enumerate(tickets)}
    trackers = {t.rid: HarmonyStream() for t in tickets}
    filters = {t.rid: {"content": StopFilter(stops), "reasoning": StopFilter(stops)} for t in tickets}
    calls = {t.rid: {} for t in tickets}
    created = int(time.time())
    results, reasoning = [], 0

    def chunk(rid, delta, finish=None, logprobs=None):
        c = {"index": index[rid], "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": ctx.model_name,
                           "system_fingerprint": ctx.fingerprint, "choices": [c],
                           **({"usage": None} if include_usage else {})})

    def deltas(rid, pieces, lp_of=None):
        for p in pieces:
            if p.kind == "tool_call":
                k = p.call
                if p.name is not None:
                    calls[rid][k] = f"call_{rid.replace('-', '')[-16:]}{k}"
                    yield {"tool_calls": [{"index": k, "id": calls[rid][k], "type": "function",
                                           "function": {"name": p.name, "arguments": ""}}]}, None
                if p.text:
                    yield {"tool_calls": [{"index": k, "function": {"arguments": p.text}}]}, None
            else:
                text = filters[rid][p.kind].feed(p.text)
                if text:
                    key = "content" if p.kind == "content" else "reasoning_content"
                    yield {key: text}, (lp_of if p.kind == "content" else None)

    for t in tickets:
        yield chunk(t.rid, {"role": "assistant", "content": ""})
    async for rid, item in running.items(ctx.loop, tickets):
        tr = trackers[rid]
        if isinstance(item, Result):
            if item.finish_reason == "error":
                yield json.dumps({"error": {"message": f"generation failed: {item.error}", "type": "server_error",
                                            "param": None, "code": None}})
                return
            for delta, _ in deltas(rid, tr.finish()):
                yield chunk(rid, delta)
            for kind, key in (("reasoning", "reasoning_content"), ("content", "content")):
                rest = filters[rid][kind].flush()
                if rest:
                    yield chunk(rid, {key: rest})
            results.append(item)
            reasoning += tr.reasoning_tokens
            parsed = chat_lib.from_engine_result(item)
            yield chunk(rid, {}, finish_reason(parsed.finish_reason, item))
            continue
        for ev in item:
            if ev.token_id < 0:
                continue
            lp = None
            if ev.logprob is not None:
                lp = {"content": [logprob_entry(ctx.enc, ev.token_id, ev.logprob, ev.top_logprobs)]}
            for delta, lp_here in deltas(rid, tr.feed(ev.token_id), lp):
                yield chunk(rid, delta, logprobs=lp_here)
    if include_usage:
        yield json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created, "model": ctx.model_name,
                          "system_fingerprint": ctx.fingerprint, "choices": [], "usage": usage(results, reasoning)})
    yield "[DONE]"
