"""Blocked attention: the XLA core (`attend`, query and key blocks, skipped blocks) and the flash prefill kernel
(Pallas/Triton body in interpret mode) against a dense float64 softmax with sinks; the model's cached prefill with
the kernel against the XLA path."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gptoss_jax
from gptoss_jax import kernels
from gptoss_jax.kernels import attention_prefill_gpu as fa
from gptoss_jax.model.attend import attend

pytestmark = pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated:DeprecationWarning")


def dense(q, k, v, q_pos, k_pos, sinks, window):
    """The definition, in float64: softmax over [visible scores, sink] without the sink column."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b, t, nq, d = q.shape
    g = nq // k.shape[2]
    k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
    s = np.einsum("btnd,bsnd->bnts", q, k) / np.sqrt(d)
    qp, kp = np.asarray(q_pos)[:, None, :, None], np.asarray(k_pos)[:, None, None, :]
    vis = (kp >= 0) & (kp <= qp)
    if window is not None:
        vis &= kp > qp - window
    s = np.where(vis, s, -np.inf)
    sink = np.asarray(sinks, np.float64)[None, :, None, None]
    top = np.maximum(s.max(-1, keepdims=True), sink)
    e = np.exp(s - top)
    w = e / (e.sum(-1, keepdims=True) + np.exp(sink - top))
    return np.einsum("bnts,bsnd->btnd", w, v)


def _case(seed, b, t, s, nq=8, nkv=2, d=16, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.standard_normal((b, t, nq, d)), dtype)
    k = jnp.asarray(rng.standard_normal((b, s, nkv, d)), dtype)
    v = jnp.asarray(rng.standard_normal((b, s, nkv, d)), dtype)
    sinks = jnp.asarray(rng.standard_normal(nq) * 2, jnp.float32)
    return q, k, v, sinks


# rows: a chunk continuing 20 cached positions, a first chunk, a short row (padding at the end), a padding row
STARTS = np.array([20, 0, 5, -1])
LENGTHS = np.array([24, 24, 9, 0])


def _chunk_positions(t):
    pos = STARTS[:, None] + np.arange(t)[None]
    return jnp.asarray(np.where(np.arange(t)[None] < LENGTHS[:, None], pos, -1), jnp.int32)


@pytest.mark.parametrize("window", [None, 6])
@pytest.mark.parametrize("blocks", [(8, 8), (5, 16), (512, 512)])
def test_attend_matches_dense_with_implicit_positions(window, blocks):
    """Full-cache layout (slot = position), keys [0, kv_len) of a longer cache, blocks that do not divide it."""
    t, s, kv_len = 24, 64, 45
    q, k, v, sinks = _case(0, 4, t, s)
    q_pos = _chunk_positions(t)
    got = attend(q, k, v, q_pos, None, sinks, window, key_start=jnp.zeros(4, jnp.int32), kv_len=kv_len,
                 q_block=blocks[0], key_block=blocks[1])
    k_pos = np.broadcast_to(np.arange(kv_len), (4, kv_len))
    want = dense(q, k[:, :kv_len], v[:, :kv_len], q_pos, k_pos, sinks, window)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(np.asarray(got)[3], 0)        # a padding row attends to nothing (only the sink)


