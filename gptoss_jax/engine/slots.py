"""SlotState: everything the jitted steps know about the requests in the engine's fixed slots, as device arrays.

One row per slot. Sampling parameters [B], the penalty / bias history [B, V] (9 bytes a vocabulary entry: output
token counts int32, prompt-token flags bool, logit bias float32; 1.8 MB a slot for the real 201088-token vocabulary),
and progress: the last token, the cache length (= position of the next token), tokens generated, whether decoding.
Rows are (re)written when a request is admitted (`admit_row`), so a slot never needs clearing: stale cache entries
past a new request's length are invisible to it (keys are masked by position).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class SlotState:
    temperature: jax.Array     # [B] f32
    top_p: jax.Array           # [B] f32
    top_k: jax.Array           # [B] i32
    min_p: jax.Array           # [B] f32
    presence: jax.Array        # [B] f32
    frequency: jax.Array       # [B] f32
    repetition: jax.Array      # [B] f32
    key: jax.Array             # [B, 2] u32 threefry key data of the request's seed
    stop_ids: jax.Array        # [B, S] i32, -1 padded
    max_new: jax.Array         # [B] i32 tokens to generate at most
    counts: jax.Array          # [B, V] i32 occurrences in the output so far
    seen: jax.Array            # [B, V] bool in the prompt
    bias: jax.Array            # [B, V] f32 logit bias
    last_tok: jax.Array        # [B] i32 last generated token (the next decode input)
    length: jax.Array          # [B] i32 tokens in the cache = position of last_tok
    n_gen: jax.Array           # [B] i32 tokens generated so far
    active: jax.Array          # [B] bool decoding

    @staticmethod
    def zeros(batch: int, vocab: int, max_stop: int, sharding=None) -> "SlotState":
        return jax.device_put(SlotState.host_zeros(batch, vocab, max_stop), sharding)

    @staticmethod
    def host_zeros(batch: int, vocab: int, max_stop: int) -> "SlotState":
        f = lambda shape, dt: np.zeros(shape, dt)
        st = SlotState(
            temperature=f((batch,), np.float32), top_p=np.ones((batch,), np.float32), top_k=f((batch,), np.int32),
            min_p=f((batch,), np.float32), presence=f((batch,), np.float32), frequency=f((batch,), np.float32),
            repetition=np.ones((batch,), np.float32), key=f((batch, 2), np.uint32),
            stop_ids=np.full((batch, max_stop), -1, np.int32), max_new=f((batch,), np.int32),
            counts=f((batch, vocab), np.int32), seen=f((batch, vocab), np.bool_), bias=f((batch, vocab), np.float32),
            last_tok=f((batch,), np.int32), length=f((batch,), np.int32), n_gen=f((batch,), np.int32),
            active=f((batch,), np.bool_))
        return st

    @staticmethod
    def nbytes_per_slot(vocab: int, max_stop: int) -> int:
        return sum(a.nbytes for a in jax.tree.leaves(SlotState.host_zeros(1, vocab, max_stop)))

    def rows(self, idx: jax.Array) -> "SlotState":
        """The rows idx [N] (indices past the end give zeros: padding rows)."""
        return jax.tree.map(lambda a: a.at[idx].get(mode="fill", fill_value=0), self)

    def put_rows(self, idx: jax.Array, rows: "SlotState") -> "SlotState":
        """Write rows back at idx [N]; indices past the end write nothing."""
        return jax.tree.map(lambda a, r: a.at[idx].set(r, mode="drop"), self, rows)


def admit_row(state: SlotState, slot, v: dict, bias_row) -> SlotState:
    """Traced body of the engine's admit step: reset row `slot` for a new request (not yet decoding).

    v: the request's sampling fields {temperature, top_p, top_k, min_p, presence, frequency, repetition, key,
    stop_ids, max_new}; bias_row [V] f32 or None (no logit bias)."""
    upd = dict(v)
    vocab = state.counts.shape[1]
    upd.update(counts=jnp.zeros((vocab,), jnp.int32), seen=jnp.zeros((vocab,), bool),
               bias=jnp.zeros((vocab,), jnp.float32) if bias_row is None else bias_row,
               last_tok=jnp.int32(0), length=jnp.int32(0), n_gen=jnp.int32(0), active=jnp.bool_(False))
    return SlotState(**{f.name: getattr(state, f.name).at[slot].set(jnp.asarray(upd[f.name]).astype(
        getattr(state, f.name).dtype)) for f in dataclasses.fields(SlotState)})
