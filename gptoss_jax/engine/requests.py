"""What a caller hands the engine and what it gets back: SamplingParams, Request, TokenEvent, Result.

Validation happens here, when a request enters (`validate`): a bad value raises one RequestError naming the field
and what was expected, and never reaches the device. Definitions of the sampling controls (applied in this order,
see sampling.py):

  repetition_penalty  HF / CTRL: for every token already in the prompt or the output, a positive logit is divided
                      by the penalty and a negative one multiplied by it (1.0 = off; > 1 discourages repeats).
  frequency_penalty   OpenAI: logit -= count_in_output * frequency_penalty   (range [-2, 2])
  presence_penalty    OpenAI: logit -= (count_in_output > 0) * presence_penalty   (range [-2, 2])
  logit_bias          OpenAI: {token id: bias in [-100, 100]} added to the logits (-100 bans a token in practice)
  constraint          structured outputs: tokens outside the constraint's bitmask get -inf
  temperature         logits / temperature; 0 = greedy (argmax of the adjusted logits, no filtering)
  top_k               keep the k most likely tokens (0 = off)
  top_p               nucleus: keep the smallest set of most likely tokens whose probability reaches top_p (1 = off)
  min_p               keep tokens whose probability is at least min_p times the most likely one's (0 = off)
  seed                the sampling noise of the n-th generated token depends only on (seed, n): the same seed gives
                      the same tokens whatever else is in the batch; without one, the engine draws a seed (reported)
  max_tokens          tokens to generate at most. None: the model's default (`default_max_tokens`), or what the
                      context leaves after the prompt if that is less. A value above what the context leaves
                      (max_len + 1 - prompt tokens: the last token is never fed back) is refused, never cut silently.
Ties at a top_k / top_p threshold keep every tied token. Logprobs are those of the model's own distribution
(log-softmax of the raw logits, before penalties, bias, masks and temperature), as vLLM reports them by default.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from typing import Any, Callable, Sequence

import numpy as np

from gptoss_jax.errors import InputError

class RequestError(InputError):
    """A request the engine cannot take; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict | None = None
    seed: int | None = None
    stop_token_ids: Sequence[int] = ()
    stop: Sequence[str] = ()
    max_tokens: int | None = None       # None: the model's default_max_tokens, within the context
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def penalizes(self) -> bool:
        """Whether a penalty changes this request's logits (a step computes penalties only then)."""
        return self.presence_penalty != 0 or self.frequency_penalty != 0 or self.repetition_penalty != 1


@dataclasses.dataclass
class Request:
    """prompt: token ids. score_from: also report the log-probability of every prompt token from that index on
    (prompt[i] given prompt[:i]; `gptoss score` and the eval harness's log-likelihood). constraint: an object with
    fill_bitmask(out int32[ceil(V/32)]), advance(token_id), is_finished() (e.g. an llguidance matcher wrapper), and
    optionally capped(max_tokens) -> constraint, which the engine calls with the request's limit in its context."""
    prompt: Sequence[int]
    sampling: SamplingParams = dataclasses.field(default_factory=SamplingParams)
    constraint: Any = None
    score_from: int | None = None
    id: str | None = None


@dataclasses.dataclass
class TokenEvent:
    """One generated token of one request, in order; `finish_reason` is set on the request's last event (which
    may carry no token: token_id -1, e.g. when a stop string or an error ends it)."""
    request_id: str
    index: int
    token_id: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None


@dataclasses.dataclass
class Result:
    id: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int]
    finish_reason: str                       # stop | length | error | cancelled
    stop_reason: int | str | None = None     # the stop token id or stop string that ended it
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
    prompt_logprobs: list[float] | None = None   # log p(prompt[i] | prompt[:i]) for i >= score_from
    prompt_greedy: list[bool] | None = None      # whether prompt[i] was the argmax there
    text: str | None = None
    error: str | None = None
    seed: int | None = None
    cached_tokens: int = 0                   # prompt tokens reused from the engine's prefix cache
    timings: dict = dataclasses.field(default_factory=dict)  # queued_s, ttft_s, prefill_s, decode_s, total_s


_ids = itertools.count()


def next_request_id() -> str:
    return f"req-{next(_ids)}"


