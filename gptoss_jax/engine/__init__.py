"""The inference engine: KV-cached, chunked prefill and multi-step decode, per-request sampling, continuous
batching over fixed slots, structured-output token masks, scoring.

    from gptoss_jax.engine import Engine, Request, SamplingParams, score
    engine = Engine(model, num_slots=8, max_len=8192, detokenize=enc.decode)
    [res] = engine.generate([Request(prompt_ids, SamplingParams(temperature=0.7, max_tokens=256, seed=1))])
    for ev in engine.stream(Request(prompt_ids)): ...                  # TokenEvents as they come
    rid = engine.submit(req, on_token=cb); while engine.has_work(): engine.step()   # a server's loop
    scores = score(engine, prompts, continuations)                     # log-likelihoods

Design, in one place:
- Cache: one contiguous KVCache [pairs, slots, max_len, kv heads, head dim] for the full layers plus 128-slot rings
  for the sliding layers; not paged (memory.py says why and documents bytes per token).
- Shapes: prefill chunk lengths and key spans (kv_len) come from doubling buckets (buckets.py), so compilations are
  bounded by len(chunks) * len(kv spans) for prefill and len(kv spans) for decode, and a short context never reads
  the whole cache. Prefill runs only the slots being filled: the Transformer gathers those rows of the cache layer by
  layer (`cache_rows`) and writes back only the new entries.
- Decode: up to decode_steps tokens per host round trip in one lax.while_loop, per-slot stop detection on device;
  the cache and slot state are donated to every step.
- Sampling: inside the jitted steps, per-row parameters (requests.py defines each control; sampling.py applies them);
  the noise of token n of a request depends only on (seed, n), so batch composition never changes its tokens.
- Constraints: slots with a constraint step one token per round trip; their next masks are computed on a thread pool
  while the device runs the forward, then a separate sample step applies them (scheduler.py).
- A persistent compilation cache (compilation.py) makes a second start load every executable instead of compiling.

Modules: requests.py (what goes in and out, validation), buckets.py, slots.py (per-slot device state), sampling.py,
steps.py (jitted device steps), scheduler.py (Engine), score.py, memory.py, compilation.py. The CLI's engine and
sampling flags live in gptoss_jax/cli/engine_flags.py.
"""
from gptoss_jax.engine.buckets import Buckets
from gptoss_jax.engine.compilation import COUNTER, enable_persistent_cache
from gptoss_jax.engine.requests import Request, RequestError, Result, SamplingParams, TokenEvent
from gptoss_jax.engine.scheduler import Engine, EngineStats
from gptoss_jax.engine.score import Score, score

__all__ = ["Buckets", "COUNTER", "Engine", "EngineStats", "Request", "RequestError", "Result", "SamplingParams",
           "Score", "TokenEvent", "enable_persistent_cache", "score"]
