"""The Pallas MXFP4 expert matmuls (GPU/Triton and TPU/Mosaic bodies, run by Pallas' interpreter on CPU) against
the jnp reference and a float64 dense product: ragged groups, empty experts, one token, odd N and K, rows past the
groups, windows longer than a tile."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptoss_jax import kernels, mxfp4
from gptoss_jax.kernels import groups, moe_gpu, moe_tpu
from gptoss_jax.kernels.moe_gpu import GpuTiles


def _problem(sizes, n, k, extra, seed):
    rng = np.random.default_rng(seed)
    g = len(sizes)
    blocks = rng.integers(0, 256, size=(g, n, k // 32, 16), dtype=np.uint8)
    scales = rng.integers(116, 125, size=(g, n, k // 32), dtype=np.uint8)
    m = sum(sizes) + extra
    x = rng.standard_normal((m, k)).astype(np.float32)
    dense = mxfp4.unpack_np(blocks, scales).astype(np.float64)
    want = np.zeros((m, n))
    row = 0
    for gi, s in enumerate(sizes):
        want[row:row + s] = x[row:row + s].astype(np.float64) @ dense[gi].T
        row += s
    w = mxfp4.Mxfp4Weight(jnp.asarray(blocks), jnp.asarray(scales))
    return jnp.asarray(x), w, jnp.asarray(sizes, jnp.int32), want


def _poisoned(fn):
    """Run fn and check every output element was written: Pallas' interpreter fills outputs with NaN first."""
    out = np.asarray(fn())
    assert np.isfinite(out).all()
    return out


GPU_CASES = [
    # sizes, n, k, extra rows past the groups, tiles (None = pick_tiles; the route is kperm unless named)
    ([1], 64, 32, 0, None),                                  # one row, one expert
    ([0, 1, 0, 2, 1, 0, 0, 0], 64, 64, 0, None),             # decode: 4 rows over 8 experts, most empty
    ([0, 3, 0, 1], 48, 96, 3, GpuTiles(tm=16, bn=32, nbk=2)),  # partial N tile, K = 1.5 K steps, tail rows
    ([37, 0, 5, 70, 1], 40, 64, 2, GpuTiles(tm=16, bn=32, nbk=1)),  # groups spanning several windows (kperm)
    ([37, 0, 5, 70, 1], 40, 64, 2, GpuTiles(tm=16, bn=32, nbk=1, dequant="e4m3")),   # the same, portable route
    ([0, 0, 0], 32, 32, 5, None),                            # every row is past the groups: all zeros
    ([9, 0, 0, 0, 0, 0, 0, 12], 96, 160, 0, GpuTiles(tm=32, bn=64, nbk=4)),  # first and last expert only
    ([2, 0, 1, 1], 32, 320, 1, GpuTiles(tm=16, bn=32, nbk=2, split_k=3, dequant="asm")),  # K split 3 ways (the
    # last share gets 1 of 5 K steps), tail row; "asm" runs its exact jnp twin in interpret mode
]


@pytest.mark.parametrize("sizes,n,k,extra,tiles", GPU_CASES)
def test_gpu_kernel_matches_reference(sizes, n, k, extra, tiles):
    x, w, gs, want = _problem(sizes, n, k, extra, seed=sum(sizes) + n + k)
    run = jax.jit(functools.partial(moe_gpu.expert_matmul_gpu, interpret=True, tiles=tiles))
    got = _poisoned(lambda: run(x, w, gs))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    np.testing.assert_array_equal(got[sum(sizes):], 0)
    # bf16 activations: the same products the reference forms (exact bf16 weights, f32 accumulation)
    x16 = x.astype(jnp.bfloat16)
    ref16 = np.asarray(kernels.expert_matmul(x16, w, gs, impl="reference"))
    np.testing.assert_allclose(np.asarray(run(x16, w, gs)), ref16, rtol=1e-5, atol=1e-5 * np.abs(ref16).max())


