"""The sampler, traced inside the engine's jitted steps: per-row parameters, a few passes over [N, V] logits.

Order (definitions in requests.py): repetition penalty -> presence / frequency penalties -> logit bias ->
constraint mask -> (greedy if temperature == 0) -> temperature -> top_k -> top_p -> min_p -> a draw keyed by the
row's seed folded with the index of the token being generated (fresh noise every token, none shared with other rows).

What a step computes follows what its rows ask (a `SamplerPlan`, chosen by the host from the requests it holds):
penalties and logit bias only when some row uses them, log-probabilities only when some row reports them, top
logprobs only when some row asks and only as many as the largest ask (rounded up to a bucket). No step sorts the
vocabulary. A stochastic draw takes the first of three exact
routes that applies to its row (draw.py):
  candidates  the row's top CANDIDATES tokens (lax.top_k) hold everything top_k / top_p / min_p keep: a draw among
              them (the common case for a trained model's peaked distributions);
  proposals   the kept set is wider: PROPOSALS tokens drawn from the unfiltered distribution by inverse CDF over
              vocabulary blocks, the first one inside the kept set taken (rejection sampling: exact, and it accepts
              with probability >= the kept mass, so >= top_p when top_p filters);
  threshold   nothing accepted (or top_k > CANDIDATES together with top_p): the exact keep threshold found by
              bisection over the float order (32 passes), then one inverse-CDF draw from the kept set.
Each row's route depends on its own logits only, so a row's token never depends on its batch neighbours.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax.engine import draw as draw_lib
from gptoss_jax.engine.slots import SlotState


# status of a sampled row
OK = 0
NOTHING_ALLOWED = 1        # the constraint's mask and the logit bias left no token
NOT_FINITE = 2             # the logits hold NaN or +inf


@dataclasses.dataclass(frozen=True)
class SamplerPlan:
    """What a sampling step computes beyond the token (a static argument of the jitted steps: one compiled variant
    each, made on first use). penalties: some row uses presence / frequency / repetition penalties; bias: some row
    has a logit bias; logprobs: some row reports log-probabilities; num_top: top logprobs computed per row (>= the
    most any row asks; 0: none)."""
    penalties: bool = False
    bias: bool = False
    logprobs: bool = False
    num_top: int = 0


def top_bucket(n: int, limit: int) -> int:
    """Top logprobs to compute when a batch asks for at most n: 0, or the next power of two, at most `limit`."""
    return 0 if n <= 0 else min(1 << (n - 1).bit_length(), limit)


def unpack_bitmask(words: jax.Array, vocab: int) -> jax.Array:
    """Packed allow-masks [N, ceil(V/32)] int32 (bit j of word i = token 32*i + j, llguidance's layout) -> [N, V]."""
    bits = (words[:, :, None] >> jnp.arange(32, dtype=jnp.int32)) & 1
    return bits.reshape(words.shape[0], -1)[:, :vocab].astype(bool)


def adjust_logits(logits: jax.Array, rows: SlotState, allowed: jax.Array | None = None, *, penalties: bool = True,
                  bias: bool = True) -> jax.Array:
    """Penalties, logit bias and the constraint mask on raw logits [N, V] f32 (each part only when asked: a pass
    over [N, V] state it skips is never read)."""
    x = logits
    if penalties:
        counts = rows.counts
        rep = rows.repetition[:, None]
        x = jnp.where(rows.seen | (counts > 0), jnp.where(x > 0, x / rep, x * rep), x)
        c = counts.astype(jnp.float32)
        x = x - c * rows.frequency[:, None] - (counts > 0) * rows.presence[:, None]
    if bias:
        x = x + rows.bias
    if allowed is not None:
        x = jnp.where(allowed, x, -jnp.inf)
    return x


def filter_top(x: jax.Array, top_k: jax.Array, top_p: jax.Array, min_p: jax.Array) -> jax.Array:
    """The definition of the filters by a full sort (tests' reference): top_k, then top_p on what top_k kept, then
    min_p; dropped entries of x [N, V] become -inf."""
    v = x.shape[-1]
    desc = -jnp.sort(-x, axis=-1)
    rank = jnp.arange(v)[None, :]
    k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)[:, None]
    desc_k = jnp.where(rank < k, desc, -jnp.inf)
    p = jax.nn.softmax(desc_k, axis=-1)
    before = jnp.cumsum(p, axis=-1) - p                       # probability of the more likely tokens
    keep = (rank < k) & ((before < top_p[:, None]) | (top_p[:, None] >= 1.0))
    n_keep = jnp.maximum(keep.sum(-1, keepdims=True), 1)
    threshold = jnp.take_along_axis(desc, n_keep - 1, axis=-1)
    x = jnp.where(x >= threshold, x, -jnp.inf)
    top = x.max(-1, keepdims=True)
    floor = top + jnp.log(jnp.maximum(min_p, 1e-30))[:, None]
    return jnp.where((min_p[:, None] > 0) & (x < floor), -jnp.inf, x)


