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


# ---------------------------------------------------------------------------------------------- the "kperm" route
# Two ideas. (1) K order: wgmma's register A operand gives thread q (= lane % 4) the columns 16i + 8j + 2q + h of a
# K tile; if the tile's columns are permuted so that those are the 8*nbk CONSECUTIVE natural values
# [8*nbk*q, 8*nbk*(q+1)) (a whole 32-value block when nbk = 4), each thread decodes whole blocks: one 16-byte load and
# ONE scale a row per K step instead of stride-4 byte loads and a scale every 8 values. A dot product does not care
# about the order of its sum, so the activations take the same permutation (permute_k, outside the kernel) and the
# result is unchanged, whatever layout Triton actually picks (then only speed changes). (2) Decoding: per 2 bytes,
# three integer ops make two bf16 values (an IMAD places two copies of each nibble so a mask keeps its sign at bit
# 15 and its 3 magnitude bits at the exponent/mantissa boundary: the E2M1 value * 2**-126, exact, subnormals
# included) and two bf16x2 multiplies scale them (* 2**127, then * 2**(s - 128), a bf16 built once a block; every
# product is exact with IEEE subnormals, so every scale byte 0..255 gives mxfp4.unpack's bits, overflow to inf
# included). About 2.75 issue slots a weight for the decode itself.
KPERM_K127 = 0x7F007F00                        # bf16x2 (2**127, 2**127)
KPERM_SPREAD = (0x4140, 0x4342)                # prmt: bytes (0, 1), (2, 3) of 4 into the low bytes of two halves
KPERM_NIBBLE = {"low": (0x000F000F, 0x1040),   # (mask, multiplier): copies at << 6 and << 12
                "high": (0x00F000F0, 0x0104)}  # copies at << 2 and << 8
KPERM_KEEP = 0x81C081C0                        # sign at bit 15, magnitude at bits 8..6 of each half
_ASM_KPERM = """
{{
.reg .b32 t, u, k, z;
mov.b32 k, 0x{k127:08X};
mov.b32 z, 0x80008000;
""" + "".join("""prmt.b32 t, $2, 0, 0x{spread%d:04X};
and.b32 u, t, 0x{mask:08X};
mul.lo.u32 u, u, 0x{mult:04X};
and.b32 u, u, 0x{keep:08X};
fma.rn.bf16x2 u, u, k, z;
fma.rn.bf16x2 $%d, u, $%d, z;
""" % (half, half, 3 + half) for half in (0, 1)) + "}}\n"
# $0, $1: the values of one nibble of bytes (0, 1), (2, 3) as bf16x2; $2: 4 code bytes; $3, $4: their scales as
# bf16x2 (bytes (0, 1), (2, 3)). prmt spreads bytes 0, 1 (2, 3) into the two 16-bit halves, so each byte's value
# lands in its own half: position independent, whichever 4 elements Triton packs together. One asm a nibble (Pallas
# lowers one result an inline asm); ptxas shares the prmt of the two.
_ASM_KPERM_LOW, _ASM_KPERM_HIGH = (
    _ASM_KPERM.format(k127=KPERM_K127, spread0=KPERM_SPREAD[0], spread1=KPERM_SPREAD[1], mask=mask, mult=mult,
                      keep=KPERM_KEEP) for mask, mult in (KPERM_NIBBLE["low"], KPERM_NIBBLE["high"]))


def kperm_scale_bits(scales: jax.Array) -> jax.Array:
    """uint8 scale bytes -> uint16 bits of the bf16 2**(s - 128), exact for every byte (s < 2: subnormals)."""
    s = scales.astype(jnp.int32)
    return jnp.where(s >= 2, (s - 1) << 7, 0x20 << s).astype(jnp.uint16)


def k_tile_order(values: jax.Array, nbk: int) -> jax.Array:
    """[..., nbk * 32] natural order -> the kperm order of one K tile: column 16i + 8j + 2q + h holds natural value
    8*nbk*q + 4i + 2h + j, i.e. byte 4*nbk*q + 2i + h, nibble j. Thread q's wgmma registers then hold
    (low nibble of bytes 2i, 2i+1), (high nibble of the same bytes): exactly the bf16x2 registers the decode writes."""
    lead = values.shape[:-1]
    v = values.reshape(*lead, 4, 2 * nbk, 2, 2)                 # q, i, byte parity h, nibble j
    r = len(lead)
    return jnp.transpose(v, (*range(r), r + 1, r + 3, r, r + 2)).reshape(*lead, 32 * nbk)


