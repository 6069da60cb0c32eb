"""gptoss demo: the main job on the embedded default, a synthetic checkpoint of the `demo` preset (the real
o200k_harmony vocabulary, tiny layers). Writes it once, loads it through the real loader, generates a few tokens
greedily with the KV cache, checks them against a plain forward pass and scores them."""
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from gptoss_jax.cli import flags as common

flags.DEFINE_integer("max_tokens", 16, "Tokens to generate.")
FLAGS = flags.FLAGS

# "hello world" in o200k_base, then a few more ordinary tokens
PROMPT = [24912, 2375, 13, 2214, 382, 261, 1746]


def main(argv):
    del argv
    t0 = time.perf_counter()
    model = common.load_model()
    t_load = time.perf_counter() - t0
    prompt = np.array([PROMPT], np.int32)
    n = FLAGS.max_tokens
    cache = model.new_cache(1, len(PROMPT) + n)
    t0 = time.perf_counter()
    logits, cache = model.forward(jnp.asarray(prompt), cache=cache, logits_index=jnp.array([len(PROMPT) - 1]))
    out = [int(jnp.argmax(logits[0]))]
    for i in range(n - 1):
        pos = jnp.array([[len(PROMPT) + i]], jnp.int32)
        logits, cache = model.forward(jnp.array([[out[-1]]], jnp.int32), pos, cache,
                                      logits_index=jnp.array([0]))
        out.append(int(jnp.argmax(logits[0])))
    t_gen = time.perf_counter() - t0
    full = np.asarray(model(np.array([PROMPT + out], np.int32)))[0]
    logp = jax.nn.log_softmax(full, axis=-1)
    score = sum(float(logp[len(PROMPT) - 1 + i, t]) for i, t in enumerate(out))
    agree = all(int(full[len(PROMPT) - 1 + i].argmax()) == t for i, t in enumerate(out))
    print(f"model {model.cfg.name}: {model.cfg.param_count() / 1e6:.1f}M weights, {model.param_bytes() / 1e6:.1f} MB "
          f"on {jax.devices()[0].platform}, loaded in {t_load:.1f}s")
    print(f"prompt ids    {PROMPT}")
    print(f"generated ids {out}  ({n} tokens in {t_gen:.2f}s, greedy, KV cache)")
    print(f"log-likelihood of the generation under a plain forward: {score:.3f}")
    print(f"cached decode agrees with the plain forward's argmax: {agree}")
    if not agree:
        raise SystemExit("demo: cached decoding disagrees with the full forward")