def _real(field: str, value, lo: float | None = None, hi: float | None = None, *, lo_open=False,
          what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise RequestError(field, f"expected a finite number{what}, got {value!r}")
    v = float(value)
    if lo is not None and (v <= lo if lo_open else v < lo) or hi is not None and v > hi:
        bounds = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else f'{hi}]'}"
        raise RequestError(field, f"expected a value in {bounds}{what}, got {value!r}")
    return v


def _int(field: str, value, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(field, f"expected an integer{what}, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise RequestError(field, f"expected an integer in [{lo}, {'inf)' if hi is None else f'{hi}]'}{what}, got {v}")
    return v


def check_token_ids(field: str, values, vocab_size: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise RequestError(field, f"expected a sequence of token ids, got {type(values).__name__}")
    out = []
    for i, t in enumerate(np.asarray(values).reshape(-1).tolist() if isinstance(values, np.ndarray) else values):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise RequestError(field, f"token {i} is {t!r}, expected an integer id")
        if not 0 <= int(t) < vocab_size:
            raise RequestError(field, f"token id {int(t)} at index {i} is outside the vocabulary [0, {vocab_size})")
        out.append(int(t))
    return out


def _bias_key(k) -> int | None:
    if isinstance(k, bool):
        return None
    if isinstance(k, numbers.Integral):
        return int(k)
    if isinstance(k, str):
        try:
            return int(k.strip())
        except ValueError:
            return None
    return None


# A request that sets no max_tokens gets at most this many: what OpenAI's gpt-oss eval harness (gpt_oss/evals) gives
# every request; a released model stops long before, at the end of its answer.
DEFAULT_MAX_TOKENS = 32768
# Models this small are the demo and test presets, whose random weights never emit a stop token: without a limit
# they would write gibberish to the end of the context (minutes on a CPU) and show nothing more.
SMALL_MODEL_PARAMS = 10 ** 9
SMALL_MODEL_MAX_TOKENS = 64


def default_max_tokens(cfg) -> int:
    """The completion limit of a request that sets none, for the model `cfg` describes: DEFAULT_MAX_TOKENS for
    models of gpt-oss size, SMALL_MODEL_MAX_TOKENS below SMALL_MODEL_PARAMS parameters (always capped further at
    what the context leaves after the prompt)."""
    from gptoss_jax.params import count_params

    return SMALL_MODEL_MAX_TOKENS if count_params(cfg) < SMALL_MODEL_PARAMS else DEFAULT_MAX_TOKENS


@dataclasses.dataclass
class Limits:
    """What an engine can take: its vocabulary, context per slot, the static sizes of its compiled steps, and the
    completion limit of a request that sets none."""
    vocab_size: int
    max_len: int
    max_top_logprobs: int
    max_stop_token_ids: int
    has_detokenizer: bool
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    def room(self, prompt_tokens: int) -> int:
        """Tokens a request with this many prompt tokens can generate: the context holds the prompt and every
        generated token but the last (which is never fed back)."""
        return self.max_len + 1 - prompt_tokens


def resolve_max_tokens(max_tokens, prompt_tokens: int, limits: Limits) -> int:
    """The completion limit a request runs with: its own (refused when above what the context leaves after the
    prompt), or the default within the context."""
    room = limits.room(prompt_tokens)
    if max_tokens is None:
        return min(limits.default_max_tokens, room)
    value = _int("max_tokens", max_tokens, 0, None)
    if value > room:
        raise RequestError("max_tokens", f"{value} tokens do not fit: the prompt's {prompt_tokens} tokens leave room "
                                         f"for at most {room} in the engine's context of {limits.max_len} tokens "
                                         f"(max_len); expected max_tokens <= {room}, or a larger max_len")
    return value


def validate(req: Request, limits: Limits) -> tuple[Request, list[int], dict[int, float]]:
    """-> (request with a normalized SamplingParams, prompt ids, logit bias {id: value}); raises RequestError."""
    if not isinstance(req, Request):
        raise RequestError("request", f"expected an engine Request, got {type(req).__name__}")
    prompt = check_token_ids("prompt", req.prompt, limits.vocab_size)
    if not prompt:
        raise RequestError("prompt", "empty prompt; expected at least one token id")
    if len(prompt) > limits.max_len:
        raise RequestError("prompt", f"{len(prompt)} tokens do not fit the engine's context of {limits.max_len} "
                                     f"tokens (max_len)")
    s = req.sampling
    if not isinstance(s, SamplingParams):
        raise RequestError("sampling", f"expected SamplingParams, got {type(s).__name__}")
    temperature = _real("temperature", s.temperature, 0.0, None, what=" (0 = greedy)")
    top_p = _real("top_p", s.top_p, 0.0, 1.0, lo_open=True)
    top_k = _int("top_k", s.top_k, 0, None, " (0 = off)")
    min_p = _real("min_p", s.min_p, 0.0, 1.0)
    presence = _real("presence_penalty", s.presence_penalty, -2.0, 2.0)
    frequency = _real("frequency_penalty", s.frequency_penalty, -2.0, 2.0)
    repetition = _real("repetition_penalty", s.repetition_penalty, 0.0, None, lo_open=True, what=" (1 = off)")
    bias: dict[int, float] = {}
    if s.logit_bias is not None:
        if not isinstance(s.logit_bias, dict):
            raise RequestError("logit_bias", f"expected a dict {{token id: bias}}, got {type(s.logit_bias).__name__}")
        for k, v in s.logit_bias.items():
            tid = _bias_key(k)
            if tid is None:
                raise RequestError("logit_bias", f"key {k!r} is not a token id (expected an int or a numeric string)")
            if not 0 <= tid < limits.vocab_size:
                raise RequestError("logit_bias", f"key {tid} is outside the vocabulary [0, {limits.vocab_size})")
            bias[tid] = _real(f"logit_bias[{tid}]", v, -100.0, 100.0)
    seed = None if s.seed is None else _int("seed", s.seed, 0, 2 ** 64 - 1)
    stop_ids = check_token_ids("stop_token_ids", list(s.stop_token_ids), limits.vocab_size)
    if len(set(stop_ids)) > limits.max_stop_token_ids:
        raise RequestError("stop_token_ids", f"{len(set(stop_ids))} stop tokens; this engine takes at most "
                                             f"{limits.max_stop_token_ids} (max_stop_token_ids)")
    stop = [s.stop] if isinstance(s.stop, str) else list(s.stop)
    for x in stop:
        if not isinstance(x, str) or not x:
            raise RequestError("stop", f"expected non-empty strings, got {x!r}")
    if stop and not limits.has_detokenizer:
        raise RequestError("stop", "stop strings need a detokenizer: create the Engine with detokenize=...")
    max_tokens = resolve_max_tokens(s.max_tokens, len(prompt), limits)
    if not isinstance(s.logprobs, bool):
        raise RequestError("logprobs", f"expected True or False, got {s.logprobs!r}")
    top_lp = _int("top_logprobs", s.top_logprobs, 0, limits.max_top_logprobs,
                  f" (this engine returns at most {limits.max_top_logprobs}: max_top_logprobs)")
    if req.score_from is not None:
        _int("score_from", req.score_from, 1, len(prompt), " (an index into the prompt)")
    if max_tokens == 0 and req.score_from is None:
        raise RequestError("max_tokens", "0 generates nothing; expected >= 1 (or set score_from to score the prompt)")
    c = req.constraint
    if c is not None:
        missing = [m for m in ("fill_bitmask", "advance", "is_finished") if not callable(getattr(c, m, None))]
        if missing:
            raise RequestError("constraint", f"{type(c).__name__} lacks {missing}; expected fill_bitmask(out), "
                                             f"advance(token_id), is_finished()")
    norm = dataclasses.replace(
        s, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, presence_penalty=presence,
        frequency_penalty=frequency, repetition_penalty=repetition, logit_bias=bias or None, seed=seed,
        stop_token_ids=tuple(dict.fromkeys(stop_ids)), stop=tuple(stop), max_tokens=max_tokens,
        top_logprobs=top_lp)
    return dataclasses.replace(req, sampling=norm, id=req.id or next_request_id()), prompt, bias


def seed_key_data(seed: int) -> np.ndarray:
    """uint32[2] threefry key data of `seed` (for seeds < 2**32 exactly what jax.random.PRNGKey builds)."""
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], np.uint32)


Detokenizer = Callable[[Sequence[int]], str]