def permute_k(x: jax.Array, nbk: int) -> jax.Array:
    """Activations [M, K] -> [M, K'] in the kperm order of every K tile of 32 * nbk values (K' = K rounded up to a
    tile, zero padded): x' @ W'.T == x @ W.T for the weights the kernel decodes in that order."""
    m, k = x.shape
    bk = 32 * nbk
    pad = -k % bk
    if pad:
        x = jnp.pad(x, ((0, 0), (0, pad)))
    tiles = x.reshape(m, (k + pad) // bk, bk)
    return k_tile_order(tiles, nbk).reshape(m, k + pad)


def exact_bf16_bits(codes: jax.Array, scales: jax.Array) -> jax.Array:
    """int32 E2M1 codes (0..15) + int32 scale bytes -> uint16 bf16 bits of code_value * 2**(s - 127), exact for every
    code and scale (subnormals, overflow to inf) with integer ops only: the kperm route's twin where inline PTX cannot
    run (interpret mode, float32 activations)."""
    mag = codes & 7
    e = mag >> 1
    big = e > 0
    exp = jnp.where(big, e + scales - 1, scales - 1)          # biased exponent; 0.5 (mag 1) is 2**(s - 128)
    sig = jnp.where(big, 128 | ((mag & 1) << 6), 128)          # 1.m in 1/128 units
    normal = jnp.where(exp >= 255, 0x7F80, (exp << 7) | (sig & 127))
    tiny = sig >> jnp.clip(1 - exp, 0, 31)                    # exp <= 0: subnormal, value / 2**-133
    bits = jnp.where(mag == 0, 0, jnp.where(exp > 0, normal, tiny)) | ((codes & 8) << 12)
    return bits.astype(jnp.uint16)


def kperm_values(blocks: jax.Array, scales: jax.Array, dtype, *, use_asm: bool) -> jax.Array:
    """blocks uint8 [bn, nbk, 16] + scales uint8 [bn, nbk] -> weights [bn, nbk * 32] in `dtype`, columns in the kperm
    order (k_tile_order). use_asm: the inline-PTX decode (GPU, bf16); otherwise its exact integer twin."""
    nbk = blocks.shape[-2]
    if use_asm:
        from gptoss_jax.kernels._triton import pltr

        c2 = lax.bitcast_convert_type(kperm_scale_bits(scales), jnp.bfloat16)
        wide = jnp.broadcast_to(c2[..., None], blocks.shape)
        out = [jax.ShapeDtypeStruct(blocks.shape, jnp.bfloat16)]
        [lo], [hi] = (pltr.elementwise_inline_asm(asm, args=[blocks, wide], constraints="=r,=r,r,r,r", pack=4,
                                                  result_shape_dtypes=out) for asm in (_ASM_KPERM_LOW, _ASM_KPERM_HIGH))
        pairs = jnp.stack([lo, hi], axis=-1)                                          # [bn, nbk, 16, 2]
    else:
        b = blocks.astype(jnp.int32)
        s = scales.astype(jnp.int32)[..., None]
        bits = jnp.stack([exact_bf16_bits(b & 15, s), exact_bf16_bits(b >> 4, s)], axis=-1)
        pairs = lax.bitcast_convert_type(bits, jnp.bfloat16)
    w = pairs.reshape(*blocks.shape[:-2], nbk * 32)
    return k_tile_order(w, nbk).astype(dtype)


def kperm_formula_reference(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The kperm PTX above, instruction by instruction, in numpy (bf16x2 FMA = exact product rounded once to bf16,
    IEEE subnormals kept, as the GPU computes it). blocks uint8 [..., 16] (groups of 4 bytes are one asm call),
    scales uint8 [...] -> float64 [..., 32] values in natural order (low nibble first)."""
    import ml_dtypes

    def bf16(bits):                                    # uint32 -> two float64 halves (low, high)
        half = lambda h: h.astype(np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
        return half(bits & 0xFFFF), half(bits >> 16)

    def fma_bf16x2(a, b):                              # fma.rn.bf16x2 d, a, b, -0 for 2 lanes
        with np.errstate(over="ignore"):               # overflow rounds to inf, as on the GPU
            return tuple(np.asarray(x * y, np.float64).astype(ml_dtypes.bfloat16).astype(np.float64)
                         for x, y in zip(a, b))

    def prmt(a, sel):                                  # prmt.b32 d, a, 0, sel (selector nibbles 0-3: a's bytes)
        out = np.zeros_like(a)
        for i in range(4):
            idx = (sel >> (4 * i)) & 7
            byte = (a >> (8 * idx)) & 0xFF if idx < 4 else np.zeros_like(a)
            out |= byte << (8 * i)
        return out

    b = blocks.astype(np.uint32).reshape(*blocks.shape[:-1], 4, 4)
    v = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)            # [..., 4] asm calls
    c2 = np.asarray(kperm_scale_bits(jnp.asarray(scales))).astype(np.uint32)[..., None]
    scale_pair = bf16(c2 | (c2 << 16))                                                   # $5 == $6 here
    k127 = bf16(np.uint32(KPERM_K127))
    out = np.zeros((*v.shape, 4, 2))                                                     # [..., call, byte, nibble]
    for t_sel, byte0 in zip(KPERM_SPREAD, (0, 2)):
        t = prmt(v, t_sel)
        for nibble, (mask, mult) in enumerate((KPERM_NIBBLE["low"], KPERM_NIBBLE["high"])):
            u = ((t & mask) * mult) & 0xFFFFFFFF & KPERM_KEEP
            lo_half, hi_half = fma_bf16x2(fma_bf16x2(bf16(u), k127), scale_pair)
            out[..., byte0, nibble], out[..., byte0 + 1, nibble] = lo_half, hi_half
    return out.reshape(*blocks.shape[:-1], 32)
