"""The inference engine: KV-cached, chunked prefill and multi-step decode, per-request sampling, continuous
batching over fixed slots, structured-output token masks, scoring.

    from gptoss_jax.engine import Engine, Request, SamplingParams
    engine = Engine(model, num_slots=8, max_len=8192)
    [res] = engine.generate([Request(prompt_ids, SamplingParams(temperature=0.7, max_tokens=256, seed=1))])

Modules: requests.py (what goes in and out, validation, sampling definitions), buckets.py (compiled shapes),
slots.py (per-slot device state), sampling.py (the jitted sampler), steps.py (jitted prefill / decode), scheduler.py
(Engine), score.py (log-likelihoods), memory.py (bytes per token, sizing), compilation.py (persistent compilation
cache, compile counter), flags.py (the CLI's engine flags).
"""
from gptoss_jax.engine.buckets import Buckets
from gptoss_jax.engine.compilation import COUNTER, enable_persistent_cache
from gptoss_jax.engine.requests import Request, RequestError, Result, SamplingParams, TokenEvent
from gptoss_jax.engine.scheduler import Engine, EngineStats
from gptoss_jax.engine.score import Score, score

__all__ = ["Buckets", "COUNTER", "Engine", "EngineStats", "Request", "RequestError", "Result", "SamplingParams",
           "Score", "TokenEvent", "enable_persistent_cache", "score"]
