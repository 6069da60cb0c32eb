"""MXFP4 dequantization written with the few ops every Pallas lowering has, for use INSIDE kernels.

The device-side `mxfp4.unpack` builds float bits with table lookups, which kernels cannot do. Here:

- GPU (`e4m3_values`): each E2M1 nibble is moved into an FP8 E4M3 byte by bit shuffles (sign to bit 7, the three
  magnitude bits to bits 4..2). E4M3 has exponent bias 7 against E2M1's 1, so the byte means value * 2**-6, and
  E2M1's two "subnormal" codes (0, 0.5) land on E4M3 subnormals, which the hardware conversion (Hopper:
  cvt.rn.f16x2.e4m3x2, two values an instruction) decodes exactly. The 2**6 is folded into the block scale:
  w = e4m3(code) * 2**(s - 121). No float subnormal ever enters an arithmetic op, so interpret mode on CPU (which
  flushes subnormal operands to zero) computes the same values as the GPU.
- TPU (`fp4_values_f32`): Mosaic has no FP8 conversion on every generation; the E2M1 value is assembled as float32
  bits with integer ops and selects (normal numbers only, exact).

Both are exact (equal to `mxfp4.unpack`) for scale bytes 2..248, i.e. block scales 2**-125..2**121; a checkpoint's
scales sit near 2**-7 (byte ~120). Outside that range results may flush to zero or overflow.
"""
from __future__ import annotations

import jax
import numpy as np
import jax.numpy as jnp
from jax import lax

E4M3_REBIAS = 6        # E4M3 bias 7 - E2M1 bias 1
SCALE_BIAS = 127
MIN_EXACT_SCALE, MAX_EXACT_SCALE = 2, 248


def e4m3_bytes(blocks: jax.Array) -> jax.Array:
    """uint8 [..., 16] packed codes -> uint8 [..., 32] E4M3 bit patterns, element order restored (low nibble first)."""
    lo = ((blocks & 0x07) << 2) | ((blocks & 0x08) << 4)
    hi = ((blocks >> 2) & 0x1C) | (blocks & 0x80)
    return jnp.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 2 * blocks.shape[-1])


def pow2_from_bytes(scales: jax.Array, offset: int) -> jax.Array:
    """uint8 scale bytes -> float32 2**(s - 127 + offset), built from exponent bits (exact, no log/exp)."""
    return lax.bitcast_convert_type((scales.astype(jnp.int32) + offset) << 23, jnp.float32)


def e4m3_values(blocks: jax.Array, scales: jax.Array, dtype) -> jax.Array:
    """blocks uint8 [..., nb, 16] + scales uint8 [..., nb] -> weights [..., nb * 32] in `dtype` (bf16 or f32)."""
    codes = lax.bitcast_convert_type(e4m3_bytes(blocks), jnp.float8_e4m3fn).astype(dtype)   # [..., nb, 32]
    scale = pow2_from_bytes(scales, E4M3_REBIAS).astype(dtype)[..., None]
    w = codes * scale
    return w.reshape(*w.shape[:-2], w.shape[-2] * w.shape[-1])


def fp4_values_f32(codes: jax.Array) -> jax.Array:
    """int32 E2M1 codes (0..15) -> exact float32 values, from float bits (no tables, no subnormals)."""
    mag = codes & 7
    e, m = mag >> 1, mag & 1
    normal = ((e + 126) << 23) | (m << 22)                     # 2**(e-1) * (1 + m/2)
    tiny = jnp.where(m > 0, 126 << 23, 0)                      # e == 0: 0 or 0.5
    bits = jnp.where(e > 0, normal, tiny) | ((codes & 8) << 28)
    return lax.bitcast_convert_type(bits, jnp.float32)


