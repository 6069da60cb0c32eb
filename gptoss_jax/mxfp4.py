"""MXFP4 (OCP microscaling FP4), the format of gpt-oss's expert weights, and its packed-weight pytree.

A weight W[..., K] is stored as
  blocks [..., K/32, 16] uint8: 32 E2M1 codes a block, byte j holds element 2j in its LOW nibble, 2j+1 in its HIGH
  scales [..., K/32]     uint8: one E8M0 exponent a block; value = code_value * 2**(scale - 127).
Everything here is bit exact: unpack(pack(x)) == x for every representable x, -0 included.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gptoss_jax.errors import Mxfp4Error
BLOCK = 32            # values a block
BYTES_PER_BLOCK = 16  # two codes a byte
SCALE_BIAS = 127

# E2M1 code -> value. Codes 8..15 are the negatives of 0..7 (code 8 is -0).
FP4_VALUES = np.array([+0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)



@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Mxfp4Weight:
    """Packed expert weights: W[E, N, K] as blocks [E, N, K/32, 16] u8 + scales [E, N, K/32] u8.

    A pytree (two leaves), so it shards, scans, saves and restores like any array pair; the expert matmul is the only
    code that looks inside it.
    """
    blocks: jax.Array
    scales: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        """The logical (unpacked) shape [..., K]."""
        *lead, nb, _ = self.blocks.shape
        return (*lead, nb * BLOCK)

    @property
    def nbytes(self) -> int:
        return int(self.blocks.size) + int(self.scales.size)


def check_pair(blocks_shape, blocks_dtype, scales_shape, scales_dtype, what: str = "MXFP4 weight") -> None:
    if np.dtype(blocks_dtype) != np.uint8 or np.dtype(scales_dtype) != np.uint8:
        raise Mxfp4Error(f"{what}: blocks and scales must be uint8, got {blocks_dtype} and {scales_dtype}")
    if len(blocks_shape) < 2 or blocks_shape[-1] != BYTES_PER_BLOCK or tuple(blocks_shape[:-1]) != tuple(scales_shape):
        raise Mxfp4Error(f"{what}: blocks {tuple(blocks_shape)} and scales {tuple(scales_shape)} do not pair up; "
                         f"expected blocks [..., K/32, 16] with scales [..., K/32]")


# ----------------------------------------------------------------------------------------------- numpy (host side)
def _codes_from_values(v: np.ndarray) -> np.ndarray:
    """Exact E2M1 codes of values already on the grid (magnitudes in FP4_VALUES[:8], sign from the sign bit)."""
    mag = np.abs(v)
    idx = np.searchsorted(FP4_VALUES[:8], mag)
    idx = np.clip(idx, 0, 7)
    if not np.array_equal(FP4_VALUES[idx], mag):
        bad = np.flatnonzero(FP4_VALUES[idx].ravel() != mag.ravel())[0]
        raise Mxfp4Error(f"value {v.ravel()[bad]!r} is not on the E2M1 grid at this scale")
    return (idx | (np.signbit(v).astype(np.int64) << 3)).astype(np.uint8)


def _scale_from_frexp(frac, ex, xp):
    """Smallest scale with block max <= 6 * 2**(scale-127), from max = frac * 2**ex (exact: no log2)."""
    e = xp.where(frac <= 0.75, ex - 3, ex - 2)
    e = xp.where(frac > 0, e, -SCALE_BIAS)  # all-zero blocks get the smallest scale
    return xp.clip(e + SCALE_BIAS, 0, 254).astype(xp.uint8)


def pack_np(values: np.ndarray, scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pack float values [..., K] into (blocks [..., K/32, 16], scales [..., K/32]).

    With `scales` given, every value must be exactly code_value * 2**(scale-127) (raises otherwise): this is the
    bit-exact inverse of unpack_np. Without it, the scale of each block is chosen so its largest magnitude fits and
    values are rounded to the nearest code (a quantizer, for writing synthetic or converted weights).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.shape[-1] % BLOCK:
        raise Mxfp4Error(f"last dimension {values.shape[-1]} is not a multiple of {BLOCK}")
    v = values.reshape(*values.shape[:-1], values.shape[-1] // BLOCK, BLOCK)
    if scales is None:
        frac, ex = np.frexp(np.max(np.abs(v), axis=-1))
        scales = _scale_from_frexp(frac, ex, np)
        mult = np.ldexp(np.float32(1.0), -(scales.astype(np.int32) - SCALE_BIAS))[..., None]
        q = v * mult
        # round magnitudes to the nearest grid point (ties to the larger, as in a plain nearest search)
        mag = np.abs(q)[..., None]
        nearest = np.argmin(np.abs(mag - FP4_VALUES[:8]), axis=-1)
        codes = (nearest | (np.signbit(q).astype(np.int64) << 3)).astype(np.uint8)
    else:
        scales = np.asarray(scales, dtype=np.uint8)
        if scales.shape != v.shape[:-1]:
            raise Mxfp4Error(f"scales shape {scales.shape} != blocks shape {v.shape[:-1]}")
        mult = np.ldexp(np.float32(1.0), -(scales.astype(np.int32) - SCALE_BIAS))[..., None]
        codes = _codes_from_values(v * mult)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return blocks, scales


def unpack_np(blocks: np.ndarray, scales: np.ndarray, dtype=np.float32) -> np.ndarray:
    """(blocks [..., K/32, 16], scales [..., K/32]) -> values [..., K], exact (float32 holds every MXFP4 value)."""
    check_pair(blocks.shape, blocks.dtype, scales.shape, scales.dtype)
    lo = FP4_VALUES[blocks & 0x0F]
    hi = FP4_VALUES[blocks >> 4]
    v = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], BLOCK)
    v = np.ldexp(v, scales.astype(np.int32)[..., None] - SCALE_BIAS)
    return v.reshape(*blocks.shape[:-2], -1).astype(dtype)


# ------------------------------------------------------------------------------------------------ jnp (device side)
# E2M1 magnitude code -> (floor(log2(2|v|)), top mantissa bit); 2|v| = 0, 1, 2, 3, 4, 6, 8, 12
_LOG2_2V = np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)
_HALF_BIT = np.array([0, 0, 0, 1, 0, 1, 0, 1], np.int32)
_TWICE_V = np.array([0, 1, 2, 3, 4, 6, 8, 12], np.int32)
_MANTISSA_BITS = {jnp.dtype(jnp.float32): (23, jnp.uint32), jnp.dtype(jnp.bfloat16): (7, jnp.uint16)}


def unpack(blocks: jax.Array, scales: jax.Array, dtype=jnp.bfloat16) -> jax.Array:
    """Device-side dequantization, [..., K/32, 16] + [..., K/32] -> [..., K] in `dtype`.

    Bit exact for float32 and bfloat16 over every code and scale, subnormal results (scales near 0) and overflow to
    inf (scales near 255) included: the float bits are assembled with integer ops, so no float arithmetic (and no
    flush-to-zero) touches them. Used inside the expert matmul on one expert at a time, never on a whole tensor.
    """
    dtype = jnp.dtype(dtype)
    if dtype not in _MANTISSA_BITS:
        return unpack(blocks, scales, jnp.float32).astype(dtype)
    m, bits_dtype = _MANTISSA_BITS[dtype]
    b = blocks.astype(jnp.int32)
    codes = jnp.stack([b & 0x0F, b >> 4], axis=-1).reshape(*blocks.shape[:-1], BLOCK)
    mag, sign = codes & 7, codes >> 3
    s = scales.astype(jnp.int32)[..., None]
    exp = jnp.asarray(_LOG2_2V)[mag] + s - 1                 # biased exponent of 2|v| * 2**(s - 128)
    normal = (jnp.minimum(exp, 255) << m) | jnp.where(exp >= 255, 0, jnp.asarray(_HALF_BIT)[mag] << (m - 1))
    subnormal = jnp.asarray(_TWICE_V)[mag] << jnp.clip(s - 2 + m, 0, 31)
    bits = jnp.where(mag == 0, 0, jnp.where(exp > 0, normal, subnormal)) | (sign << (m + 8))
    v = jax.lax.bitcast_convert_type(bits.astype(bits_dtype), dtype)
    return v.reshape(*blocks.shape[:-2], -1)


def pack(values: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Device-side quantizer (nearest code, per-block power-of-two scale); mirrors pack_np without `scales`."""
    values = values.astype(jnp.float32)
    v = values.reshape(*values.shape[:-1], values.shape[-1] // BLOCK, BLOCK)
    frac, ex = jnp.frexp(jnp.max(jnp.abs(v), axis=-1))
    scales = _scale_from_frexp(frac, ex, jnp)
    q = jnp.ldexp(v, -(scales.astype(jnp.int32)[..., None] - SCALE_BIAS))
    table = jnp.asarray(FP4_VALUES[:8])
    nearest = jnp.argmin(jnp.abs(jnp.abs(q)[..., None] - table), axis=-1)
    codes = (nearest | (jnp.signbit(q).astype(jnp.int32) << 3)).astype(jnp.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.astype(jnp.uint8), scales
