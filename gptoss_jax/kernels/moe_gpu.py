"""MXFP4 expert matmul for NVIDIA GPUs: one Pallas kernel (Triton lowering) for decode and prefill shapes.

    out[m] = x[m] @ W[group(m)].T,  x [M, K] sorted by group, W MXFP4 [G, N, K], f32 out [M, N]

Design (see kernels/README.md for the reasoning and what still needs measuring on a GPU):
- Grid (N tiles, windows). A window is `groups.window_of_visit`: at most `tm` rows of ONE group, aligned to the
  group's first row; the rows past sum(group_sizes) form a last pseudo-group whose windows write zeros. Each
  program finds its window itself from `group_sizes` with a few vector ops (cumsum over the groups), so nothing is
  computed by XLA before the launch and empty groups cost nothing. Windows never share output rows: every program
  stores its [tm, bn] tile straight out under a row mask (no zero-init, no atomics, no second pass).
- Decode shape (few rows, `tm` = 16): a group with <= 16 rows is one window, so each routed expert's packed weights
  are read from HBM exactly once; the grid is (N / bn) x (#windows), windows past the last real one exit at once.
- Prefill shape (`tm` 32..128): a grouped matmul. Each program loops over K in steps of bk = 32 * nbk, loads the
  packed bytes [bn, nbk, 16] and scales [bn, nbk], dequantizes them in registers (dequant.e4m3_values: bit shuffle
  to FP8 E4M3, hardware FP8 conversion, one multiply by the block scale) and accumulates
  acc[bn, tm] += W_tile[bn, bk] @ x_tile[tm, bk].T in float32. Putting the weights on the left makes the
  dequantized registers the A operand of Hopper's wgmma (A may come from registers, B must sit in shared memory),
  so dequantized weights never touch shared memory or HBM.
- Ragged edges (N % bn, K % bk, rows past M) are handled with masked loads (weights -> byte 0 = +0.0, x -> 0).
- Split K (`split_k`, decode only): when few experts are hit (batch 1: 4), the K loop is shared among programs
  that write partial sums [split_k, M, N]; XLA adds them (a few hundred KB at decode shapes).
- Bias (optional [G, N]): the window's expert's row is added to the tile in the epilogue, after the K loop (split
  K: share 0 only). The SwiGLU between the two expert matmuls stays outside: with split K it needs the whole sum.

Falls back to the jnp reference for dense (unpacked) weights, and when no GPU backend is present unless
`interpret=True` (CPU tests run the same kernel body through Pallas' interpreter).
"""
from __future__ import annotations

import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from gptoss_jax.kernels import dequant as dq
from gptoss_jax.kernels import DEQUANT_ROUTES
from gptoss_jax.kernels.groups import max_windows, window_of_visit, window_rows
from gptoss_jax.kernels.moe_reference import expert_matmul_reference
from gptoss_jax.mxfp4 import BLOCK, Mxfp4Weight

from gptoss_jax.kernels._triton import pltr

log = logging.getLogger(__name__)
TARGET_PROGRAMS = 264   # about two programs an SM on an H100 (132 SMs)

@dataclasses.dataclass(frozen=True)
class GpuTiles:
    """Tile sizes and Triton launch options. tm, bn, nbk must be powers of two (Triton block shapes)."""
    tm: int          # rows a window (and the N dimension of the wgmma)
    bn: int          # output columns a program
    nbk: int         # MXFP4 blocks (32 values) a K step
    num_warps: int = 4
    num_stages: int = 3
    # kernels.DEQUANT_ROUTES: "kperm" / "asm" (inline PTX on bf16 activations, an exact jnp twin elsewhere) or
    # "e4m3" (portable jnp ops everywhere)
    dequant: str = DEQUANT_ROUTES[0]
    split_k: int = 1        # K shares a window (partial sums added by XLA): more programs when few experts are hit


def _pow2_at_least(n: int, lo: int) -> int:
    return max(lo, 1 << max(0, (n - 1).bit_length()))


