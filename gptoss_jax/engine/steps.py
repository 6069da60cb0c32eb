"""The engine's jitted device steps. Static shapes only (buckets.py); the KV cache and the slot state are donated
into every step that changes them, so they are updated in place and memory never holds two copies.

  allocate       a zero cache and slot state, made by a compiled program like every step's outputs (same
                 shardings), so the first call of a step compiles the same program as all later ones
  admit          reset one slot's row of the SlotState for a new request
  prefill        one chunk for a few slots: forward over their cache rows only (Transformer cache_rows), mark the
                 prompt tokens seen, sample the first token where the chunk ends the prompt; optionally the
                 log-probability of every next prompt token (scoring)
  decode_loop    up to `steps` tokens for every decoding slot in one call (lax.while_loop; a slot stops on its own
                 stop tokens / max tokens / full context, the loop ends early when none is left); `steps` is an
                 argument, not a shape: every round length up to n_steps runs one compiled program. With token
                 masks (`words`), the first step samples under them and the `masked` slots (constrained requests,
                 whose next mask needs the host) stop after that one token while the others go on.
Every step returns what the host reads as ONE int32 array (`pack`: token, logprob bits, status, top ids, top
logprob bits, and for scoring the prompt tokens' logprob bits and greedy flags), so a round costs one
device-to-host transfer.
Steps run the model's own Transformer module and are built once per (model key = config, dtype, mesh, kernels;
engine sizes) and shared by every Engine with those, so tests and restarts inside one process reuse compilations,
and two models that differ in any of them (a kernel choice included) never share a compiled step. The sampler's
plan (sampling.SamplerPlan) is a static argument: a step compiles once per plan it is used with.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from gptoss_jax import sharding
from gptoss_jax.engine import sampling
from gptoss_jax.engine.sampling import SamplerPlan
from gptoss_jax.engine.slots import SlotState, admit_row
from gptoss_jax.model.transformer import CACHE_AXES, KVCache


class Steps:
    def __init__(self, module, max_len: int):
        """module: the model's Transformer (config, dtype, mesh and kernels are its fields)."""
        self.module = module
        self.cfg, self.mesh, self.max_len = module.cfg, module.mesh, max_len
        self.admit = jax.jit(self._admit, donate_argnums=(0,))
        self.prefill = jax.jit(self._prefill, static_argnames=("kv_len", "score", "plan"), donate_argnums=(1, 2))
        self.decode_loop = jax.jit(self._decode_loop, static_argnames=("kv_len", "n_steps", "plan"),
                                   donate_argnums=(1, 2))

    # ------------------------------------------------------------------------------------------------ helpers
    def _pin(self, cache: KVCache | None, state: SlotState | None):
        """Fix the output shardings (cache as CACHE_AXES, state replicated) so a step's outputs feed the next call
        without a recompilation."""
        if self.mesh is None:
            return cache, state
        if cache is not None:
            cache = jax.tree.map(lambda a: sharding.constrain(a, self.mesh, CACHE_AXES), cache)
        if state is not None:
            rep = NamedSharding(self.mesh, P())
            state = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, rep), state)
        return cache, state

    def _replicated(self, tree):
        """Outputs the host reads: replicated, so every process of a multi-process job can read them."""
        if self.mesh is None:
            return tree
        rep = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, rep), tree)

    def _forward(self, params, tokens, positions, cache, **kw):
        return self.module.apply({"params": params}, tokens, positions, cache, **kw)

    @staticmethod
    def _pack(tok, lp, top_id, top_lp, status, want, extra=()):
        """The host's view of sampled rows as one int32 array [..., 3 + 2K (+ extra)]: token (-1 where not
        wanted), logprob (float32 bits), status (0 where not wanted), top ids, top logprobs (bits), extra columns."""
        bits = lambda a: jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.int32)
        cols = [jnp.where(want, tok, -1)[..., None], bits(lp)[..., None], jnp.where(want, status, 0)[..., None],
                top_id.astype(jnp.int32), bits(top_lp), *extra]
        return jnp.concatenate(cols, axis=-1)

    def allocate(self, num_slots: int, max_len: int, max_stop: int, device=None) -> tuple[KVCache, SlotState]:
        """device: the single device of a mesh-less model (outputs committed there)."""
        shapes = KVCache.shapes(self.cfg, num_slots, max_len, self.module.dtype)
        fills = SlotState.host_zeros(1, self.cfg.vocab_size, max_stop)   # each field's fill value

        def zeros():
            cache = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
            state = jax.tree.map(lambda a: jnp.full((num_slots,) + a.shape[1:], a.reshape(-1)[0], a.dtype), fills)
            return self._pin(cache, state)

        return jax.jit(zeros, out_shardings=device)()

    # ------------------------------------------------------------------------------------------------- steps
    def _admit(self, state, slot, values, bias_row):
        return self._pin(None, admit_row(state, slot, values, bias_row))[1]

    def _prefill(self, params, cache, state, tokens, positions, rows, last_idx, final, words, targets, *,
                 kv_len: int, score: bool, plan: SamplerPlan = SamplerPlan()):
        """tokens/positions [R, T] (-1: padding), rows [R] slot of each row (>= slots: padding row), last_idx [R]
        index of the last real token, final [R] whether the chunk ends the prompt, words [R, ceil(V/32)] token
        masks of the first sample (None: no row is constrained), targets [R, T] next prompt token (scoring; -1:
        none)."""
        r_n, v = tokens.shape[0], self.cfg.vocab_size
        b_idx = jnp.arange(r_n)
        logits, cache = self._forward(params, tokens, positions, cache, kv_len=kv_len, cache_rows=rows,
                                      logits_index=None if score else last_idx)
        out = {}
        if score:
            logp = jax.nn.log_softmax(logits, axis=-1)
            safe = jnp.maximum(targets, 0)[..., None]
            out["target_logprob"] = jnp.take_along_axis(logp, safe, axis=-1)[..., 0]
            out["target_is_top"] = jnp.argmax(logits, axis=-1) == targets
            logits = logits[b_idx, last_idx]
        r = state.rows(rows)
        seen = r.seen.at[b_idx[:, None], jnp.where(positions >= 0, tokens, v)].set(True, mode="drop")
        length = jnp.where(final, positions[b_idx, last_idx] + 1, r.length)
        r = dataclasses.replace(r, seen=seen, length=length)
        allowed = None if words is None else sampling.unpack_bitmask(words, v)
        tok, lp, top_id, top_lp, status = sampling.sample(logits, r, allowed, plan, want=final)
        r = sampling.record(r, tok, final, status == sampling.OK, self.max_len)
        cache, state = self._pin(cache, state.put_rows(rows, r))
        bits = lambda a: jax.lax.bitcast_convert_type(a.astype(jnp.float32), jnp.int32)
        extra = (bits(out["target_logprob"]), out["target_is_top"].astype(jnp.int32)) if score else ()
        return cache, state, self._replicated(self._pack(tok, lp, top_id, top_lp, status, final, extra))

    def _decode_loop(self, params, cache, state, keep, words=None, masked=None, steps=None, *, kv_len: int,
                     n_steps: int, plan: SamplerPlan = SamplerPlan()):
        """keep [B]: slots this round decodes; words [B, ceil(V/32)] (optional): token masks of the first step;
        masked [B]: slots that take only that first, masked token; steps (int32 scalar, <= n_steps; None: n_steps):
        the steps this round runs. The output holds n_steps rows of steps (rows not run: token -1)."""
        b, k = keep.shape[0], plan.num_top
        width = 3 + 2 * k
        outs = jnp.zeros((n_steps, b, width), jnp.int32).at[:, :, 0].set(-1)
        allowed0 = None if words is None else sampling.unpack_bitmask(words, self.cfg.vocab_size)

        def step(cache, st, run, allowed):
            """One token for the rows in run [B]; slots outside the round keep their state (active included)."""
            pos = jnp.where(run, st.length, -1)[:, None]
            logits, cache = self._forward(params, st.last_tok[:, None], pos, cache, kv_len=kv_len,
                                          logits_index=jnp.zeros((b,), jnp.int32))
            tok, lp, top_id, top_lp, status = sampling.sample(logits, st, allowed, plan, want=run)
            st = sampling.record(st, tok, run, status == sampling.OK, self.max_len)
            return cache, st, run & st.active, self._pack(tok, lp, top_id, top_lp, status, run)

        run = state.active & keep
        start = 0
        if allowed0 is not None:                       # the masked first step, outside the loop
            cache, state, run, first = step(cache, state, run, allowed0)
            outs = outs.at[0].set(first)
            run = run & ~masked                        # constrained rows: one token, then the host
            start = 1

        limit = n_steps if steps is None else jnp.minimum(steps, n_steps)

        def cond(carry):
            i, _, _, run, _ = carry
            return (i < limit) & jnp.any(run)

        def body(carry):
            i, cache, st, run, outs = carry
            cache, st, run, row = step(cache, st, run, None)
            return i + 1, cache, st, run, outs.at[i].set(row)

        n, cache, state, _, outs = jax.lax.while_loop(cond, body, (jnp.int32(start), cache, state, run, outs))
        cache, state = self._pin(cache, state)
        return cache, state, self._replicated(outs), n

    def compilations(self) -> dict[str, int]:
        """Compiled variants held now, per step (jit cache sizes)."""
        return {name: getattr(self, name)._cache_size() for name in ("admit", "prefill", "decode_loop")}


_CACHE: dict[tuple, Steps] = {}
_CACHE_SIZE = 16


def steps_for(model, max_len: int) -> Steps:
    """The shared Steps of a GptOss model (keyed by model.key: config, dtype, mesh, kernels) and engine sizes."""
    key = (*model.key, max_len)
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = Steps(model.module, max_len)
    return _CACHE[key]