def row_keys(rows: SlotState) -> jax.Array:
    """The noise key of each row's next token: its seed folded with the token's index (fresh every token)."""
    return jax.vmap(jax.random.fold_in)(jax.random.wrap_key_data(rows.key, impl="threefry2x32"), rows.n_gen)


def log_normalizer(x: jax.Array, top: jax.Array) -> jax.Array:
    """logsumexp of x [N, V] given its max [N] (one pass)."""
    (safe,) = draw_lib.own(jnp.where(jnp.isfinite(top), top, 0.0))
    return safe + jnp.log(jnp.sum(jnp.exp(x - safe[:, None]), axis=-1))


def sample(logits: jax.Array, rows: SlotState, allowed: jax.Array | None, plan: SamplerPlan,
           want: jax.Array | None = None):
    """logits [N, V] f32 -> (tokens [N] i32, logprob [N], top ids [N, K], top logprobs [N, K], status [N] i32).

    want [N] (optional): the rows whose token is taken; only those make the step draw (a finished or idle slot
    whose request sampled, or a padding row, never costs the others the stochastic pass).

    K = plan.num_top; logprob is 0 unless plan.logprobs or plan.num_top. status is OK, or NOTHING_ALLOWED (a
    constraint or logit bias left nothing) or NOT_FINITE (NaN / +inf logits): that request fails alone.
    """
    with jax.named_scope("sampling"):
        x = adjust_logits(logits, rows, allowed, penalties=plan.penalties, bias=plan.bias)
        top, greedy = draw_lib.block_max_argmax(x)
        ok = jnp.isfinite(top)
        hot = rows.temperature > 0
        if want is not None:
            hot = hot & want

        def stochastic(x):
            t = jnp.where(hot, rows.temperature, 1.0)
            return draw_lib.draw(x / t[:, None], rows.top_k, rows.top_p, rows.min_p, row_keys(rows), top / t,
                                 active=hot)

        drawn = lax.cond(jnp.any(hot & ok), stochastic, lambda x: greedy, x)
        tok = jnp.where(hot, drawn, greedy)
        n = logits.shape[0]
        lp = jnp.zeros((n,), jnp.float32)
        top_lp, top_id = jnp.zeros((n, 0), jnp.float32), jnp.zeros((n, 0), jnp.int32)
        if plan.logprobs or plan.num_top:
            lse = log_normalizer(logits, top if x is logits else draw_lib.block_max_argmax(logits)[0])
            lp = jnp.take_along_axis(logits, tok[:, None], axis=-1)[:, 0] - lse
            if plan.num_top:
                top_v, top_id = lax.top_k(logits, plan.num_top)
                top_lp = top_v - lse[:, None]
        status = jnp.where(ok, OK, jnp.where(top == -jnp.inf, NOTHING_ALLOWED, NOT_FINITE)).astype(jnp.int32)
        return tok, lp, top_id.astype(jnp.int32), top_lp, status


def record(rows: SlotState, tok: jax.Array, want: jax.Array, ok: jax.Array, max_len: int) -> SlotState:
    """Rows after sampling tok [N] for the rows in want [N] (ok [N]: the sample was valid).

    Counts, last token and lengths advance where the token is taken; decoding stops on a stop token, max_new tokens,
    a full cache (the next token would have no position) or an invalid sample."""
    n = tok.shape[0]
    take = want & ok
    counts = rows.counts.at[jnp.arange(n), tok].add(take.astype(jnp.int32))
    n_gen = rows.n_gen + take
    length = rows.length + (take & rows.active)            # a decoding row's last_tok entered the cache
    hit_stop = (tok[:, None] == rows.stop_ids).any(-1)
    go_on = take & ~hit_stop & (n_gen < rows.max_new) & (length < max_len)
    return dataclasses.replace(rows, counts=counts, n_gen=n_gen, length=length,
                               last_tok=jnp.where(take, tok, rows.last_tok),
                               active=jnp.where(want, go_on, rows.active))
