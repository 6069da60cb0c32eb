"""gptoss demo: the main job on the embedded default, end to end.

Writes (once) a random checkpoint of the `demo` preset in the Hugging Face release layout (the real o200k_harmony
vocabulary, tiny layers), loads it through the real loader, and runs the engine on harmony chats: a free answer and
a JSON-schema-constrained one, each streamed token by token with its harmony channels labelled as `gptoss chat`
labels them ([thinking], [answer]; text that is not harmony-formed shows as such), then a check that KV-cached
decoding equals a plain forward pass, and the log-likelihood of the answer. The weights are random, so the words are
gibberish; every stage is the real one. `--checkpoint` runs the same on a real model.
"""
import dataclasses
import json
import sys
import time

import jax
import numpy as np
from absl import flags

from gptoss_jax import chat as chat_lib
from gptoss_jax.api import is_preset
from gptoss_jax.cli import chat_flags
from gptoss_jax.cli import flags as common
from gptoss_jax.engine import SamplingParams, score
from gptoss_jax.params import count_params
from gptoss_jax.cli import engine_flags as eflags

FLAGS = flags.FLAGS

QUESTION = "What is the capital of France? Answer in one word."
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                           "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
          "required": ["city", "confidence"], "additionalProperties": False}


RANDOM_NOTE = ("The weights are random, so the words below are gibberish (and answer 1 is not even harmony-formed);\n"
               "every stage is real: the release-layout loader, the o200k_harmony tokenizer, harmony rendering, the\n"
               "engine's batched prefill and decode, constrained decoding and harmony parsing.")


def main(argv):
    del argv
    eflags.setup_compilation_cache()
    random_weights = is_preset(common.model_source())
    t0 = time.perf_counter()
    model = common.load_model()
    t_load = time.perf_counter() - t0
    engine = eflags.build_engine(model, num_slots=2)
    print(f"model {model.cfg.name}: {count_params(model.cfg) / 1e6:.1f}M weights ({model.param_bytes() / 1e6:.1f} MB, "
          f"MXFP4 experts packed) on {jax.devices()[0].platform}, loaded in {t_load:.1f}s")
    if random_weights:
        print(RANDOM_NOTE)
    greedy = SamplingParams(temperature=0.0, max_tokens=FLAGS.max_tokens)
    limit = FLAGS.max_tokens or engine.limits.default_max_tokens
    messages = [{"role": "user", "content": QUESTION}]

    print(f"\n1. chat, reasoning effort {FLAGS.reasoning_effort}, greedy, streamed: {QUESTION!r}")
    t0 = time.perf_counter()
    req = dataclasses.replace(chat_flags.chat_request(messages, greedy), response_format=None)
    free = chat_flags.print_stream(engine, req)
    dt = time.perf_counter() - t0
    print(f"   [{free.completion_tokens} tokens in {dt:.2f}s, finish: {free.finish_reason}; prompt "
          f"{free.prompt_tokens} tokens of harmony]")

    print("\n2. the same question under a JSON schema (structured output, constrained decoding), streamed")
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    constrained = chat_flags.print_stream(engine, dataclasses.replace(req, response_format=fmt))
    try:
        value = json.loads(constrained.content or "")
        ok = set(value) == {"city", "confidence"} and 0 <= value["confidence"] <= 1
    except (json.JSONDecodeError, TypeError):
        value, ok = constrained.content, False
    print(f"   parses as JSON and fits the schema: {ok}  ({constrained.completion_tokens} tokens)")
    if not ok and constrained.finish_reason == "length":
        print(f"   (cut at {limit} tokens before the answer closed: raise --max_tokens)")

    print("\n3. KV-cached decoding against a plain forward pass")
    prompt = chat_lib.to_engine_request(req).prompt
    full = np.asarray(model(np.array([list(prompt) + free.token_ids], np.int32)))[0]
    want = [int(full[len(prompt) - 1 + i].argmax()) for i in range(len(free.token_ids))]
    agree = want == free.token_ids
    print(f"   greedy tokens equal the plain forward's argmax at every step: {agree}")

    [s] = score(engine, [list(prompt)], [free.token_ids])
    print(f"\n4. log-likelihood of answer 1 under the model: {s.logprob:.2f} over {s.num_tokens} tokens")
    engine.close()
    if not (agree and ok):
        sys.exit("demo: a check failed (see above)")
