"""How many tokens a decode round gives the unconstrained requests while a constrained one decodes.

A constrained request takes one token a round (its next mask needs the host), so its rounds are read as soon as
they are dispatched. Short rounds serve it fastest; but each round also costs a fixed part (the call, the
transfer, the host's turn, the wait for the mask) that its unconstrained neighbours then pay for fewer tokens. On
a GPU running a large model the fixed part is small next to a step, and one-step rounds cost the neighbours
little; on a small model (or a CPU) it can be several steps' worth, and one-step rounds would slow them several
times over.

RoundClock measures it: the time from one decode dispatch to the next (a "cycle") while rounds are read
serially, per round length, fitted as cycle(n) = fixed + n * per_step. The round length for constrained requests
is the fewest steps whose cost a token for the neighbours, fixed / n + per_step, stays within `slowdown` times
what a token costs them with nobody constrained (a full round's double-buffered cycle over decode_steps, measured
too; until it is, the fit's full round). Until two lengths are measured it tries one step first, then a full round
(if no length keeps to the bound, full rounds: the least the constrained request can cost the others).
"""
from __future__ import annotations

import numpy as np

ALPHA = 0.3                   # weight of a new cycle in a round length's running mean


class RoundClock:
    def __init__(self, full_steps: int, slowdown: float | None):
        """full_steps: the engine's decode_steps. slowdown: the most a constrained request may slow its neighbours'
        tokens (>= 1), or None: always one-step rounds (the constrained request's fastest; also what processes in
        lockstep use, since measured times differ between processes)."""
        if slowdown is not None and not slowdown >= 1.0:
            raise ValueError(f"constrained_slowdown must be >= 1 (or None), got {slowdown}")
        self.full, self.slowdown = full_steps, slowdown
        self.cycles: dict[int, float] = {}     # round length -> running mean of its cycle (seconds), read serially
        self.free: float | None = None         # running mean of a full round's cycle, double buffered

    def record(self, steps: int, seconds: float) -> None:
        """One measured cycle of a round that ran `steps` steps."""
        old = self.cycles.get(steps)
        self.cycles[steps] = seconds if old is None else (1 - ALPHA) * old + ALPHA * seconds

    def record_free(self, seconds: float) -> None:
        """One measured cycle of a full round while nothing was constrained (double buffered): the neighbours'
        cost a token when no constrained request is there."""
        self.free = seconds if self.free is None else (1 - ALPHA) * self.free + ALPHA * seconds

    def fit(self) -> tuple[float, float] | None:
        """(fixed seconds a round, seconds a step) by least squares over the measured lengths; None below two."""
        if len(self.cycles) < 2:
            return None
        n = np.array(list(self.cycles), np.float64)
        t = np.array(list(self.cycles.values()), np.float64)
        per_step, fixed = np.polyfit(n, t, 1)
        return max(float(fixed), 0.0), max(float(per_step), 1e-9)

    def constrained_steps(self) -> int:
        """The round length while a constrained request decodes."""
        if self.slowdown is None or self.full == 1:
            return 1
        fit = self.fit()
        if fit is None:                          # measure one step, then a full round (the fit's two ends)
            return self.full if 1 in self.cycles else 1
        fixed, per_step = fit
        alone = self.free / self.full if self.free is not None else fixed / self.full + per_step
        allowed = self.slowdown * alone
        for n in range(1, self.full + 1):
            if fixed / n + per_step <= allowed:
                return n
        return self.full
