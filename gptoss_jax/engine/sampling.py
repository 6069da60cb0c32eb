"""The sampler, traced inside the engine's jitted steps: per-row parameters, one pass over [N, V] logits.

Order (definitions in requests.py): repetition penalty -> presence / frequency penalties -> logit bias ->
constraint mask -> (greedy if temperature == 0) -> temperature -> top_k -> top_p -> min_p -> Gumbel-max draw with the
row's key folded with the index of the token being generated. The sort that top_k / top_p need runs only when some row
asks for one (lax.cond), so the default (temperature 1, top_p 1) costs no sort of the vocabulary.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from gptoss_jax.engine.slots import SlotState


def unpack_bitmask(words: jax.Array, vocab: int) -> jax.Array:
    """Packed allow-masks [N, ceil(V/32)] int32 (bit j of word i = token 32*i + j, llguidance's layout) -> [N, V]."""
    bits = (words[:, :, None] >> jnp.arange(32, dtype=jnp.int32)) & 1
    return bits.reshape(words.shape[0], -1)[:, :vocab].astype(bool)


def adjust_logits(logits: jax.Array, rows: SlotState, allowed: jax.Array | None = None) -> jax.Array:
    """Penalties, logit bias and the constraint mask on raw logits [N, V] f32."""
    x = logits
    counts = rows.counts
    rep = rows.repetition[:, None]
    x = jnp.where(rows.seen | (counts > 0), jnp.where(x > 0, x / rep, x * rep), x)
    c = counts.astype(jnp.float32)
    x = x - c * rows.frequency[:, None] - (counts > 0) * rows.presence[:, None]
    x = x + rows.bias
    if allowed is not None:
        x = jnp.where(allowed, x, -jnp.inf)
    return x


def filter_top(x: jax.Array, top_k: jax.Array, top_p: jax.Array, min_p: jax.Array) -> jax.Array:
    """top_k, then top_p on what top_k kept, then min_p; dropped entries of x [N, V] become -inf."""
    v = x.shape[-1]

    def sorted_filter(x):
        desc = -jnp.sort(-x, axis=-1)
        rank = jnp.arange(v)[None, :]
        k = jnp.where(top_k > 0, jnp.minimum(top_k, v), v)[:, None]
        desc_k = jnp.where(rank < k, desc, -jnp.inf)
        p = jax.nn.softmax(desc_k, axis=-1)
        before = jnp.cumsum(p, axis=-1) - p                       # probability of the more likely tokens
        keep = (rank < k) & ((before < top_p[:, None]) | (top_p[:, None] >= 1.0))
        n_keep = jnp.maximum(keep.sum(-1, keepdims=True), 1)
        threshold = jnp.take_along_axis(desc, n_keep - 1, axis=-1)
        return jnp.where(x >= threshold, x, -jnp.inf)

    x = lax.cond(jnp.any((top_k > 0) | (top_p < 1.0)), sorted_filter, lambda x: x, x)
    top = x.max(-1, keepdims=True)
    floor = top + jnp.log(jnp.maximum(min_p, 1e-30))[:, None]
    return jnp.where((min_p[:, None] > 0) & (x < floor), -jnp.inf, x)


def draw(x: jax.Array, rows: SlotState) -> jax.Array:
    """Gumbel-max draw from logits x [N, V]; the noise of row r is a function of (key[r], n_gen[r]) only."""
    keys = jax.vmap(jax.random.fold_in)(jax.random.wrap_key_data(rows.key, impl="threefry2x32"), rows.n_gen)
    g = jax.vmap(lambda k: jax.random.gumbel(k, x.shape[-1:], jnp.float32))(keys)
    return jnp.argmax(x + g, axis=-1).astype(jnp.int32)


def sample(logits: jax.Array, rows: SlotState, allowed: jax.Array | None, num_top: int):
    """logits [N, V] f32 -> (tokens [N] i32, logprob [N], top ids [N, K], top logprobs [N, K], ok [N]).

    ok is False where no token is allowed (a constraint or logit bias left nothing, or the logits are NaN): that
    request fails alone. The log-probability comes from the raw logits, so it is NaN exactly where they are not
    finite: the host tells the two causes apart by it.
    """
    with jax.named_scope("sampling"):
        x = adjust_logits(logits, rows, allowed)
        ok = jnp.isfinite(x.max(-1))
        greedy = jnp.argmax(x, axis=-1).astype(jnp.int32)
        hot = rows.temperature > 0

        def stochastic(x):
            t = jnp.where(hot, rows.temperature, 1.0)[:, None]
            y = filter_top(x / t, rows.top_k, rows.top_p, rows.min_p)
            return draw(y, rows)

        drawn = lax.cond(jnp.any(hot), stochastic, lambda x: greedy, x)
        tok = jnp.where(hot, drawn, greedy)
        logp = jax.nn.log_softmax(logits, axis=-1)
        lp = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        if num_top:
            top_lp, top_id = lax.top_k(logp, num_top)
        else:
            top_lp = jnp.zeros((logits.shape[0], 0), jnp.float32)
            top_id = jnp.zeros((logits.shape[0], 0), jnp.int32)
        return tok, lp, top_id.astype(jnp.int32), top_lp, ok


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
