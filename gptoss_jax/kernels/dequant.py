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
