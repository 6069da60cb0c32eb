"""Log-likelihood of continuations given prompts (the eval harness's multiple-choice scoring, `gptoss score`).

Each (prompt, continuation) pair runs as a prefill-only request through the engine's chunked prefill, which
returns log p(token | everything before it) for the continuation's tokens: long inputs are scored in chunks with the
KV cache, never as one [T, vocab] logits array.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from gptoss_jax.engine.requests import Request, RequestError, SamplingParams, validate
from gptoss_jax.engine.scheduler import Engine


@dataclasses.dataclass
class Score:
    logprob: float                  # sum of the continuation tokens' log-probabilities
    token_logprobs: list[float]     # one a continuation token
    greedy: bool                    # every continuation token was the most likely one
    num_tokens: int
    error: str | None = None


def score(engine: Engine, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], *,
          progress: bool = False) -> list[Score]:
    """Score each continuation after its prompt (token ids). Raises RequestError for input it cannot take (empty
    prompt or continuation, unknown ids, too long); a request that fails while running gets Score.error."""
    if len(prompts) != len(continuations):
        raise RequestError("continuations", f"{len(continuations)} continuations for {len(prompts)} prompts; "
                                            f"expected one each")
    reqs = []
    for i, (p, c) in enumerate(zip(prompts, continuations)):
        if len(p) == 0:
            raise RequestError("prompt", f"item {i}: empty prompt; scoring needs at least one token of context")
        if len(c) == 0:
            raise RequestError("continuation", f"item {i}: empty continuation; expected at least one token")
        reqs.append(Request(list(p) + list(c), SamplingParams(temperature=0.0, max_tokens=0), score_from=len(p)))
    for r in reqs:  # refuse the batch before running any of it
        validate(r, engine.limits)
    out = []
    for r, res in zip(reqs, engine.generate(reqs, progress=progress)):
        lps = res.prompt_logprobs or []
        if res.finish_reason == "error":
            out.append(Score(float("nan"), lps, False, len(r.prompt) - r.score_from, res.error))
        else:
            out.append(Score(float(sum(lps)), lps, all(res.prompt_greedy or []), len(lps)))
    return out