BIAS_CASES = [GPU_CASES[1], GPU_CASES[2], GPU_CASES[7], GPU_CASES[5]]   # decode; N edge + tail; split K; tail only


@pytest.mark.parametrize("sizes,n,k,extra,tiles", BIAS_CASES)
def test_bias_in_the_gpu_epilogue_is_the_grouped_bias(sizes, n, k, extra, tiles):
    """With a bias, every path gives out + bias[group] on the rows inside the groups (split K: added once) and zeros
    past them; the GPU kernel adds it in its epilogue, the reference and TPU paths in jnp."""
    x, w, gs, _ = _problem(sizes, n, k, extra, seed=3 + n + k)
    bias = jnp.asarray(np.random.default_rng(n).standard_normal((len(sizes), n)), jnp.bfloat16)
    group = np.repeat(np.arange(len(sizes) + 1), list(sizes) + [extra])
    with_zero_row = np.concatenate([np.asarray(bias, np.float32), np.zeros((1, n), np.float32)])
    run = jax.jit(functools.partial(moe_gpu.expert_matmul_gpu, interpret=True, tiles=tiles))
    plain = np.asarray(run(x, w, gs))
    want = plain + with_zero_row[group]
    got = _poisoned(lambda: run(x, w, gs, bias=bias))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    assert (np.abs(got - plain)[:sum(sizes)] > 0).any() or sum(sizes) == 0
    np.testing.assert_array_equal(got[sum(sizes):], 0)
    # an implementation registered without takes_bias never sees the bias: expert_matmul adds it after the call
    kernels.register("no_bias_arg", lambda x, w, gs, *, layer=None: kernels.expert_matmul(x, w, gs, layer=layer))
    for impl in ("reference", "pallas_tpu_interpret", "pallas_gpu_interpret", "no_bias_arg"):
        other = np.asarray(kernels.expert_matmul(x, w, gs, impl=impl, bias=bias))
        np.testing.assert_allclose(other, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


TPU_CASES = [
    ([0, 1, 0, 2, 1, 0, 0, 0], 64, 64, 0),                  # decode
    ([37, 0, 5, 70, 1], 48, 96, 3),                          # several row tiles, groups straddling them, tail
    ([0, 0], 32, 32, 4),                                     # only tail rows
]


@pytest.mark.parametrize("sizes,n,k,extra", TPU_CASES)
def test_tpu_kernel_matches_reference(sizes, n, k, extra):
    x, w, gs, want = _problem(sizes, n, k, extra, seed=7 + sum(sizes))
    run = jax.jit(functools.partial(moe_tpu.expert_matmul_tpu, interpret=True))
    got = _poisoned(lambda: run(x, w, gs))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    np.testing.assert_array_equal(got[sum(sizes):], 0)


def test_registry_routes_to_kernels_and_falls_back():
    x, w, gs, want = _problem([2, 0, 3], 32, 64, 1, seed=1)
    for impl in ("pallas_gpu_interpret", "pallas_tpu_interpret"):
        got = np.asarray(kernels.expert_matmul(x, w, gs, impl=impl))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    # the compiled kernels need their backend; here (CPU) they take the reference path, as does "auto"
    assert kernels.Kernels().resolve().moe == "reference"
    for impl in ("pallas_gpu", "pallas_tpu"):
        np.testing.assert_allclose(np.asarray(kernels.expert_matmul(x, w, gs, impl=impl)), want, rtol=2e-5,
                                   atol=2e-5 * np.abs(want).max())
    # dense weights: the kernels hand over to the reference
    dense = jnp.asarray(mxfp4.unpack_np(np.asarray(w.blocks), np.asarray(w.scales)))
    got = np.asarray(kernels.expert_matmul(x, dense, gs, impl="pallas_gpu_interpret"))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("sizes,tm", [([1, 0, 2, 1], 16), ([37, 0, 5, 70, 1], 16), ([0, 0, 0], 8), ([300], 128)])
def test_windows_cover_each_row_once(sizes, tm):
    m = sum(sizes) + 3
    padded = np.zeros(16, np.int32)
    padded[:len(sizes) + 1] = list(sizes) + [3]
    v_max = groups.max_windows(m, len(sizes), tm)
    g, lo, hi = jax.vmap(lambda v: groups.window_of_visit(jnp.asarray(padded), v, tm))(jnp.arange(v_max))
    g, lo, hi = map(np.asarray, (g, lo, hi))
    owner = np.full(m, -1)
    ends = np.cumsum(list(sizes) + [3])
    for gi, a, b in zip(g, lo, hi):
        if gi > len(sizes):
            continue                                   # past the last window
        assert 0 < b - a <= tm and ends[gi] - (list(sizes) + [3])[gi] <= a and b <= ends[gi]
        assert (owner[a:b] == -1).all()
        owner[a:b] = gi
    want_owner = np.repeat(np.arange(len(sizes) + 1), list(sizes) + [3])
    np.testing.assert_array_equal(owner, want_owner)
    # a group of at most tm rows is exactly one window: its weights are read once
    for gi, s in enumerate(sizes):
        assert (g == gi).sum() == -(-s // tm)


@pytest.mark.parametrize("impl", ["reference", "pallas_gpu_interpret", "pallas_tpu_interpret"])
def test_layer_of_stacked_weights(impl):
    """w stacked over 3 layers + a traced layer index == the unstacked weights of that layer."""
    sizes = [3, 0, 1, 5]
    parts = [_problem(sizes, 32, 64, 2, seed=s) for s in (11, 12, 13)]
    x, _, gs, want = parts[1]
    stacked = mxfp4.Mxfp4Weight(jnp.stack([p[1].blocks for p in parts]), jnp.stack([p[1].scales for p in parts]))
    run = jax.jit(lambda x, w, gs, layer: kernels.expert_matmul(x, w, gs, impl=impl, layer=layer))
    got = _poisoned(lambda: run(x, stacked, gs, jnp.int32(1)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_gpu_kernel_decodes_every_code_and_scale_like_the_reference():
    """x = identity, so out[m, n] = W[n, m]: every code byte under every finite-result scale byte (0..250) through
    the kernel's decode (interpret mode: kperm's integer twin) and K permutation, against the reference path."""
    n, k = 256, 512                                  # row n: scale byte n, its 16 blocks hold all 256 code bytes
    blocks = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16), (1, n, 16, 16))
    scales = np.broadcast_to(np.minimum(np.arange(n), 250).astype(np.uint8)[None, :, None], (1, n, 16))
    w = mxfp4.Mxfp4Weight(jnp.asarray(blocks), jnp.asarray(scales))
    x = jnp.eye(k, dtype=jnp.bfloat16)
    gs = jnp.asarray([k], jnp.int32)
    got = np.asarray(moe_gpu.expert_matmul_gpu(x, w, gs, interpret=True))
    want = np.asarray(kernels.expert_matmul(x, w, gs, impl="reference"))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    dense = mxfp4.unpack_np(blocks[0], scales[0])                                  # [n, k] float32
    normal = np.abs(dense) >= np.finfo(np.float32).tiny                           # CPU dots flush subnormals
    np.testing.assert_array_equal(got.T[normal], dense[normal])


def test_model_with_the_gpu_moe_kernel_gives_the_reference_logits():
    """The MoE of a whole model through the GPU kernel (interpret mode: both biases in its epilogue) against the
    reference path (biases in jnp)."""
    import gptoss_jax

    cfg = gptoss_jax.get_config("tiny")
    params = gptoss_jax.random_model(cfg, seed=5, dtype="float32").params
    tokens = (np.arange(12, dtype=np.int32).reshape(2, 6) * 37) % cfg.vocab_size
    want = np.asarray(gptoss_jax.GptOss(cfg, params, dtype="float32")(tokens))
    kernel = kernels.Kernels(moe="pallas_gpu_interpret", attention="xla")
    got = np.asarray(gptoss_jax.GptOss(cfg, params, dtype="float32", kernels=kernel)(tokens))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