# PTX for 4 bytes at a time (pack=4): $2 = 4 code bytes, $3 = their 4 scale bytes; $0, $1 = the bf16x2 values of
# one nibble of each byte (bytes 0,1 and 2,3). The nibble's sign goes to bit 15 and its 3 magnitude bits to bits 8..6
# of a bf16 (exponent LSBs and mantissa MSB): that bf16 is the E2M1 value * 2**-126, the two smallest codes being bf16
# subnormals, which the bf16x2 FMA honours (no flush-to-zero for half types). Then * 2**126 (exact) and
# * 2**(s - 127) (exact for normal results). {sign} and {mag} shift the chosen nibble's bits into place. Every byte
# gets the same treatment, so which 4 elements Triton packs together does not matter.
_ASM_E2M1_BF16 = """
{{
.reg .b32 t0, t1, s0, s1, u, v, k, z;
mov.b32 k, 0x7E807E80;
mov.b32 z, 0x80008000;
prmt.b32 t0, $2, 0, 0x4140;
prmt.b32 t1, $2, 0, 0x4342;
prmt.b32 s0, $3, 0, 0x4140;
prmt.b32 s1, $3, 0, 0x4342;
shl.b32 s0, s0, 7;
shl.b32 s1, s1, 7;
shl.b32 u, t0, {sign};
shl.b32 v, t0, {mag};
and.b32 v, v, 0x01C001C0;
lop3.b32 $0, u, v, 0x80008000, 0xEC;
shl.b32 u, t1, {sign};
shl.b32 v, t1, {mag};
and.b32 v, v, 0x01C001C0;
lop3.b32 $1, u, v, 0x80008000, 0xEC;
fma.rn.bf16x2 $0, $0, k, z;
fma.rn.bf16x2 $1, $1, k, z;
fma.rn.bf16x2 $0, $0, s0, z;
fma.rn.bf16x2 $1, $1, s1, z;
}}
"""
_ASM_LOW_NIBBLE = _ASM_E2M1_BF16.format(sign=12, mag=6)     # bit 3 -> 15, bits 2..0 -> 8..6
_ASM_HIGH_NIBBLE = _ASM_E2M1_BF16.format(sign=8, mag=2)     # bit 7 -> 15, bits 6..4 -> 8..6


def asm_bf16_values(blocks: jax.Array, scales: jax.Array) -> jax.Array:
    """Like e4m3_values(..., bfloat16), by inline PTX on 4 bytes at a time (GPU only: no interpret mode).

    About 4.5 instructions a weight, against about 7 for the E4M3 route, whose byte-wise integer ops Triton cannot
    pack (see benchmarks/triton_offline.py). UNVERIFIED on hardware: the first GPU run of benchmarks/kernel_sweep.py
    compares it with the reference before timing it.
    """
    from gptoss_jax.kernels._triton import pltr

    wide = jnp.broadcast_to(scales[..., None], blocks.shape)
    out = [jax.ShapeDtypeStruct(blocks.shape, jnp.bfloat16)]
    [lo] = pltr.elementwise_inline_asm(_ASM_LOW_NIBBLE, args=[blocks, wide], constraints="=r,=r,r,r", pack=4,
                                       result_shape_dtypes=out)
    [hi] = pltr.elementwise_inline_asm(_ASM_HIGH_NIBBLE, args=[blocks, wide], constraints="=r,=r,r,r", pack=4,
                                       result_shape_dtypes=out)
    w = jnp.stack([lo, hi], axis=-1)
    return w.reshape(*blocks.shape[:-2], blocks.shape[-2] * blocks.shape[-1] * 2)


def asm_formula_reference(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The PTX above in numpy (IEEE bf16 with subnormals, as the GPU computes it): tests the bit layout."""
    import ml_dtypes

    b = blocks.astype(np.uint32)
    lo = ((b & 8) << 12) | ((b & 7) << 6)
    hi = ((b & 0x80) << 8) | ((b & 0x70) << 2)
    bf = lambda bits: bits.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    scale = bf((scales.astype(np.uint32) << 7))[..., None]
    values = np.stack([bf(lo), bf(hi)], axis=-1).reshape(*blocks.shape[:-1], 2 * blocks.shape[-1])
    return values * 2.0 ** 126 * scale
