"""The persistent compilation cache (a second start loads executables instead of compiling) and a counter of what
XLA compiled, read from jax's monitoring events.

    enable_persistent_cache("/path")     # or $GPTOSS_COMPILATION_CACHE; "" / "off" disables it
    COUNTER.snapshot()                   # {"compiled": n, "cache_hits": n, "cache_misses": n}
"""
from __future__ import annotations

import collections
import os
import threading

import jax
from jax import monitoring

ENV = "GPTOSS_COMPILATION_CACHE"
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"
_MISS = "/jax/compilation_cache/cache_misses"


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gptoss_jax", "xla")


def enable_persistent_cache(path: str | None = None) -> str | None:
    """Point jax's persistent compilation cache at `path` (default: $GPTOSS_COMPILATION_CACHE, else
    ~/.cache/gptoss_jax/xla); every executable is cached, however quick it was to compile. Call before the first
    compilation. Returns the folder, or None when disabled ("" / "off" / "none")."""
    if path is None:
        path = os.environ.get(ENV, default_cache_dir())
    if path.strip().lower() in ("", "off", "none"):
        return None
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size floor
    return path


class CompileCounter:
    """Counts XLA compilations per jitted function name, and persistent-cache hits / misses, process-wide."""

    def __init__(self):
        self._lock = threading.Lock()
        self.compiled: collections.Counter = collections.Counter()
        self.events: collections.Counter = collections.Counter()
        monitoring.register_event_duration_secs_listener(self._on_duration)
        monitoring.register_event_listener(self._on_event)

    def _on_duration(self, event: str, duration: float, **kw) -> None:
        if event == _BACKEND_COMPILE:
            with self._lock:
                self.compiled[kw.get("fun_name", "?")] += 1

    def _on_event(self, event: str, **kw) -> None:
        if event in (_HIT, _MISS):
            with self._lock:
                self.events[event] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"compiled": sum(self.compiled.values()), "cache_hits": self.events[_HIT],
                    "cache_misses": self.events[_MISS]}

    def by_function(self) -> dict[str, int]:
        with self._lock:
            return dict(self.compiled)


COUNTER = CompileCounter()
