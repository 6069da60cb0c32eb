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


EVERY_SCALE = np.arange(256, dtype=np.uint8)


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    import ml_dtypes
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(ml_dtypes.bfloat16).view(np.uint16)


def test_kperm_ptx_formula_is_exact_for_every_byte_and_scale():
    """The kperm inline PTX (GPU only), modelled instruction by instruction with IEEE bf16 (subnormals kept, overflow
    to inf), gives mxfp4.unpack's bf16 bits for all 256 code bytes x all 256 scale bytes, -0 and inf included."""
    blocks = np.broadcast_to(ALL_BYTES.reshape(1, 16, 16), (256, 16, 16))               # [scale, row, 16 bytes]
    scales = np.broadcast_to(EVERY_SCALE[:, None], (256, 16))
    got = _bf16_bits(dequant.kperm_formula_reference(blocks, scales))                    # [256, 16, 32]
    want = np.asarray(mxfp4.unpack(jnp.asarray(blocks[:, :, None]), jnp.asarray(scales[:, :, None]),
                                   jnp.bfloat16)).view(np.uint16).reshape(256, 16, 32)
    np.testing.assert_array_equal(got, want)
    assert (want == 0x7F80).any() and (want == 0x8000).any() and ((want & 0x7F80) == 0).any()   # inf, -0, subnormal


def test_kperm_twin_is_exact_for_every_code_and_scale():
    """The integer twin the kperm route runs where its PTX cannot (interpret mode, float32 activations)."""
    codes = np.arange(256, dtype=np.int32) & 15
    s = EVERY_SCALE.astype(np.int32)[:, None]
    got = np.asarray(dequant.exact_bf16_bits(jnp.asarray(codes[None]), jnp.asarray(s)))
    values = mxfp4.FP4_VALUES[codes][None].astype(np.float64) * np.exp2(s.astype(np.float64) - 127)
    want = _bf16_bits(values)
    np.testing.assert_array_equal(got, want)


def test_kperm_scale_factor_is_exact():
    got = np.asarray(dequant.kperm_scale_bits(jnp.asarray(EVERY_SCALE)))
    np.testing.assert_array_equal(got, _bf16_bits(np.exp2(EVERY_SCALE.astype(np.float64) - 128)))


@pytest.mark.parametrize("nbk", [1, 2, 4, 8])
def test_kperm_order_puts_each_threads_bytes_in_its_wgmma_registers(nbk):
    """Column 16i + 8j + 2q + h of a K tile holds byte 4*nbk*q + 2i + h, nibble j: thread q's registers (columns
    2q, 2q+1 of each 8-column half) hold the low (j=0) or high (j=1) nibbles of two consecutive bytes of its own
    chunk, so the decode's bf16x2 outputs are wgmma's A registers as they are."""
    bk = 32 * nbk
    natural = np.arange(bk)
    order = np.asarray(dequant.k_tile_order(jnp.asarray(natural), nbk))
    assert sorted(order) == list(natural)                                   # a permutation
    for col in range(bk):
        i, rest = divmod(col, 16)
        j, rest = divmod(rest, 8)
        q, h = divmod(rest, 2)
        byte, nibble = divmod(order[col], 2)
        assert (byte, nibble) == (4 * nbk * q + 2 * i + h, j)


def test_permute_k_matches_the_weight_order_so_products_are_unchanged():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 96)).astype(np.float32)                  # K = 96: padded to 128 for nbk = 4
    w = rng.standard_normal((5, 96)).astype(np.float32)
    xp = np.asarray(dequant.permute_k(jnp.asarray(x), 4))
    wp = np.asarray(dequant.permute_k(jnp.asarray(w), 4))                 # the weights' order is the same map
    assert xp.shape == (3, 128) and (xp[:, np.argsort(np.asarray(dequant.k_tile_order(jnp.arange(128), 4)))][:, 96:]
                                     == 0).all()
    np.testing.assert_allclose(xp @ wp.T, x @ w.T, rtol=1e-5)


def test_kperm_ptx_is_the_sequence_its_model_runs():
    """The numpy model mirrors this instruction sequence; a change to the PTX must change the model too."""
    import re
    for asm, (mask, mult) in ((dequant._ASM_KPERM_LOW, dequant.KPERM_NIBBLE["low"]),
                              (dequant._ASM_KPERM_HIGH, dequant.KPERM_NIBBLE["high"])):
        ops = re.findall(r"^([a-z][\w.]*) (.*);$", asm, re.M)
        assert [op for op, _ in ops] == ["mov.b32"] * 2 + ["prmt.b32", "and.b32", "mul.lo.u32", "and.b32",
                                                            "fma.rn.bf16x2", "fma.rn.bf16x2"] * 2
        consts = {int(c, 16) for _, args in ops for c in re.findall(r"0x[0-9A-Fa-f]+", args)}
        assert consts == {dequant.KPERM_K127, 0x80008000, *dequant.KPERM_SPREAD, mask, mult, dequant.KPERM_KEEP}
