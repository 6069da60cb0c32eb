"""Exact draws from filtered distributions without sorting the vocabulary (the stochastic half of sampling.py).

y [N, V] are tempered, adjusted logits; a row keeps the tokens that top_k, then top_p (on what top_k kept,
renormalized), then min_p (relative to the most likely token) keep; ties at the boundary are kept, as a full sort
would keep them (sampling.filter_top is the definition). Membership of one value t is a property of t alone:

    kept(t) = #{y > t} < k  and  P(y > t) / P(top k) < top_p  and  t >= max(y) + log(min_p)

(P over the softmax of y), monotone in t, so the kept set is {y >= b} for the smallest float b with kept(b).
Three routes, per row (sampling.py's docstring says when each applies): `candidates` (lax.top_k of CANDIDATES),
`proposals` (rejection sampling from inverse-CDF draws), `threshold` (b by bisection, then one draw).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

CANDIDATES = 16     # XLA's fast GPU top-k covers k <= 16; more would sort
PROPOSALS = 7       # inverse-CDF draws a row; 3 passes test them (all rejected: probability (1 - kept mass) ** 7)


def block_size(v: int) -> int:
    """Vocabulary block of the two-level inverse CDF: the largest power of two <= 256 dividing v (201088: 128)."""
    b = 256
    while v % b:
        b //= 2
    return b


def _sortable(f: jax.Array) -> jax.Array:
    """float32 -> int32 with the same order (an involution on the bit patterns of non-NaN floats)."""
    b = lax.bitcast_convert_type(f, jnp.int32)
    return jnp.where(b < 0, b ^ jnp.int32(0x7FFFFFFF), b)


def _unsortable(k: jax.Array) -> jax.Array:
    return lax.bitcast_convert_type(jnp.where(k < 0, k ^ jnp.int32(0x7FFFFFFF), k), jnp.float32)


def inverse_cdf(y, m, block_sums, u, floor=None):
    """Tokens [N, R] drawn from softmax(y) (restricted to y >= floor [N] when given) by the uniforms u [N, R]:
    a block by the cumulative block masses, then a token inside it. block_sums [N, V/blk] of exp(y - m) (masked
    alike); m [N] the (finite) row max."""
    n, v = y.shape
    nb = block_sums.shape[1]
    blk = v // nb
    cum = jnp.cumsum(block_sums, axis=-1)
    target = jnp.maximum(u * cum[:, -1:], 0.0)                                   # [N, R]
    last_b = nb - 1 - jnp.argmax(jnp.flip(block_sums > 0, -1), axis=-1)          # last block with mass
    b = jnp.sum(cum[:, None, :] <= target[:, :, None], axis=-1)
    b = jnp.minimum(b, last_b[:, None])
    resid = jnp.maximum(target - (jnp.take_along_axis(cum, b, -1) - jnp.take_along_axis(block_sums, b, -1)), 0.0)
    vals = y.reshape(n, nb, blk)[jnp.arange(n)[:, None], b]                      # [N, R, blk]
    pe = jnp.exp(vals - m[:, None, None])
    if floor is not None:
        pe = jnp.where(vals >= floor[:, None, None], pe, 0.0)
    cin = jnp.cumsum(pe, axis=-1)
    last_j = blk - 1 - jnp.argmax(jnp.flip(pe > 0, -1), axis=-1)
    j = jnp.minimum(jnp.sum(cin <= resid[..., None], axis=-1), last_j)
    return (b * blk + j).astype(jnp.int32)


def own(*row_values):
    """Per-row values [N] for one pass over [N, V]: behind an optimization barrier, so that XLA does not share
    their [N, V] broadcasts between passes (XLA:CPU then materializes the broadcast, and each pass costs several
    times a fused one)."""
    return lax.optimization_barrier(row_values)


def _mass_above(y, m, t):
    """(#{y > t}, sum exp(y - m) over y > t) for one threshold a row t [N]: two reductions over y, written with
    the ops XLA:CPU fuses into its vectorized reductions (a select around exp is not one of them, and would cost a
    materialized [N, V] pass with scalar exps):

        sum_{y > t} e^(y-m) = sum_v (e^(max(y, t) - m) - e^(t - m)) + #{y > t} e^(t - m)

    where every term of the first sum is >= 0 and exactly 0 for y <= t (no cancellation between terms)."""
    m, t = own(m, t)
    et = jnp.exp(t - m)
    excess = jnp.sum(jnp.exp(jnp.maximum(y, t[:, None]) - m[:, None]) - et[:, None], axis=-1)
    (tc,) = own(t)
    cnt = jnp.sum((y > tc[:, None]).astype(jnp.float32), axis=-1)
    return cnt.astype(jnp.int32), excess + cnt * et


def _block_sums(y, m, floor=None):
    n, v = y.shape
    blk = block_size(v)
    if floor is None:
        (m,) = own(m)
        pe = jnp.exp(y - m[:, None])
    else:
        m, floor = own(m, floor)
        pe = jnp.where(y >= floor[:, None], jnp.exp(y - m[:, None]), 0.0)
    return pe.reshape(n, v // blk, blk).sum(-1)


def block_max_argmax(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(max, first argmax) of x [N, V] along V in one pass: the max of each vocabulary block, then the first
    block holding the row max, then the first position in it (a variadic argmax reduction is many times slower
    on XLA:CPU)."""
    n, v = x.shape
    blk = block_size(v)
    bmax = x.reshape(n, v // blk, blk).max(-1)                                   # [N, V/blk]
    top = bmax.max(-1)
    b = jnp.argmax(bmax == top[:, None], axis=-1)
    inside = x.reshape(n, v // blk, blk)[jnp.arange(n), b]                       # [N, blk]
    j = jnp.argmax(inside == top[:, None], axis=-1)
    return top, (b * blk + j).astype(jnp.int32)


def _smallest_true(pred, lo_f, hi_f):
    """Smallest float b in (lo_f, hi_f] with pred(b) [N] true (pred monotone, true at hi_f), by bisection over the
    float order: 32 evaluations."""
    lo, hi = _sortable(lo_f) - 1, _sortable(hi_f)

    def body(_, lh):
        lo, hi = lh
        mid = (lo & hi) + ((lo ^ hi) >> 1)                                       # floor average, no overflow
        yes = pred(_unsortable(mid))
        active = lo + 1 < hi                                                     # (hi - lo overflows)
        return jnp.where(active & ~yes, mid, lo), jnp.where(active & yes, mid, hi)

    _, hi = lax.fori_loop(0, 32, body, (lo, hi))
    return _unsortable(hi)


def _first_accepted(t, kept):
    """Of proposals with values t [N, R] (in draw order), the index of the first one with kept(value) true (kept
    monotone: true for values >= some boundary), and whether there is one. Binary search over the sorted values:
    ceil(log2(R + 1)) evaluations of kept, each one threshold a row."""
    r = t.shape[1]
    desc = -jnp.sort(-t, axis=-1)

    lo, hi = jnp.zeros(t.shape[:1], jnp.int32), jnp.full(t.shape[:1], r, jnp.int32)
    for _ in range(r.bit_length()):                    # the number of kept proposals is in [lo, hi]
        mid = (lo + hi + 1) // 2
        yes = kept(jnp.take_along_axis(desc, jnp.maximum(mid - 1, 0)[:, None], axis=-1)[:, 0])
        active = lo < hi
        lo, hi = jnp.where(active & yes, mid, lo), jnp.where(active & ~yes, mid - 1, hi)
    n_kept = lo
    bound = jnp.take_along_axis(desc, jnp.maximum(n_kept - 1, 0)[:, None], axis=-1)
    acc = (t >= bound) & (n_kept > 0)[:, None]
    return jnp.argmax(acc, axis=-1), n_kept > 0


def draw(y: jax.Array, top_k: jax.Array, top_p: jax.Array, min_p: jax.Array, keys: jax.Array,
         row_max: jax.Array | None = None, active: jax.Array | None = None) -> jax.Array:
    """One token a row from softmax(y [N, V]) filtered by top_k [N] (0: off), top_p [N], min_p [N] (0: off);
    keys [N] typed PRNG keys (the row's noise for this token); row_max [N]: max(y) when the caller knows it;
    active [N] (optional): the rows to draw for (the others get token 0 and never make a route run).
    Returns int32 [N]."""
    return draw_with_route(y, top_k, top_p, min_p, keys, row_max, active)[0]


def draw_with_route(y, top_k, top_p, min_p, keys, row_max=None, active=None):
    """draw(), and the route each row took [N] int32: 0 candidates, 1 proposals, 2 threshold (tests)."""
    n, v = y.shape
    c = min(CANDIDATES, v)
    top = block_max_argmax(y)[0] if row_max is None else row_max
    m = jnp.where(jnp.isfinite(top), top, 0.0)
    (bs,) = own(_block_sums(y, m))                     # (z from bs: XLA would otherwise reduce the exps twice)
    z = bs.sum(-1)                                     # >= 1 (the max contributes exp(0)) on a row with a token
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
    use_p = top_p < 1.0
    floor = jnp.where(min_p > 0, m + jnp.log(jnp.maximum(min_p, 1e-30)), -jnp.inf)
    k_known = (k <= c) | (k >= v)                      # P(top k) from the candidates, or 1 (top_k off)
    mid_k = ~k_known                                   # top_k beyond the candidates: kept() counts
    k_c, k_prop, k_thr = (jax.vmap(lambda key, i=i: jax.random.fold_in(key, i))(keys) for i in range(3))
    finite = jnp.isfinite(top) if active is None else jnp.isfinite(top) & active     # rows with a draw to make
    # a kept set can fit in c candidates only if top_k <= c, or the c most likely tokens can reach top_p (each has
    # probability <= 1 / z), or min_p filters; other rows skip the top-k pass (a flat distribution never needs it)
    maybe_small = finite & ((k <= c) | (c == v) | (use_p & (c >= top_p * z)) | (min_p > 0))

    # ---- candidates: the kept set is known from the top c alone
    def candidates(_):
        cv, ci = lax.top_k(y, c)
        pc = jnp.exp(cv - m[:, None]) / z[:, None]
        in_k = jnp.arange(c)[None, :] < k[:, None]
        pk = jnp.where(k >= v, 1.0, jnp.sum(jnp.where(in_k, pc, 0.0), axis=-1))
        before = (jnp.cumsum(pc, axis=-1) - pc) / pk[:, None]
        keep = in_k & ((before < top_p[:, None]) | ~use_p[:, None])
        n_keep = jnp.maximum(keep.sum(-1), 1)
        thr = jnp.take_along_axis(cv, (n_keep - 1)[:, None], axis=-1)[:, 0]
        known = k_known & ((n_keep < c) | (c == v))
        eff = jnp.maximum(jnp.where(known, thr, -jnp.inf), floor)
        small = maybe_small & ((eff > cv[:, c - 1]) | (c == v))
        g = jax.vmap(lambda key: jax.random.gumbel(key, (c,), jnp.float32))(k_c)
        pick = jnp.argmax(jnp.where(cv >= eff[:, None], cv + g, -jnp.inf), axis=-1)
        return jnp.take_along_axis(ci, pick[:, None], axis=-1)[:, 0].astype(jnp.int32), small, pk

    no_candidates = lambda _: (jnp.zeros((n,), jnp.int32), jnp.zeros((n,), bool), jnp.ones((n,), jnp.float32))
    tok, small, pk = lax.cond(jnp.any(maybe_small), candidates, no_candidates, None)
    small = small | ~finite                            # nothing to draw (the caller reports the row) or not asked

    def kept(t, pk):
        """kept(t) for one threshold a row, t [N]."""
        cnt, above = _mass_above(y, m, t)
        return (((cnt < k) | ~mid_k) & ((above < top_p * pk * z) | ~use_p) & (t >= floor))

    # ---- proposals: wider kept sets whose top-k mass is known (or not needed: top_p off)
    direct = ~small & ~k_known & use_p                 # P(top k) unknown: straight to the threshold
    wide = ~small & ~direct

    def proposals(tok):
        u = jax.vmap(lambda key: jax.random.uniform(key, (PROPOSALS,), jnp.float32))(k_prop)
        cand = inverse_cdf(y, m, bs, u)
        first, any_kept = _first_accepted(jnp.take_along_axis(y, cand, axis=-1), lambda t: kept(t, pk))
        got = wide & any_kept
        return jnp.where(got, jnp.take_along_axis(cand, first[:, None], axis=-1)[:, 0], tok), got

    tok, got = lax.cond(jnp.any(wide), proposals, lambda tok: (tok, jnp.zeros_like(wide)), tok)

    # ---- threshold: the exact boundary by bisection, then one draw from {y >= b}
    rest = ~small & ~got

    def threshold(tok):
        def mass_of_top_k(_):
            """P(top k) for rows with c < k < V: the k-th largest value v_k by bisection, then the mass above it plus
            as many tokens equal to v_k as complete the k (a sort would keep exactly k)."""
            bk = _smallest_true(lambda t: _mass_above(y, m, t)[0] < k, lo, m)
            v_k = jnp.min(jnp.where(y >= bk[:, None], y, jnp.inf), axis=-1)
            cnt, above = _mass_above(y, m, v_k)
            return (above + (k - cnt) * jnp.exp(v_k - m)) / z

        lo = jnp.full((n,), -jnp.inf)
        top_k_mass = lax.cond(jnp.any(rest & mid_k & use_p), mass_of_top_k, lambda _: pk, None)
        top_k_mass = jnp.where(k_known, pk, top_k_mass)
        b = _smallest_true(lambda t: kept(t, top_k_mass), lo, m)
        u = jax.vmap(lambda key: jax.random.uniform(key, (1,), jnp.float32))(k_thr)
        drawn = inverse_cdf(y, m, _block_sums(y, m, b), u, b)[:, 0]
        return jnp.where(rest, drawn, tok)

    tok = lax.cond(jnp.any(rest), threshold, lambda tok: tok, tok)
    return tok, jnp.where(small, 0, jnp.where(got, 1, 2)).astype(jnp.int32)