def pick_tiles(m: int, n: int, k: int, g: int, dequant: str = DEQUANT_ROUTES[0]) -> GpuTiles:
    """Default tiles by shape and MXFP4 decoding route (kernels.DEQUANT_ROUTES), chosen from the sm_90 SASS
    (benchmarks/triton_offline.py: hot-loop instructions a weight, registers, shared memory), not yet from timings;
    benchmarks/kernel_sweep.py --sweep times others on a GPU.

    tm (rows a window) comes from the routing's distribution (groups.window_rows), not the mean rows an expert, so
    decode batches read each routed expert about once. kperm: 8 warps (two warpgroups of 64 weight rows) and 8 MXFP4
    blocks a K step amortise the loop's fixed work (addresses, wgmma descriptors, the scale load) over 128 weights a
    thread: 4.4-4.7 instructions a weight at decode against 5.0-5.4 with 4 blocks; prefill (tm = 128) keeps 4 blocks,
    whose x tiles fit 3 stages in shared memory. e4m3 / asm keep the tiles their SASS was tuned with (with 4 warps,
    bn = 64 gives every warp its own 16 weight rows; bn = 32 made two warps decode the same weights).
    """
    tm = window_rows(m, g)
    if dequant == "kperm":
        bn, nbk, warps, stages = (128, 8, 8, 3) if tm <= 32 else (128, 8, 8, 2) if tm == 64 else (128, 4, 8, 3)
        min_steps = 4
    elif tm <= 32:
        bn, nbk, warps, stages, min_steps = 64, 4, 4, 4, 8
    else:
        bn, nbk, warps, stages, min_steps = 128, 2, 8 if tm == 128 else 4, 3, 8
    split = 1
    if tm <= 32:
        # batch-1 decode hits 4 experts: 4 windows x 45 N tiles of a 5760-wide output is 180 programs on 132 SMs,
        # too few loads in flight; split K until about TARGET_PROGRAMS (each share keeps >= min_steps K steps)
        programs = -(-n // bn) * min(m, g)
        split = max(1, min(-(-TARGET_PROGRAMS // programs), -(-k // (BLOCK * nbk)) // min_steps))
    return GpuTiles(tm=tm, bn=bn, nbk=nbk, num_warps=warps, num_stages=stages, dequant=dequant, split_k=split)


def _kernel(sizes_ref, x_ref, blocks_ref, scales_ref, *refs, tiles: GpuTiles, m: int, n: int, k: int,
            g: int, lanes: int, use_asm: bool):
    bias_ref, out_ref = refs if len(refs) == 2 else (None, refs[0])     # the bias is optional
    tm, bn, nbk = tiles.tm, tiles.bn, tiles.nbk
    j, v, share = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    lane = jnp.arange(lanes, dtype=jnp.int32)
    sizes = pltr.load(sizes_ref.at[pl.ds(0, lanes)], mask=lane <= g, other=0)     # [G + 1] incl. the tail
    layer = sizes_ref[lanes]                                  # weights are [P, G, N, K/32, 16]: read layer `layer`
    group, lo, hi = window_of_visit(sizes, v, tm)
    rows = lo + jnp.arange(tm, dtype=jnp.int32)
    cols = j * bn + jnp.arange(bn, dtype=jnp.int32)
    out_tile = out_ref.at[share, pl.ds(lo, tm), pl.ds(j * bn, bn)]
    out_mask = (rows[:, None] < hi) & (cols[None, :] < n)

    @pl.when(group < g)
    def _():
        n_blocks = k // BLOCK
        # masks only where a tile can overhang (static): N edge, K edge of the weights, K edge of x (x is padded to
        # whole K steps for kperm), rows past M
        col_ok = (cols < n) if n % bn else None
        x_cols = x_ref.shape[1]

        def scales_at(i):
            kb = i * nbk + jnp.arange(nbk, dtype=jnp.int32)
            ok = (kb < n_blocks)[None, :] if n_blocks % nbk else None
            ok = ok if col_ok is None else (col_ok[:, None] if ok is None else col_ok[:, None] & ok)
            return ok, pltr.load(scales_ref.at[layer, group, pl.ds(j * bn, bn), pl.ds(i * nbk, nbk)], mask=ok,
                                 other=None if ok is None else dq.SCALE_BIAS)

        def k_step(i, carry):
            acc, scales = carry
            w_mask, _ = scales_at(i)
            # the next step's scales, a step ahead: too narrow for cp.async (2-byte aligned rows), so a plain load
            # whose latency the current step hides
            _, scales_next = scales_at(jnp.minimum(i + 1, last))
            kk = i * nbk * BLOCK + jnp.arange(nbk * BLOCK, dtype=jnp.int32)
            x_mask = rows[:, None] < m
            if x_cols % (nbk * BLOCK):
                x_mask = x_mask & (kk[None, :] < x_cols)
            x = pltr.load(x_ref.at[pl.ds(lo, tm), pl.ds(i * nbk * BLOCK, nbk * BLOCK)], mask=x_mask, other=0)
            packed = pltr.load(blocks_ref.at[layer, group, pl.ds(j * bn, bn), pl.ds(i * nbk, nbk), :],
                               mask=None if w_mask is None else w_mask[:, :, None],
                               other=None if w_mask is None else 0)
            if tiles.dequant == "kperm":           # columns in the kperm order, as x (permuted by the caller)
                w = dq.kperm_values(packed, scales, x.dtype, use_asm=use_asm)
            elif tiles.dequant == "asm" and use_asm:
                w = dq.asm_bf16_values(packed, scales)                                # [bn, nbk * 32]
            else:
                w = dq.e4m3_values(packed, scales, x.dtype)
            acc = acc + lax.dot_general(w, x, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
            return acc, scales_next

        steps = pl.cdiv(n_blocks, nbk)
        per_share = pl.cdiv(steps, tiles.split_k)
        first = share * per_share
        last = jnp.minimum(first + per_share, steps)
        acc, _ = lax.fori_loop(first, last, k_step, (jnp.zeros((bn, tm), jnp.float32), scales_at(first)[1]))
        if bias_ref is not None:      # epilogue: the expert's bias (split K: in share 0's partial sum only)
            bias = pltr.load(bias_ref.at[group, pl.ds(j * bn, bn)], mask=col_ok,
                             other=None if col_ok is None else 0).astype(jnp.float32)
            if tiles.split_k > 1:
                bias = jnp.where(share == 0, bias, 0.0)
            acc = acc + bias[:, None]
        pltr.store(out_tile, acc.T, mask=out_mask)

    @pl.when(group == g)                                     # rows past the groups: zeros
    def _():
        pltr.store(out_tile, jnp.zeros((tm, bn), jnp.float32), mask=out_mask)


# jitted so that a caller that drops the result can drop the call: pallas_call itself is never dead-code eliminated,
# which flax's nn.scan (the model's layer loop) rejects as "broadcasted variable has a data dependency".
@functools.partial(jax.jit, static_argnames=("tiles", "interpret", "dequant"))
def mxfp4_matmul_pallas(x: jax.Array, blocks: jax.Array, scales: jax.Array, group_sizes: jax.Array, layer=None,
                        bias: jax.Array | None = None, *, tiles: GpuTiles | None = None, interpret: bool = False,
                        dequant: str = DEQUANT_ROUTES[0]) -> jax.Array:
    """The kernel itself: x [M, K], blocks [G, N, K/32, 16] u8, scales [G, N, K/32] u8, group_sizes [G] -> f32.

    With `layer`, blocks/scales carry a leading layer axis ([P, G, ...]) and that layer's experts are read in place.
    bias (optional) [G, N]: each window's expert's row added in the epilogue, after the K loop.
    dequant: the decoding route when `tiles` is not given (explicit tiles carry their own).
    """
    if layer is None:
        blocks, scales, layer = blocks[None], scales[None], 0
    m, k = x.shape
    g, n = blocks.shape[1:3]
    if k % BLOCK or blocks.shape[3] * BLOCK != k:
        raise ValueError(f"x has K={k} but the weights hold K={blocks.shape[3] * BLOCK} (multiples of {BLOCK})")
    if bias is not None and bias.shape != (g, n):
        raise ValueError(f"bias has shape {list(bias.shape)}, expected [experts, N] = {[g, n]}")
    tiles = tiles or pick_tiles(m, n, k, g, dequant)
    lanes = _pow2_at_least(g + 1, 16)
    sizes = jnp.pad(jnp.concatenate([group_sizes.astype(jnp.int32),
                                     (m - jnp.sum(group_sizes.astype(jnp.int32)))[None]]), (0, lanes - g - 1))
    sizes = jnp.concatenate([sizes, jnp.asarray(layer, jnp.int32).reshape(1)])          # [lanes + 1]
    use_asm = not interpret and x.dtype == jnp.bfloat16
    if tiles.dequant == "kperm":
        x = dq.permute_k(x, tiles.nbk)                  # [M, K rounded up to a K step], tile columns permuted
    kernel = functools.partial(_kernel, tiles=tiles, m=m, n=n, k=k, g=g, lanes=lanes, use_asm=use_asm)
    partial_sums = pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((tiles.split_k, m, n), jnp.float32),
        grid=(pl.cdiv(n, tiles.bn), max_windows(m, g, tiles.tm), tiles.split_k),
        interpret=interpret,
        compiler_params=pltr.CompilerParams(num_warps=tiles.num_warps, num_stages=tiles.num_stages),
        name="mxfp4_expert_matmul",
    )(sizes, x, blocks, scales, *(() if bias is None else (bias,)))
    return partial_sums[0] if tiles.split_k == 1 else jnp.sum(partial_sums, axis=0)


_warned: set[str] = set()


def _fallback(reason: str, x, w, group_sizes, layer, bias):
    if reason not in _warned:
        _warned.add(reason)
        log.warning("MoE kernel pallas_gpu: %s; using the jnp reference", reason)
    return expert_matmul_reference(x, w, group_sizes, layer=layer, bias=bias)


def _backend() -> str:
    """The platform being lowered for: an abstract device's (kernels/offline.py lowers for a GPU that is not
    here, e.g. `gptoss bench`'s op counts on a CPU machine), else JAX's default backend."""
    device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    return getattr(device, "platform", None) or jax.default_backend()


def expert_matmul_gpu(x: jax.Array, w, group_sizes: jax.Array, *, layer=None, interpret: bool = False,
                      tiles: GpuTiles | None = None, dequant: str = DEQUANT_ROUTES[0],
                      bias: jax.Array | None = None) -> jax.Array:
    """`kernels.expert_matmul` on a GPU (bias in the kernel's epilogue); the reference where the kernel does not
    apply (dense weights, no GPU)."""
    if not isinstance(w, Mxfp4Weight):
        return _fallback("dense (unpacked) expert weights", x, w, group_sizes, layer, bias)
    if not interpret and _backend() != "gpu":
        return _fallback(f"no GPU backend (backend is {_backend()})", x, w, group_sizes, layer, bias)
    if x.shape[0] == 0:
        return jnp.zeros((0, w.blocks.shape[-3]), jnp.float32)
    return mxfp4_matmul_pallas(x, w.blocks, w.scales, group_sizes, layer, bias, tiles=tiles, interpret=interpret,
                               dequant=dequant)
