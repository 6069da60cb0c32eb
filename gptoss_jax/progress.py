"""A small progress line on stderr (loading, sweeps, benchmarks): done/total, rate, ETA; silent when disabled."""
from __future__ import annotations

import sys
import time


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


class Progress:
    def __init__(self, total: float, desc: str, *, unit: str = "", enabled: bool = True, stream=None,
                 min_interval: float = 0.5):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.done = 0.0
        self.t0 = time.monotonic()
        self._last = 0.0
        self.min_interval = min_interval

    def _fmt(self, n: float) -> str:
        return format_bytes(n) if self.unit == "B" else f"{n:,.0f}{self.unit}"

    def update(self, n: float = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last >= self.min_interval:
            self._last = now
            elapsed = now - self.t0
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            pct = 100.0 * self.done / self.total if self.total else 100.0
            eta_s = f"{eta:5.0f}s" if eta != float("inf") else "    ?"
            self.stream.write(f"\r{self.desc}: {pct:5.1f}% {self._fmt(self.done)}/{self._fmt(self.total)} "
                              f"[{elapsed:5.0f}s elapsed, ETA {eta_s}] {note[:40]:<40}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._last = 0.0  # force the final line
            self.update(0)
            self.stream.write("\n")
            self.stream.flush()
