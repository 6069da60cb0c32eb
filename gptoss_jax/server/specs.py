"""What enters the engine, as JSON that any process can turn into the same engine Request.

A multi-process job runs one engine across every process: process 0 parses HTTP, the others must submit identical
requests in the same round (engine_loop.py sends them these specs). Every process, process 0 included, builds its
Request with `build`, so there is one path. A chat spec holds the OpenAI-level chat (rendered and constrained by
gptoss_jax.chat.to_engine_request on each process, with the date fixed by process 0); a tokens spec holds prompt ids.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Mapping

from gptoss_jax import chat as chat_lib
from gptoss_jax.engine import Request, SamplingParams

CHAT_FIELDS = ("messages", "tools", "reasoning_effort", "tool_choice", "response_format")


def sampling_json(s: SamplingParams) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()} if s.logit_bias else None
    d["stop"], d["stop_token_ids"] = list(s.stop), list(s.stop_token_ids)
    return d


def chat_spec(rid: str, chat: Mapping[str, Any], sampling: SamplingParams) -> dict[str, Any]:
    fields = {k: chat[k] for k in CHAT_FIELDS if chat.get(k) is not None}
    fields["current_date"] = chat.get("current_date") or datetime.date.today().isoformat()
    return {"kind": "chat", "id": rid, "chat": fields, "sampling": sampling_json(sampling)}


def tokens_spec(rid: str, prompt: list[int], sampling: SamplingParams) -> dict[str, Any]:
    return {"kind": "tokens", "id": rid, "prompt": list(prompt), "sampling": sampling_json(sampling)}


def build(spec: Mapping[str, Any], *, max_len: int) -> Request:
    """The engine Request of a spec. Raises ChatInputError / ConstraintError for chats harmony cannot take (the
    engine's RequestError comes at validation)."""
    s = dict(spec["sampling"])
    s["stop"], s["stop_token_ids"] = tuple(s["stop"]), tuple(s["stop_token_ids"])
    sampling = SamplingParams(**s)
    if spec["kind"] == "tokens":
        return Request(list(spec["prompt"]), sampling, id=spec["id"])
    req = chat_lib.ChatRequest(sampling=sampling, id=spec["id"], **spec["chat"])
    return chat_lib.to_engine_request(req, max_len=max_len)
