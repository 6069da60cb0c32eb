"""Prompt caching: a request whose prompt starts with tokens the engine has already computed reuses their KV
entries instead of prefilling them again (the engine owns the cache; front ends only report Result.cached_tokens).

What a cached head of q tokens needs, given the cache layout (model/transformer.py KVCache):
- full-attention layers: keys/values at positions [0, q) of a slot's row (slot index = absolute position). Any slot
  whose row holds exactly those tokens there serves: a finished request's slot keeps its entries until it is reused,
  and a running request never rewrites its head. They are copied row to row, or used in place when the new request
  lands in the slot that holds them.
- sliding-window layers keep only a ring of the last W (= sliding_window, 128) positions a slot, overwritten as the
  sequence grows: the ring "at q" (positions [q-W, q)) is gone once the slot moves on and cannot be rebuilt from a
  later ring, nor from the full layers. So it is SNAPSHOTTED into a small device store (W positions of the sliding
  layers an entry) at the moment a prefill chunk ends exactly at q.
A hit at q therefore needs a snapshot of exactly prompt[:q] and a slot holding prompt[:q]; the request then prefills
prompt[q:] only (at least its last token, whose logits give the first sample). Its prompt tokens still count as
seen for the repetition penalty.

Snapshot points: after any boundary token (for harmony, <|end|>: the end of the system, developer and every earlier
message, which are the heads requests share: system + developer + tools, or a previous turn) once the head holds at
least `min_tokens`, and at every full prefill chunk. The engine ends a prefill chunk at each point (`chunk_limit`),
so a prompt with many messages takes a few more, shorter prefill calls the first time. Entries are evicted least
recently used. A request goes to a free slot whose reuse destroys no cached tokens (empty, or holding exactly its
head) when there is one, else to the least recently used one.

Correctness: the restored entries are those prefill computes for the same tokens at the same positions, so a
request's tokens with and without a hit are the same (up to the float rounding batch composition already causes;
bit-identical in the float32 CPU tests). Deterministic host bookkeeping: every process of a multi-process job makes
the same decisions.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gptoss_jax import sharding

log = logging.getLogger(__name__)
STORE_AXES = ("layers", None, "cache_seq", "kv_heads", "head_dim")  # entries replicated over data: any slot reads


@dataclasses.dataclass(frozen=True)
class PrefixCacheConfig:
    """entries: ring snapshots kept on the device (each W positions of every sliding layer's keys and values, as
    much as W tokens of the full layers); boundary_token_ids: tokens after which a head is worth a snapshot;
    min_tokens: the shortest head snapshotted at a boundary."""
    entries: int = 64
    boundary_token_ids: tuple[int, ...] = ()
    min_tokens: int = 16

    def __post_init__(self):
        if self.entries < 1:
            raise ValueError(f"prefix cache entries must be >= 1, got {self.entries}")
        if self.min_tokens < 1:
            raise ValueError(f"prefix cache min_tokens must be >= 1, got {self.min_tokens}")


@dataclasses.dataclass
class Hit:
    src: int      # the slot whose row holds the head's full-layer entries
    entry: int    # the ring snapshot of the head
    length: int   # tokens reused


@dataclasses.dataclass(eq=False)
class _Snapshot:
    tokens: np.ndarray
    entry: int
    used: int


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class PrefixCache:
    def __init__(self, config: PrefixCacheConfig, cache, num_slots: int, chunk: int, vocab_size: int, mesh, kv_for):
        """cache: the engine's KVCache (shapes, dtype, shardings); kv_for: the engine's kv-span buckets (n -> span),
        so copies compile once per span bucket."""
        self.config, self.num_slots, self.chunk, self.vocab, self.kv_for = config, num_slots, chunk, vocab_size, kv_for
        self._boundary = np.asarray(sorted(set(config.boundary_token_ids)), np.int32)
        ring = cache.sliding_k
        shape = ring.shape[:1] + (config.entries,) + ring.shape[2:]
        sh = sharding.named(mesh, STORE_AXES) if mesh is not None else ring.sharding
        self._zeros = jax.jit(lambda: (jnp.zeros(shape, ring.dtype), jnp.zeros(shape, ring.dtype)),
                              out_shardings=(sh, sh))
        self.store_k, self.store_v = self._zeros()
        self._restore = None
        self._snapshot = jax.jit(_snapshot, donate_argnums=(0, 1), out_shardings=(sh, sh))
        self.clear()

    def clear(self) -> None:
        """Forget everything (the engine's cache was lost)."""
        self.held = [np.zeros((0,), np.int32) for _ in range(self.num_slots)]
        self.slot_used = [0] * self.num_slots
        self.points: dict[int, np.ndarray] = {}
        self.snaps: list[_Snapshot] = []
        self.free_entries = list(range(self.config.entries))
        self.clock = 0
        self.hits = 0
        self.cached_tokens = 0
        self.snapshots_taken = 0

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    # ------------------------------------------------------------------------------------------------ admission
    def place(self, prompt: Sequence[int], free: list[int], *, reuse: bool = True) -> tuple[int, Hit | None]:
        """The free slot a new request goes to, and the cached head it reuses (None: prefill from 0).

        The hit is the longest cached head (at most len(prompt) - 1 tokens). The slot: first one whose reuse
        destroys no cached tokens (empty, or holding exactly the hit), preferring one that holds the hit (no copy);
        else the least recently used (a holder of the hit first)."""
        arr = np.asarray(prompt, np.int32)
        hit = self._lookup(arr) if reuse else None
        n = hit.length if hit is not None else 0
        holds = {s: hit is not None and _common_prefix(self.held[s], arr) >= n for s in free}
        loses = {s: len(self.held[s]) > (n if holds[s] else 0) for s in free}
        slot = min(free, key=lambda s: (loses[s], not holds[s], self.slot_used[s]))
        if hit is not None and holds[slot]:
            hit.src = slot
        return slot, hit

    def _lookup(self, arr: np.ndarray) -> Hit | None:
        limit = len(arr) - 1
        cover = [_common_prefix(h, arr) for h in self.held]
        best_cover = max(cover, default=0)
        best = None
        for snap in self.snaps:
            q = len(snap.tokens)
            if q <= min(limit, best_cover) and (best is None or q > len(best.tokens)) \
                    and np.array_equal(snap.tokens, arr[:q]):
                best = snap
        if best is None:
            return None
        q = len(best.tokens)
        best.used = self._tick()
        src = max((s for s in range(self.num_slots) if cover[s] >= q), key=lambda s: self.slot_used[s])
        return Hit(src, best.entry, q)

    def admitted(self, slot: int, prompt: Sequence[int], hit: Hit | None) -> None:
        """Host bookkeeping once a request owns `slot`: its row now holds only the reused head (the rest will be
        overwritten), and the points where its prefill chunks must end."""
        arr = np.asarray(prompt, np.int32)
        n = hit.length if hit is not None else 0
        self.held[slot] = arr[:n]
        self.slot_used[slot] = self._tick()
        if hit is not None:
            self.slot_used[hit.src] = self.clock
            self.hits += 1
            self.cached_tokens += n
        pts = set(range(self.chunk, len(arr) + 1, self.chunk))
        if self._boundary.size:
            ends = np.flatnonzero(np.isin(arr, self._boundary)) + 1
            pts.update(int(q) for q in ends if q >= self.config.min_tokens)
        self.points[slot] = np.asarray(sorted(q for q in pts if q > n), np.int64)

    def restore(self, cache, state, slot: int, hit: Hit, prompt: Sequence[int]):
        """Device side of a hit: copy the head's full-layer entries into the slot's row (unless it is already
        there), its ring snapshot into the slot's ring, and mark its tokens seen. -> (cache, state)."""
        if self._restore is None:
            out = (jax.tree.map(lambda a: a.sharding, cache), jax.tree.map(lambda a: a.sharding, state))
            self._restore = jax.jit(_restore, donate_argnums=(0, 1), static_argnames=("span",), out_shardings=out)
        span = self.kv_for(hit.length)
        tokens = np.full((span,), self.vocab, np.int32)           # vocab: an index the scatter drops
        tokens[:hit.length] = np.asarray(prompt[:hit.length], np.int32)
        return self._restore(cache, state, self.store_k, self.store_v, np.int32(hit.src), np.int32(slot),
                             np.int32(hit.entry), np.int32(hit.length), tokens, span=span)

    # -------------------------------------------------------------------------------------------------- prefill
    def chunk_limit(self, slot: int, start: int) -> int:
        """Tokens the slot's next prefill chunk may hold from `start` (it must end at the next snapshot point)."""
        pts = self.points.get(slot)
        if pts is None:
            return 1 << 30
        i = int(np.searchsorted(pts, start, side="right"))
        return int(pts[i]) - start if i < len(pts) else 1 << 30

    def prefilled(self, cache, slot: int, prompt: Sequence[int], end: int) -> None:
        """After a prefill chunk ending at `end` was dispatched: the slot's row holds prompt[:end]; at a snapshot
        point its ring is saved (dispatched now, before any later step writes the ring)."""
        arr = np.asarray(prompt[:end], np.int32)
        self.held[slot] = arr
        pts = self.points.get(slot)
        if pts is None or not np.any(pts == end):
            return
        if any(len(s.tokens) == end and np.array_equal(s.tokens, arr) for s in self.snaps):
            return
        if not self.free_entries:
            victim = min(self.snaps, key=lambda s: s.used)
            self.snaps.remove(victim)
            self.free_entries.append(victim.entry)
        entry = self.free_entries.pop()
        try:
            self.store_k, self.store_v = self._snapshot(self.store_k, self.store_v, cache.sliding_k, cache.sliding_v,
                                                        np.int32(slot), np.int32(entry))
        except Exception:  # noqa: BLE001 - a lost snapshot only loses caching; a lost store is made again
            log.exception("prefix cache snapshot failed; caching what was stored is dropped")
            if self.store_k.is_deleted() or self.store_v.is_deleted():
                self.store_k, self.store_v = self._zeros()
                self.clear()
            else:
                self.free_entries.append(entry)
            return
        self.snaps.append(_Snapshot(arr, entry, self._tick()))
        self.snapshots_taken += 1

    def finished(self, slot: int) -> None:
        self.points.pop(slot, None)


# ------------------------------------------------------------------------------------------------ device steps
def _snapshot(store_k, store_v, ring_k, ring_v, slot, entry):
    return store_k.at[:, entry].set(ring_k[:, slot]), store_v.at[:, entry].set(ring_v[:, slot])


def _restore(cache, state, store_k, store_v, src, dst, entry, n, tokens, *, span: int):
    keep = (jnp.arange(span) < n)[None, :, None, None]

    def full(a):  # [P, B, S, Nkv, D]: positions [0, n) of row dst <- row src
        rows = jnp.where(keep, a[:, src, :span], a[:, dst, :span])
        return a.at[:, dst, :span].set(rows)

    cache = dataclasses.replace(cache, full_k=full(cache.full_k), full_v=full(cache.full_v),
                                sliding_k=cache.sliding_k.at[:, dst].set(store_k[:, entry]),
                                sliding_v=cache.sliding_v.at[:, dst].set(store_v[:, entry]))
    state = dataclasses.replace(state, seen=state.seen.at[dst, tokens].set(True, mode="drop"))
    return cache, state
