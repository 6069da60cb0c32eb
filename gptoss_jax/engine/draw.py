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
PROPOSALS = 8       # inverse-CDF draws a row tests at once (all rejected: probability (1 - kept mass) ** 8)


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


def _mass_above(y, m, t):
    """(#{y > t}, sum exp(y - m) over y > t) for thresholds t [N, R] -> two [N, R]."""
    gt = y[:, None, :] > t[:, :, None]
    cnt = jnp.sum(gt, axis=-1, dtype=jnp.int32)
    above = jnp.sum(jnp.where(gt, jnp.exp(y - m[:, None])[:, None, :], 0.0), axis=-1)
    return cnt, above


def _block_sums(y, m, floor=None):
    n, v = y.shape
    blk = block_size(v)
    pe = jnp.exp(y - m[:, None])
    if floor is not None:
        pe = jnp.where(y >= floor[:, None], pe, 0.0)
    return pe.reshape(n, v // blk, blk).sum(-1)


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


def draw(y: jax.Array, top_k: jax.Array, top_p: jax.Array, min_p: jax.Array, keys: jax.Array) -> jax.Array:
    """One token a row from softmax(y [N, V]) filtered by top_k [N] (0: off), top_p [N], min_p [N] (0: off);
    keys [N] typed PRNG keys (the row's noise for this token). Returns int32 [N]."""
    return draw_with_route(y, top_k, top_p, min_p, keys)[0]


def draw_with_route(y, top_k, top_p, min_p, keys):
    """draw(), and the route each row took [N] int32: 0 candidates, 1 proposals, 2 threshold (tests)."""
    n, v = y.shape
    c = min(CANDIDATES, v)
    cv, ci = lax.top_k(y, c)
    m = jnp.where(jnp.isfinite(cv[:, 0]), cv[:, 0], 0.0)
    bs = _block_sums(y, m)
    z = bs.sum(-1)
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)
    use_p = top_p < 1.0
    floor = jnp.where(min_p > 0, m + jnp.log(jnp.maximum(min_p, 1e-30)), -jnp.inf)
    k_c, k_prop, k_thr = (jax.vmap(lambda key, i=i: jax.random.fold_in(key, i))(keys) for i in range(3))

    # ---- candidates: the kept set is known from the top c alone
    pc = jnp.exp(cv - m[:, None]) / z[:, None]
    in_k = jnp.arange(c)[None, :] < k[:, None]
    k_known = (k <= c) | (k >= v)                  # P(top k) from the candidates, or 1 (top_k off)
    pk = jnp.where(k >= v, 1.0, jnp.sum(jnp.where(in_k, pc, 0.0), axis=-1))
    before = (jnp.cumsum(pc, axis=-1) - pc) / pk[:, None]
    keep = in_k & ((before < top_p[:, None]) | ~use_p[:, None])
    n_keep = jnp.maximum(keep.sum(-1), 1)
    thr = jnp.take_along_axis(cv, (n_keep - 1)[:, None], axis=-1)[:, 0]
    known = k_known & ((n_keep < c) | (c == v))
    eff = jnp.maximum(jnp.where(known, thr, -jnp.inf), floor)
    finite = jnp.isfinite(cv[:, 0])
    small = (eff > cv[:, c - 1]) | (c == v) | ~finite
    g = jax.vmap(lambda key: jax.random.gumbel(key, (c,), jnp.float32))(k_c)
    pick = jnp.argmax(jnp.where(cv >= eff[:, None], cv + g, -jnp.inf), axis=-1)
    tok = jnp.take_along_axis(ci, pick[:, None], axis=-1)[:, 0].astype(jnp.int32)

    def kept(t, pk):
        """kept(t) for thresholds t [N, R]."""
        cnt, above = _mass_above(y, m, t)
        return ((cnt < k[:, None]) & ((above / z[:, None] < top_p[:, None] * pk[:, None]) | ~use_p[:, None])
                & (t >= floor[:, None]))

    # ---- proposals: wider kept sets whose top-k mass is known (or not needed: top_p off)
    direct = ~small & ~k_known & use_p                     # P(top k) unknown: straight to the threshold
    wide = ~small & ~direct

    def proposals(tok):
        u = jax.vmap(lambda key: jax.random.uniform(key, (PROPOSALS,), jnp.float32))(k_prop)
        cand = inverse_cdf(y, m, bs, u)
        acc = kept(jnp.take_along_axis(y, cand, axis=-1), pk)
        first = jnp.take_along_axis(cand, jnp.argmax(acc, axis=-1)[:, None], axis=-1)[:, 0]
        got = wide & acc.any(-1)
        return jnp.where(got, first, tok), got

    tok, got = lax.cond(jnp.any(wide), proposals, lambda tok: (tok, jnp.zeros_like(wide)), tok)

    # ---- threshold: the exact boundary by bisection, then one draw from {y >= b}
    rest = ~small & ~got

    def threshold(tok):
        def mass_of_top_k(_):
            """P(top k) for rows with c < k < V: the k-th largest value v_k by bisection, then the mass above it plus
            as many tokens equal to v_k as complete the k (a sort would keep exactly k)."""
            bk = _smallest_true(lambda t: _mass_above(y, m, t[:, None])[0][:, 0] < k, lo, cv[:, 0])
            v_k = jnp.min(jnp.where(y >= bk[:, None], y, jnp.inf), axis=-1)
            cnt, above = (a[:, 0] for a in _mass_above(y, m, v_k[:, None]))
            return (above + (k - cnt) * jnp.exp(v_k - m)) / z

        lo = jnp.full((n,), -jnp.inf)
        top_k_mass = lax.cond(jnp.any(rest & ~k_known & use_p), mass_of_top_k, lambda _: pk, None)
        top_k_mass = jnp.where(k_known, pk, top_k_mass)
        b = _smallest_true(lambda t: kept(t[:, None], top_k_mass)[:, 0], lo, cv[:, 0])
        u = jax.vmap(lambda key: jax.random.uniform(key, (1,), jnp.float32))(k_thr)
        drawn = inverse_cdf(y, m, _block_sums(y, m, b), u, b)[:, 0]
        return jnp.where(rest, drawn, tok)

    tok = lax.cond(jnp.any(rest), threshold, lambda tok: tok, tok)
    return tok, jnp.where(small, 0, jnp.where(got, 1, 2)).astype(jnp.int32)
