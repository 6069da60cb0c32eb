"""The decode-attention kernel (Pallas/Triton body in interpret mode) against the XLA `attend` core, alone and inside
the model's cached decode steps (ring buffers of the sliding layers, full caches, padding rows)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax import kernels
from gptoss_jax.kernels import attention_gpu
from gptoss_jax.model.attention import attend


def _caches(rng, p, b, s, nkv, d, dtype):
    make = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
    return make(p, b, s, nkv, d), make(p, b, s, nkv, d)


@pytest.mark.parametrize("splits,window,dtype", [(1, None, jnp.float32), (3, None, jnp.float32),
                                                 (2, 40, jnp.float32), (None, None, jnp.bfloat16)])
def test_kernel_matches_attend(splits, window, dtype):
    rng = np.random.default_rng(5)
    b, p, s, nkv, d, nq = 4, 2, 200, 2, 16, 8
    q = jnp.asarray(rng.standard_normal((b, nq, d)), dtype)
    k_cache, v_cache = _caches(rng, p, b, s, nkv, d, dtype)
    sinks = jnp.asarray(rng.standard_normal(nq) * 2, jnp.float32)
    pos = jnp.array([150, 0, -1, 199])                         # long, first token, padding row, last slot
    hi = jnp.clip(pos + 1, 0, s)
    lo = jnp.zeros_like(hi) if window is None else jnp.clip(pos - window + 1, 0, s)
    layer = 1
    run = jax.jit(functools.partial(attention_gpu.decode_attention, splits=splits, interpret=True))
    got = np.asarray(run(q, k_cache, v_cache, jnp.int32(layer), lo, hi, sinks))
    assert np.isfinite(got).all()
    k_pos = jnp.broadcast_to(jnp.arange(s)[None], (b, s))
    want = np.asarray(attend(q[:, None], k_cache[layer], v_cache[layer], pos[:, None], k_pos, sinks, window)[:, 0])
    tol = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(got[2], 0)                   # a padding row attends to nothing (only the sink)


def test_decode_steps_match_xla_path():
    """A tiny model prefilled past its sliding window, then decoded: kernel path == XLA/reference path."""
    model = gptoss_jax.random_model("tiny", seed=3, dtype="float32")
    cfg = model.cfg
    rng = np.random.default_rng(0)
    b, prompt, steps = 2, cfg.sliding_window + 3, 3
    tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, prompt)), jnp.int32)
    new_tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, steps)), jnp.int32)

    def run(moe, attention):
        m = gptoss_jax.GptOss(cfg, model.params, dtype="float32", kernels=kernels.Kernels(moe, attention))
        cache = m.new_cache(b, prompt + steps)
        _, cache = m.forward(tokens, cache=cache, logits_index=jnp.full((b,), prompt - 1))
        outs = []
        for t in range(steps):
            pos = jnp.array([[prompt + t], [-1 if t == 1 else prompt + t]], jnp.int32)   # row 1 pads a step
            logits, cache = m.forward(new_tokens[:, t:t + 1], pos, cache, logits_index=jnp.zeros((b,), jnp.int32))
            outs.append(np.asarray(logits))
        return np.stack(outs)

    want = run("reference", "xla")
    got = run("pallas_gpu_interpret", "pallas_gpu_interpret")
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_attention_switch():
    assert kernels.Kernels(attention="auto").resolve().attention == "xla"            # CPU
    assert kernels.Kernels(attention="pallas_gpu").resolve().attention == "xla"      # no GPU: falls back
    assert kernels.Kernels(attention="pallas_gpu_interpret").resolve().attention == "pallas_gpu_interpret"
    with pytest.raises(ValueError, match="unknown attention implementation"):
        kernels.Kernels(attention="flash-magic")
