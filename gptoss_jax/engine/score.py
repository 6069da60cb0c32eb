"""Log-likelihood of continuations given prompts (the eval harness's multiple-choice scoring, `gptoss score`).

Each (prompt, continuation) pair runs as a prefill-only request through the engine's chunked prefill, which
returns log p(token | everything before it) for the continuation's tokens: long inputs are scored in chunks with the
KV cache, never as one [T, vocab] logits array.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from gptoss_jax.engine.requests import (Limits, Request, RequestError, SamplingParams, check_token_ids,
                                        validate)
from gptoss_jax.engine.scheduler import Engine


@dataclasses.dataclass
class Score:
    logprob: float                  # sum of the continuation tokens' log-probabilities
    token_logprobs: list[float]     # one a continuation token
    greedy: bool                    # every continuation token was the most likely one
    num_tokens: int
    error: str | None = None


def score_requests(prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                   limits: Limits, names: Sequence[str] | None = None) -> list[Request]:
    """The prefill-only requests that score each continuation after its prompt, checked against an engine's
    limits; a RequestError names the pair (names[i], default 'item i') and whether its prompt or its continuation
    is at fault."""
    if len(prompts) != len(continuations):
        raise RequestError("continuations", f"{len(continuations)} continuations for {len(prompts)} prompts; "
                                            f"expected one each")
    reqs = []
    for i, (p, c) in enumerate(zip(prompts, continuations)):
        name = names[i] if names is not None else f"item {i}"
        if len(p) == 0:
            raise RequestError(f"{name} prompt", "empty; scoring needs at least one token of context")
        if len(c) == 0:
            raise RequestError(f"{name} continuation", "empty; expected at least one token")
        p = check_token_ids(f"{name} prompt", p, limits.vocab_size)
        c = check_token_ids(f"{name} continuation", c, limits.vocab_size)
        if len(p) + len(c) > limits.max_len:
            raise RequestError(name, f"prompt and continuation hold {len(p) + len(c)} tokens; the engine's "
                                     f"context is {limits.max_len} tokens (max_len)")
        req = Request(p + c, SamplingParams(temperature=0.0, max_tokens=0), score_from=len(p))
        validate(req, limits)
        reqs.append(req)
    return reqs


def score(engine: Engine, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
          progress: bool = False) -> list[Score]:
    """Score each continuation after its prompt (token ids). Raises RequestError for input it cannot take (empty
    prompt or continuation, unknown ids, too long), before running any of it; a request that fails while running
    gets Score.error."""
    reqs = score_requests(prompts, continuations, engine.limits)
    out = []
    for r, res in zip(reqs, engine.generate(reqs, progress=progress)):
        lps = res.prompt_logprobs or []
        if res.finish_reason == "error":
            out.append(Score(float("nan"), lps, False, len(r.prompt) - r.score_from, res.error))
        else:
            out.append(Score(float(sum(lps)), lps, all(res.prompt_greedy or []), len(lps)))
    return out
