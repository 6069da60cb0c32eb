"""/v1/responses: the Responses API over the same path as chat (input items -> chat messages -> gptoss_jax.chat).

Input: a string, or items: messages (role + text content), `function_call` items (an earlier turn's calls) and
`function_call_output` items (their results), `reasoning` items; `instructions`; function `tools` (flat form);
`tool_choice`; `reasoning: {effort}`; `text.format` (json_object / json_schema: constrained decoding). Output items:
`reasoning` (the chain of thought, never mixed into the answer), `message` (output_text), `function_call`.
Stateless: previous_response_id is refused (send the earlier items as input).
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Mapping

from gptoss_jax import chat as chat_lib
from gptoss_jax.engine import Result
from gptoss_jax.server import params, running
from gptoss_jax.server.chat_api import check_failed, prepare
from gptoss_jax.server.errors import bad_request
from gptoss_jax.server.harmony_stream import HarmonyStream


def _text_of(content) -> Any:
    return content if isinstance(content, (str, list)) or content is None else str(content)


def messages_from_input(inp, instructions) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if instructions is not None:
        if not isinstance(instructions, str):
            raise bad_request("instructions must be a string", "instructions")
        out.append({"role": "system", "content": instructions})
    if isinstance(inp, str):
        return out + [{"role": "user", "content": inp}]
    if not isinstance(inp, list) or not inp:
        raise bad_request("input must be a string or a non-empty list of input items", "input")
    for i, item in enumerate(inp):
        if not isinstance(item, Mapping):
            raise bad_request(f"input[{i}] must be an object", "input")
        kind = item.get("type", "message")
        if kind == "message":
            out.append({"role": item.get("role"), "content": _text_of(item.get("content"))})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")}}
            if out and out[-1]["role"] == "assistant" and out[-1].get("tool_calls") is not None:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, (str, list)) else json.dumps(output)})
        elif kind == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            text = "".join(p.get("text", "") for p in parts if isinstance(p, Mapping))
            out.append({"role": "assistant", "content": None, "reasoning_content": text})
        else:
            raise bad_request(f"input[{i}] has type {kind!r}; expected message, function_call, "
                              f"function_call_output or reasoning", "input")
    return out


def _format(body: Mapping[str, Any]):
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name") or "response",
                                                       "schema": fmt.get("schema"), "strict": fmt.get("strict")}}
    raise bad_request(f"text.format type {fmt.get('type')!r} is not supported; expected text, json_object or "
                      f"json_schema", "text.format")


def parse(ctx, body: Mapping[str, Any]):
    if body.get("previous_response_id"):
        raise bad_request("previous_response_id is not supported: this server keeps no responses; send the earlier "
                          "output items as input", "previous_response_id")
    tools = body.get("tools") or None
    for i, t in enumerate(tools or []):
        if not isinstance(t, Mapping) or t.get("type", "function") != "function":
            raise bad_request(f"tools[{i}]: only function tools are supported", "tools")
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), Mapping) else {}
    sampling = params.sampling({k: v for k, v in body.items() if k != "stop"},
                               max_tokens=params.integer(body, "max_output_tokens", None, lo=1), logprobs=False,
                               top_logprobs=0)
    chat = {"messages": messages_from_input(body.get("input"), body.get("instructions")), "tools": tools,
            "response_format": _format(body), "reasoning_effort": reasoning.get("effort") or "medium"}
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = body["tool_choice"]
    return prepare(ctx, chat, sampling, 1, f"resp_{uuid.uuid4().hex[:24]}")


def _envelope(ctx, body, rid: str, created: int, status: str, output: list, usage=None, incomplete=None):
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), Mapping) else {}
    return {"id": rid, "object": "response", "created_at": created, "status": status, "model": ctx.model_name,
            "output": output, "usage": usage, "error": None, "incomplete_details": incomplete,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "parallel_tool_calls": True, "temperature": body.get("temperature", 1.0), "top_p": body.get("top_p", 1.0),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "text": body.get("text") or {"format": {"type": "text"}},
            "reasoning": {"effort": reasoning.get("effort") or "medium", "summary": None}, "metadata": {}}


def _usage(r: Result, reasoning_tokens: int) -> dict[str, Any]:
    return {"input_tokens": r.prompt_tokens, "input_tokens_details": {"cached_tokens": r.cached_tokens},
            "output_tokens": r.completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": r.prompt_tokens + r.completion_tokens}


def _item(kind: str, key: str, text: str = "", name: str | None = None, status: str = "completed"):
    if kind == "reasoning":
        return {"type": "reasoning", "id": f"rs_{key}", "summary": [], "status": status,
                "content": [{"type": "reasoning_text", "text": text}]}
    if kind == "content":
        return {"type": "message", "id": f"msg_{key}", "role": "assistant", "status": status,
                "content": [] if status != "completed" else [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    return {"type": "function_call", "id": f"fc_{key}", "call_id": f"call_{key}", "name": name, "arguments": text,
            "status": status}


async def create(ctx, request, body: Mapping[str, Any]):
    items = parse(ctx, body)
    rid = items[0][0]["id"].rsplit("-", 1)[0]
    tickets = ctx.loop.submit(items, ctx.aloop())
    created = int(time.time())
    if params.boolean(body, "stream", False):
        return ctx.sse(_stream(ctx, body, tickets, rid, created), named=True)
    done = await running.results(request, ctx.loop, tickets)
    [(_, r)] = done.values()
    check_failed([r])
    parsed = chat_lib.from_engine_result(r)
    tracker = HarmonyStream()
    for t in r.token_ids:
        tracker.feed(t)
    tracker.finish()
    key = uuid.uuid4().hex[:20]
    output = []
    if parsed.reasoning is not None:
        output.append(_item("reasoning", key, parsed.reasoning))
    if parsed.content is not None:
        output.append(_item("content", key, parsed.content))
    for i, c in enumerate(parsed.tool_calls):
        output.append({**_item("tool_call", f"{key}{i}", c.arguments, c.name), "call_id": c.id})
    status = "incomplete" if parsed.finish_reason == "length" else "completed"
    return _envelope(ctx, body, rid, created, status, output, _usage(r, tracker.reasoning_tokens),
                     {"reason": "max_output_tokens"} if status == "incomplete" else None)


async def _stream(ctx, body, tickets, rid: str, created: int):
    """Named SSE events (event: TYPE, data: JSON with type and sequence_number), as OpenAI streams a response."""
    seq = iter(range(1 << 30))
    tracker, output, key = HarmonyStream(), [], uuid.uuid4().hex[:20]
    cur: dict[str, Any] | None = None

    def ev(kind: str, **data):
        return kind, json.dumps({"type": kind, "sequence_number": next(seq), **data})

    def close():
        nonlocal cur
        if cur is None:
            return
        i, item, text = cur["index"], cur["item"], cur["text"]
        if item["type"] == "reasoning":
            yield ev("response.reasoning_text.done", item_id=item["id"], output_index=i, content_index=0, text=text)
        elif item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            yield ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=text,
                     logprobs=[])
            yield ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0, part=part)
        else:
            yield ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=text,
                     name=item["name"])
        done = _item({"reasoning": "reasoning", "message": "content"}.get(item["type"], "tool_call"),
                     cur["key"], text, item.get("name"))
        output.append(done)
        yield ev("response.output_item.done", output_index=i, item=done)
        cur = None

    def pieces(ps):
        nonlocal cur
        for p in ps:
            if cur is None or p.kind != cur["kind"] or (p.kind == "tool_call" and p.name is not None):
                yield from close()
                k = f"{key}{len(output)}"
                item = _item(p.kind, k, name=p.name, status="in_progress")
                cur = {"kind": p.kind, "index": len(output), "item": item, "text": "", "key": k}
                yield ev("response.output_item.added", output_index=cur["index"], item=item)
                if p.kind == "content":
                    yield ev("response.content_part.added", item_id=item["id"], output_index=cur["index"],
                             content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                                    "logprobs": []})
            if not p.text:
                continue
            cur["text"] += p.text
            i, item_id = cur["index"], cur["item"]["id"]
            if p.kind == "reasoning":
                yield ev("response.reasoning_text.delta", item_id=item_id, output_index=i, content_index=0,
                         delta=p.text)
            elif p.kind == "content":
                yield ev("response.output_text.delta", item_id=item_id, output_index=i, content_index=0,
                         delta=p.text, logprobs=[])
            else:
                yield ev("response.function_call_arguments.delta", item_id=item_id, output_index=i, delta=p.text)

    yield ev("response.created", response=_envelope(ctx, body, rid, created, "in_progress", []))
    yield ev("response.in_progress", response=_envelope(ctx, body, rid, created, "in_progress", []))
    async for _, item in running.items(ctx.loop, tickets):
        if isinstance(item, Result):
            if item.finish_reason == "error":
                yield ev("error", code="server_error", message=f"generation failed: {item.error}", param=None)
                return
            for e in pieces(tracker.finish()):
                yield e
            for e in close():
                yield e
            status = "incomplete" if chat_lib.from_engine_result(item).finish_reason == "length" else "completed"
            yield ev(f"response.{status}", response=_envelope(
                ctx, body, rid, created, status, output, _usage(item, tracker.reasoning_tokens),
                {"reason": "max_output_tokens"} if status == "incomplete" else None))
            return
        for tokev in item:
            if tokev.token_id >= 0:
                for e in pieces(tracker.feed(tokev.token_id)):
                    yield e
