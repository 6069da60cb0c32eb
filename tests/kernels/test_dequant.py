"""In-kernel MXFP4 dequantization against the bit-exact device unpack, over every byte and the scale range."""
import jax.numpy as jnp
import numpy as np
import pytest

from gptoss_jax import mxfp4
from gptoss_jax.kernels import dequant

ALL_BYTES = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)     # [rows, K/32 blocks, 16 bytes]: every byte


@pytest.mark.parametrize("scale", [dequant.MIN_EXACT_SCALE, 60, 119, 127, 200, dequant.MAX_EXACT_SCALE])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_e4m3_route_is_exact(scale, dtype):
    scales = np.full(ALL_BYTES.shape[:-1], scale, np.uint8)
    got = dequant.e4m3_values(jnp.asarray(ALL_BYTES), jnp.asarray(scales), dtype)
    want = mxfp4.unpack(jnp.asarray(ALL_BYTES), jnp.asarray(scales), dtype)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32).view(np.uint32), np.asarray(want, np.float32).view(np.uint32))


def test_fp4_values_f32_is_exact():
    codes = jnp.arange(16, dtype=jnp.int32)
    np.testing.assert_array_equal(np.asarray(dequant.fp4_values_f32(codes)).view(np.uint32),
                                  mxfp4.FP4_VALUES.view(np.uint32))           # -0 included


def test_mixed_scales_per_block():
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (5, 7, 16), dtype=np.uint8)
    scales = rng.integers(dequant.MIN_EXACT_SCALE, dequant.MAX_EXACT_SCALE + 1, (5, 7), dtype=np.uint8)
    got = dequant.e4m3_values(jnp.asarray(blocks), jnp.asarray(scales), jnp.float32)
    np.testing.assert_array_equal(np.asarray(got), mxfp4.unpack_np(blocks, scales))


def test_asm_bit_layout_gives_mxfp4_values():
    """The inline-PTX dequantization's bit arithmetic (run on the GPU only) in numpy with IEEE bf16 subnormals."""
    blocks = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for scale in (dequant.MIN_EXACT_SCALE, 119, 127, 200):
        scales = np.full((16,), scale, np.uint8)
        np.testing.assert_array_equal(dequant.asm_formula_reference(blocks, scales),
                                      mxfp4.unpack_np(blocks[:, None], scales[:, None]).astype(np.float64))
