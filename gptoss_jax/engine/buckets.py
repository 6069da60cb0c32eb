"""The static shapes the engine compiles for: prefill chunk lengths and key-span (kv_len) buckets.

Prefill splits a prompt into chunks of `chunk` tokens; the last, shorter piece is padded up to the next chunk bucket
(min_chunk, 2*min_chunk, ..., chunk). Full-attention layers read keys [0, kv_len) where kv_len is the next kv bucket
(chunk, 2*chunk, 4*chunk, ..., max_len) at or above what the step needs, so a short context never reads a 128k cache.
A prefill call holds rows_for(T) prompts side by side (about `chunk` tokens a call). Compilations are therefore
bounded by len(chunk_sizes) * len(kv_sizes) for prefill and len(kv_sizes) for decode, whatever the prompt lengths.
"""
from __future__ import annotations

import bisect
import dataclasses


def _doubling(start: int, stop: int) -> tuple[int, ...]:
    out, n = [], start
    while n < stop:
        out.append(n)
        n *= 2
    out.append(stop)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Buckets:
    max_len: int
    chunk: int
    min_chunk: int
    num_slots: int
    data_parallel: int = 1

    def __post_init__(self):
        if not 1 <= self.min_chunk <= self.chunk <= self.max_len:
            raise ValueError(f"need 1 <= min_chunk ({self.min_chunk}) <= prefill chunk ({self.chunk}) <= max_len "
                             f"({self.max_len})")

    @property
    def chunk_sizes(self) -> tuple[int, ...]:
        return _doubling(self.min_chunk, self.chunk)

    @property
    def kv_sizes(self) -> tuple[int, ...]:
        return _doubling(self.chunk, self.max_len)

    def chunk_for(self, n: int) -> int:
        """Smallest chunk bucket holding n (1 <= n <= chunk) tokens."""
        sizes = self.chunk_sizes
        return sizes[bisect.bisect_left(sizes, n)]

    def kv_for(self, n: int) -> int:
        """Smallest kv bucket covering positions [0, n)."""
        sizes = self.kv_sizes
        return sizes[min(bisect.bisect_left(sizes, n), len(sizes) - 1)]

    def rows_for(self, t: int) -> int:
        """Prompts a prefill call of chunk length t holds: about `chunk` tokens a call, a multiple of the data
        parallelism, at most the number of slots."""
        dp = self.data_parallel
        rows = max(1, self.chunk // t)
        rows = -(-rows // dp) * dp
        return min(rows, self.num_slots)

    @property
    def max_compilations(self) -> dict[str, int]:
        return {"prefill": len(self.chunk_sizes) * len(self.kv_sizes), "decode": len(self.kv_sizes)}
