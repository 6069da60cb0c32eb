"""The MXFP4 expert matmul (reference path) against a dense numpy computation, over ragged and odd shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptoss_jax import kernels, mxfp4
from gptoss_jax.kernels.groups import max_visits, visit_schedule


def _random_weight(rng, g, n, k):
    blocks = rng.integers(0, 256, size=(g, n, k // 32, 16), dtype=np.uint8)
    scales = rng.integers(118, 124, size=(g, n, k // 32), dtype=np.uint8)
    return mxfp4.Mxfp4Weight(jnp.asarray(blocks), jnp.asarray(scales)), mxfp4.unpack_np(blocks, scales)


def _dense(x, w_dense, sizes):
    out = np.zeros((x.shape[0], w_dense.shape[1]), np.float64)
    row = 0
    for g, s in enumerate(sizes):
        out[row:row + s] = x[row:row + s].astype(np.float64) @ w_dense[g].T.astype(np.float64)
        row += s
    return out


@pytest.mark.parametrize("sizes,n,k", [
    ([1], 64, 32),                       # one token, one expert
    ([0, 3, 0, 1], 32, 64),              # empty experts on both sides
    ([4, 0, 0, 0, 0, 0, 0, 0], 96, 32),  # every row on the first expert
    ([0, 0, 0, 5], 32, 96),              # every row on the last expert
    ([7, 1, 9, 0, 13], 48, 64),          # ragged, odd sizes
    ([150, 3, 0, 120, 1], 32, 32),       # several row tiles, groups straddling tile edges
])
def test_matches_dense(sizes, n, k):
    rng = np.random.default_rng(sum(sizes) + n + k)
    g = len(sizes)
    w, w_dense = _random_weight(rng, g, n, k)
    extra = 3  # rows past the groups (assignments to experts held elsewhere) must come out zero
    x = rng.standard_normal((sum(sizes) + extra, k)).astype(np.float32)
    got = np.asarray(kernels.expert_matmul(jnp.asarray(x), w, jnp.asarray(sizes, jnp.int32), impl="reference"))
    want = _dense(x, w_dense, sizes)
    np.testing.assert_allclose(got[:sum(sizes)], want[:sum(sizes)], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[sum(sizes):], 0)
    # bf16 inputs: same products up to bf16 rounding of x
    got16 = np.asarray(kernels.expert_matmul(jnp.asarray(x, jnp.bfloat16), w, jnp.asarray(sizes, jnp.int32)))
    np.testing.assert_allclose(got16[:sum(sizes)], want[:sum(sizes)], rtol=2e-2, atol=2e-2 * np.abs(want).max())


def test_dense_weights_take_the_same_path():
    rng = np.random.default_rng(0)
    w, w_dense = _random_weight(rng, 3, 32, 64)
    x = rng.standard_normal((6, 64)).astype(np.float32)
    sizes = jnp.asarray([2, 0, 4], jnp.int32)
    a = kernels.expert_matmul(jnp.asarray(x), w, sizes)
    b = kernels.expert_matmul(jnp.asarray(x), jnp.asarray(w_dense), sizes)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sizes,tm", [([1, 0, 2, 1], 8), ([0, 0, 0], 8), ([130, 0, 5, 120], 128), ([300], 128)])
def test_visit_schedule_reads_only_routed_experts(sizes, tm):
    sizes = np.asarray(sizes)
    m = max(int(sizes.sum()), 1)
    tiles = -(-m // tm)
    s = jax.jit(visit_schedule, static_argnums=(1, 2))(jnp.asarray(sizes, jnp.int32), tiles, tm)
    valid = np.asarray(s.valid)
    pairs = list(zip(np.asarray(s.tile)[valid], np.asarray(s.group)[valid]))
    # exactly the (tile, group) pairs that share rows, in row order, each once; no empty group is ever visited
    ends = np.cumsum(sizes)
    starts = ends - sizes
    want = [(t, g) for g in range(len(sizes)) if sizes[g]
            for t in range(starts[g] // tm, (ends[g] - 1) // tm + 1)]
    assert pairs == want
    assert len(valid) == max_visits(tiles, tiles * tm, len(sizes))
    assert all(sizes[g] > 0 for _, g in pairs)


def test_unknown_impl_is_named():
    with pytest.raises(ValueError, match="unknown MoE kernel"):
        kernels.Kernels(moe="cuda-magic")
