"""The engine's jitted device steps. Static shapes only (buckets.py); the KV cache and the slot state are donated
into every step that changes them, so they are updated in place and memory never holds two copies.

  allocate       a zero cache and slot state, made by a compiled program like every step's outputs (same
                 shardings), so the first call of a step compiles the same program as all later ones
  admit          reset one slot's row of the SlotState for a new request
  prefill        one chunk for a few slots: forward over their cache rows only (Transformer cache_rows), mark the
                 prompt tokens seen, sample the first token where the chunk ends the prompt; optionally the
                 log-probability of every next prompt token (scoring)
  decode_loop    up to n_steps tokens for every decoding slot in one call (lax.while_loop; a slot stops on its own
                 stop tokens / max tokens / full context, the loop ends early when none is left)
  decode_forward + decode_sample
                 one token in two calls, for batches with constrained slots: the host computes the next token
                 masks while the device runs decode_forward, then decode_sample applies them
Steps run the model's own Transformer module and are built once per (model key = config, dtype, mesh, kernels;
engine sizes) and shared by every Engine with those, so tests and restarts inside one process reuse compilations,
and two models that differ in any of them (a kernel choice included) never share a compiled step.
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
        self.decode_forward = jax.jit(self._decode_forward, static_argnames=("kv_len",), donate_argnums=(1,))
        self.decode_sample = jax.jit(self._decode_sample, static_argnames=("plan",), donate_argnums=(1,))

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

    def _outs(self, tok, lp, top_id, top_lp, ok, want):
        return {"token": jnp.where(want, tok, -1), "logprob": lp, "top_ids": top_id, "top_logprobs": top_lp,
                "ok": ok | ~want}

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
        masks of the first sample, targets [R, T] next prompt token (scoring; -1: none)."""
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
        tok, lp, top_id, top_lp, ok = sampling.sample(logits, r, sampling.unpack_bitmask(words, v), plan)
        r = sampling.record(r, tok, final, ok, self.max_len)
        cache, state = self._pin(cache, state.put_rows(rows, r))
        out.update(self._outs(tok, lp, top_id, top_lp, ok, final))
        return cache, state, self._replicated(out)

    def _decode_forward(self, params, cache, state, keep, *, kv_len: int):
        want = state.active & keep
        pos = jnp.where(want, state.length, -1)[:, None]
        logits, cache = self._forward(params, state.last_tok[:, None], pos, cache, kv_len=kv_len,
                                      logits_index=jnp.zeros(keep.shape, jnp.int32))
        return logits, self._pin(cache, None)[0]

    def _decode_sample(self, logits, state, keep, words, *, plan: SamplerPlan = SamplerPlan()):
        want = state.active & keep
        allowed = sampling.unpack_bitmask(words, self.cfg.vocab_size)
        tok, lp, top_id, top_lp, ok = sampling.sample(logits, state, allowed, plan)
        st = sampling.record(state, tok, want, ok, self.max_len)
        st = dataclasses.replace(st, active=st.active & keep)
        outs = jax.tree.map(lambda a: a[None], self._outs(tok, lp, top_id, top_lp, ok, want))
        return self._pin(None, st)[1], self._replicated(outs)

    def _decode_loop(self, params, cache, state, keep, *, kv_len: int, n_steps: int,
                     plan: SamplerPlan = SamplerPlan()):
        b, k = keep.shape[0], plan.num_top
        state = dataclasses.replace(state, active=state.active & keep)
        outs = {"token": jnp.full((n_steps, b), -1, jnp.int32), "logprob": jnp.zeros((n_steps, b), jnp.float32),
                "top_ids": jnp.zeros((n_steps, b, k), jnp.int32),
                "top_logprobs": jnp.zeros((n_steps, b, k), jnp.float32), "ok": jnp.ones((n_steps, b), bool)}

        def cond(carry):
            i, _, st, _ = carry
            return (i < n_steps) & jnp.any(st.active)

        def body(carry):
            i, cache, st, outs = carry
            want = st.active
            pos = jnp.where(want, st.length, -1)[:, None]
            logits, cache = self._forward(params, st.last_tok[:, None], pos, cache, kv_len=kv_len,
                                          logits_index=jnp.zeros((b,), jnp.int32))
            tok, lp, top_id, top_lp, ok = sampling.sample(logits, st, None, plan)
            st = sampling.record(st, tok, want, ok, self.max_len)
            step = self._outs(tok, lp, top_id, top_lp, ok, want)
            outs = jax.tree.map(lambda o, s: o.at[i].set(s), outs, step)
            return i + 1, cache, st, outs

        n, cache, state, outs = jax.lax.while_loop(cond, body, (jnp.int32(0), cache, state, outs))
        cache, state = self._pin(cache, state)
        return cache, state, self._replicated(outs), n

    def compilations(self) -> dict[str, int]:
        """Compiled variants held now, per step (jit cache sizes)."""
        return {name: getattr(self, name)._cache_size() for name in
                ("admit", "prefill", "decode_loop", "decode_forward", "decode_sample")}


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
