"""The host's records of the engine: one `Live` per request from submit to finish, the engine's counters, and the
host view of a round's packed results (steps.py packs what the host reads into one int32 array)."""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Callable

import numpy as np

from gptoss_jax.engine.requests import Request, TokenEvent


@dataclasses.dataclass
class Live:
    """Host record of a request from submit to finish."""
    req: Request
    prompt: list[int]
    bias: dict
    seed: int
    on_token: Callable[[TokenEvent], None] | None
    t_submit: float
    slot: int = -1
    prefilled: int = 0
    decoding: bool = False
    tokens: list = dataclasses.field(default_factory=list)
    logprobs: list = dataclasses.field(default_factory=list)
    top: list = dataclasses.field(default_factory=list)
    prompt_lp: list = dataclasses.field(default_factory=list)
    prompt_top: list = dataclasses.field(default_factory=list)
    mask: concurrent.futures.Future | None = None     # the constraint's mask for the next token (masks.py)
    mask_slow: bool = False    # its last mask took longer than the engine's mask wait (masks.py)
    ahead: int = 0             # tokens the device may have made in rounds the host has not read yet
    t_admit: float = 0.0
    t_first: float = 0.0
    done: bool = False
    cached: int = 0            # prompt tokens reused from the prefix cache

    @property
    def id(self) -> str:
        return self.req.id

    @property
    def length(self) -> int:
        """Tokens in this slot's cache once the last token is fed back: position of the last token."""
        return len(self.prompt) + max(len(self.tokens) - 1, 0)

    @property
    def constrained(self) -> bool:
        return self.req.constraint is not None


@dataclasses.dataclass
class EngineStats:
    prefill_calls: int = 0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_calls: int = 0
    decode_tokens: int = 0
    decode_s: float = 0.0
    transfers: int = 0          # device-to-host transfers (one a round)
    host_s: float = 0.0         # time step() spent on the host, outside waits for the device


@dataclasses.dataclass
class Packed:
    """Host view of a round's int32 array [..., 3 + 2K (+ 2T)] (steps.Steps._pack); index it like the array."""
    a: np.ndarray
    k: int

    @property
    def token(self):
        return self.a[..., 0]

    @property
    def logprob(self):
        return self.a[..., 1].view(np.float32)

    @property
    def status(self):
        return self.a[..., 2]

    @property
    def top_ids(self):
        return self.a[..., 3:3 + self.k]

    @property
    def top_logprobs(self):
        return self.a[..., 3 + self.k:3 + 2 * self.k].view(np.float32)

    def scores(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Scoring columns of a prefill round: (target logprobs [R, T], target is the greedy token [R, T])."""
        base = 3 + 2 * self.k
        return self.a[..., base:base + t].view(np.float32), self.a[..., base + t:base + 2 * t].astype(bool)
