import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from gptoss_jax import mxfp4
from gptoss_jax.mxfp4 import FP4_VALUES, Mxfp4Error


def test_value_table_and_nibble_order():
    # byte j holds element 2j in its low nibble, 2j+1 in its high nibble
    codes = np.arange(32) % 16
    blocks = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)[None]
    scales = np.array([127], np.uint8)
    v = mxfp4.unpack_np(blocks, scales)  # one block -> 32 values
    assert v.shape == (32,)
    np.testing.assert_array_equal(v, np.concatenate([FP4_VALUES, FP4_VALUES]))
    # -0 is code 8 and keeps its sign
    assert v[8] == 0 and np.signbit(v[8]) and not np.signbit(v[0])
    np.testing.assert_array_equal(FP4_VALUES[:8], [0, .5, 1, 1.5, 2, 3, 4, 6])
    np.testing.assert_array_equal(FP4_VALUES[8:], -FP4_VALUES[:8])


@pytest.mark.parametrize("scale", [0, 1, 100, 126, 127, 128, 200, 254])
def test_scales_including_extremes(scale):
    codes = np.arange(32) % 16
    blocks = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)[None]
    scales = np.array([scale], np.uint8)
    with np.errstate(over="ignore"):  # scale 254 takes 6 * 2**127 past float32's range: inf, as in the format
        want = np.array([np.ldexp(np.float64(FP4_VALUES[c]), scale - 127) for c in codes]).astype(np.float32)
        got = mxfp4.unpack_np(blocks, scales)
    np.testing.assert_array_equal(got, want)
    # device side agrees with the host side bit for bit (in float32)
    dev = np.asarray(mxfp4.unpack(jnp.asarray(blocks), jnp.asarray(scales), jnp.float32))
    np.testing.assert_array_equal(dev.view(np.uint32), got.view(np.uint32))


@pytest.mark.parametrize("shape", [(1, 32), (3, 64), (2, 5, 96), (7, 1, 32), (1, 1, 2880)])
def test_pack_unpack_round_trip_is_bit_exact(shape):
    rng = np.random.default_rng(sum(shape))
    nb = shape[-1] // 32
    blocks = rng.integers(0, 256, size=(*shape[:-1], nb, 16), dtype=np.uint8)
    scales = rng.integers(100, 150, size=(*shape[:-1], nb), dtype=np.uint8)
    values = mxfp4.unpack_np(blocks, scales)
    assert values.shape == shape
    b2, s2 = mxfp4.pack_np(values, scales)
    np.testing.assert_array_equal(b2, blocks)
    np.testing.assert_array_equal(s2, scales)
    # the quantizer (no scales given) also reproduces values that are on the grid
    b3, s3 = mxfp4.pack_np(values)
    np.testing.assert_array_equal(mxfp4.unpack_np(b3, s3), values)
    # jnp pack matches numpy pack, jnp unpack matches numpy unpack
    jb, js = mxfp4.pack(jnp.asarray(values))
    np.testing.assert_array_equal(np.asarray(jb), b3)
    np.testing.assert_array_equal(np.asarray(js), s3)
    jv = np.asarray(mxfp4.unpack(jnp.asarray(blocks), jnp.asarray(scales), jnp.float32))
    np.testing.assert_array_equal(jv, values)
    # bfloat16 dequantization is exact for normal values
    jv16 = np.asarray(mxfp4.unpack(jnp.asarray(blocks), jnp.asarray(scales), jnp.bfloat16))
    np.testing.assert_array_equal(jv16.astype(np.float32), values)


def test_quantizer_rounds_to_nearest_code():
    x = np.array([[0.2, 0.3, 0.74, 0.76, 1.2, 2.6, 3.4, 5.1, -5.2, -0.26] + [0.0] * 22], np.float32)
    # block max 5.2 -> scale 2**0; values round to the nearest of 0, .5, 1, ...
    b, s = mxfp4.pack_np(x)
    assert s[0, 0] == 127
    np.testing.assert_array_equal(mxfp4.unpack_np(b, s)[0, :10], [0, 0.5, 0.5, 1, 1, 3, 3, 6, -6, -0.5])


def test_bad_inputs_are_named():
    with pytest.raises(Mxfp4Error, match="multiple of 32"):
        mxfp4.pack_np(np.zeros((2, 33)))
    with pytest.raises(Mxfp4Error, match="not on the E2M1 grid"):
        mxfp4.pack_np(np.full((1, 32), 0.7, np.float32), np.array([[127]], np.uint8))
    with pytest.raises(Mxfp4Error, match="do not pair up"):
        mxfp4.unpack_np(np.zeros((2, 3, 16), np.uint8), np.zeros((2, 4), np.uint8))
    with pytest.raises(Mxfp4Error, match="uint8"):
        mxfp4.unpack_np(np.zeros((2, 3, 16), np.int8), np.zeros((2, 3), np.uint8))


def test_weight_pytree_shape():
    w = mxfp4.Mxfp4Weight(jnp.zeros((4, 6, 3, 16), jnp.uint8), jnp.zeros((4, 6, 3), jnp.uint8))
    assert w.shape == (4, 6, 96)
    assert w.nbytes == 4 * 6 * 3 * 17
    assert ml_dtypes.bfloat16  # bf16 is available to numpy