def test_attend_explicit_positions_and_stacked_keys():
    t, s = 10, 30
    q, k, v, sinks = _case(1, 2, t, s)
    rng = np.random.default_rng(2)
    k_pos = jnp.asarray(rng.permutation(np.tile(np.arange(-3, s - 3), (2, 1)).T).T, jnp.int32)   # any order
    q_pos = jnp.asarray(np.stack([np.arange(10, 20), np.arange(t)]), jnp.int32)
    stack = lambda a: jnp.stack([jnp.zeros_like(a), a, 2 * a])
    got = attend(q, stack(k), stack(v), q_pos, k_pos, sinks, 7, layer=jnp.int32(1), q_block=4, key_block=8)
    np.testing.assert_allclose(np.asarray(got), dense(q, k, v, q_pos, k_pos, sinks, 7), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("window,nq,block_q", [(None, 8, 4), (6, 8, 16), (None, 6, 8)])
def test_flash_kernel_matches_dense(window, nq, block_q):
    """Interpret mode: the sliding layout (old ring in position order, then the chunk: key_start = start - W),
    heads per KV head not a power of two (6 / 2 = 3, padded), a query block smaller than the chunk."""
    t, w = 24, 8
    q, k, v, sinks = _case(3, 4, t, w + t, nq=nq)
    q_pos = _chunk_positions(t)
    key_start = jnp.asarray(STARTS - w, jnp.int32)
    run = jax.jit(functools.partial(fa.prefill_attention, window=window, interpret=True))
    got = np.asarray(jax.jit(functools.partial(fa.flash_attention, window=window, block_q=block_q, block_k=16,
                                               interpret=True))(q, k, v, q_pos, key_start)[0])
    assert np.isfinite(got).all()
    k_pos = np.asarray(key_start)[:, None] + np.arange(w + t)[None]
    want = dense(q, k, v, q_pos, k_pos, sinks, window)
    np.testing.assert_allclose(np.asarray(run(q, k, v, q_pos, key_start, sinks)), want, rtol=2e-5, atol=2e-5)
    no_sink = dense(q, k, v, q_pos, k_pos, np.full(nq, -1e9), window)
    np.testing.assert_allclose(got, no_sink, rtol=2e-5, atol=2e-5)


def test_flash_kernel_reads_a_stacked_cache_up_to_kv_len():
    t, s, kv_len = 24, 64, 45
    q, k, v, sinks = _case(4, 4, t, s, dtype=jnp.bfloat16)
    q_pos = _chunk_positions(t)
    stack = lambda a: jnp.stack([a, jnp.full_like(a, 9.0)])               # layer 1 would poison the result
    got = fa.prefill_attention(q, stack(k), stack(v), q_pos, jnp.zeros(4, jnp.int32), sinks, layer=jnp.int32(0),
                               kv_len=kv_len, interpret=True)
    k_pos = np.broadcast_to(np.arange(kv_len), (4, kv_len))
    want = dense(q, k[:, :kv_len], v[:, :kv_len], q_pos, k_pos, sinks, None)
    np.testing.assert_allclose(np.asarray(got), want, rtol=3e-2, atol=3e-2)


def test_cached_prefill_with_the_kernel_matches_the_xla_path():
    """tiny model, float32: a prompt prefilled in chunks past the sliding window, then decoded, through the kernels
    (interpret mode) and through XLA."""
    model = gptoss_jax.random_model("tiny", seed=5, dtype="float32")
    cfg = model.cfg
    rng = np.random.default_rng(1)
    b, chunk, n_chunks = 2, 8, 3
    tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, chunk * n_chunks + 1)), jnp.int32)

    def run(attention):
        m = gptoss_jax.GptOss(cfg, model.params, dtype="float32", kernels=kernels.Kernels("reference", attention))
        cache = m.new_cache(b, chunk * n_chunks + 1)
        outs = []
        for i in range(n_chunks):
            pos = jnp.broadcast_to(jnp.arange(i * chunk, (i + 1) * chunk, dtype=jnp.int32), (b, chunk))
            pos = pos.at[1].set(jnp.where(pos[1] < 19, pos[1], -1))          # row 1 ends early (padding)
            logits, cache = m.forward(tokens[:, i * chunk:(i + 1) * chunk], pos, cache)
            outs.append(np.asarray(logits))
        return np.concatenate(outs, axis=1)

    want, got = run("xla"), run("pallas_gpu_interpret")
    live = np.arange(chunk * n_chunks) < 19
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(got[1, live], want[1, live], rtol=1e-4, atol=1e-4 * np.abs(want).max())
