"""The OpenAI request fields every API shares, checked for type here (ranges are the engine's own validation,
requests.validate, which names the field) and turned into engine SamplingParams.

Extensions accepted as vLLM does: top_k, min_p, repetition_penalty (top level or in extra_body)."""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from gptoss_jax.engine import SamplingParams
from gptoss_jax.server.errors import bad_request

MAX_N = 64
MAX_STOPS = 4


def number(body: Mapping[str, Any], name: str, default=None):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise bad_request(f"{name} must be a number, got {v!r}", name)
    return v


def integer(body: Mapping[str, Any], name: str, default=None, lo: int | None = None):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise bad_request(f"{name} must be an integer, got {v!r}", name)
    if lo is not None and v < lo:
        raise bad_request(f"{name} must be >= {lo}, got {v}", name)
    return int(v)


def boolean(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad_request(f"{name} must be true or false, got {v!r}", name)
    return v


def stops(body: Mapping[str, Any]) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise bad_request(f"stop must be a non-empty string or a list of them, got {v!r}", "stop")
    if len(items) > MAX_STOPS:
        raise bad_request(f"stop takes at most {MAX_STOPS} sequences, got {len(items)}", "stop")
    return tuple(items)


def count(body: Mapping[str, Any]) -> int:
    n = integer(body, "n", 1, lo=1)
    if n > MAX_N:
        raise bad_request(f"n must be at most {MAX_N}, got {n}", "n")
    return n


def sampling(body: Mapping[str, Any], *, max_tokens: int | None, logprobs: bool, top_logprobs: int
             ) -> SamplingParams:
    """SamplingParams from the shared fields (the API passes its own max-tokens and logprobs fields)."""
    extra = body.get("extra_body") if isinstance(body.get("extra_body"), Mapping) else {}
    merged = {**extra, **body}
    bias = body.get("logit_bias")
    if bias is not None and not isinstance(bias, Mapping):
        raise bad_request(f"logit_bias must be an object {{token id: bias}}, got {bias!r}", "logit_bias")
    return SamplingParams(
        temperature=number(merged, "temperature", 1.0), top_p=number(merged, "top_p", 1.0),
        top_k=integer(merged, "top_k", 0), min_p=number(merged, "min_p", 0.0),
        presence_penalty=number(merged, "presence_penalty", 0.0),
        frequency_penalty=number(merged, "frequency_penalty", 0.0),
        repetition_penalty=number(merged, "repetition_penalty", 1.0),
        logit_bias=dict(bias) if bias else None, seed=integer(merged, "seed", None, lo=0), stop=stops(body),
        max_tokens=max_tokens, logprobs=logprobs, top_logprobs=top_logprobs)


def with_seed(base: SamplingParams, i: int) -> SamplingParams:
    """Choice i of n: seed + i when a seed is given (as `gptoss generate --num_samples`)."""
    import dataclasses
    return base if base.seed is None or i == 0 else dataclasses.replace(base, seed=base.seed + i)
