"""Progress for work users wait on, written to stderr: a bar for counted work (loading, writing, sweeps, benchmarks)
and a notice while XLA compiles.

On a terminal a bar redraws one line in place; anywhere else (a file, a pipe, CI) it writes a plain line every
`plain_interval` seconds and a last one at close, never a carriage return. `CompileNotice` says "compiling (first
run; cached afterwards)" with the elapsed time whenever XLA compiles for more than a second, and clears it when the
compilation ends.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

CLEAR_LINE = "\r\033[K"


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def format_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """done/total with the rate and an ETA, plus a free-form note (e.g. tokens so far); silent when disabled.

    On a terminal: one line redrawn at most every `min_interval` seconds. Elsewhere: a plain line every
    `plain_interval` seconds and one at close."""

    def __init__(self, total: float, desc: str, *, unit: str = "", enabled: bool = True, stream=None,
                 min_interval: float = 0.5, plain_interval: float = 10.0):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.tty = is_terminal(self.stream)
        self.done = 0.0
        self.note = ""
        self._last_written: tuple | None = None
        self.t0 = time.monotonic()
        self._last = 0.0 if self.tty else self.t0   # a plain line only after plain_interval of work
        self.min_interval = min_interval if self.tty else plain_interval

    def _counts(self) -> str:
        if self.unit == "B":
            return f"{format_bytes(self.done)}/{format_bytes(self.total)}"
        return f"{self.done:,.0f}/{self.total:,.0f}{self.unit}"

    def line(self) -> str:
        """The progress as text: 'desc: 45.0% 3/9 samples [12s elapsed, ETA 15s] note'."""
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = format_seconds((self.total - self.done) / rate) if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.desc}: {pct:5.1f}% {self._counts()} [{format_seconds(elapsed)} elapsed, ETA {eta}]"
        return f"{text} {self.note}" if self.note else text

    def update(self, n: float = 1, note: str | None = None) -> None:
        """Add n done (0 just refreshes); `note` replaces the note when given."""
        self.done += n
        if note is not None:
            self.note = note
        now = time.monotonic()
        if self.enabled and now - self._last >= self.min_interval:
            self._last = now
            self._write()

    def _write(self) -> None:
        self._last_written = (self.done, self.note)
        if self.tty:
            self.stream.write(CLEAR_LINE + self.line()[:_width(self.stream)])
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            if self.tty or self._last_written != (self.done, self.note):   # a log gets the last state once
                self._write()
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()


def _width(stream) -> int:
    """Columns of the terminal (a line longer than that would wrap and break the redraw)."""
    import os

    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns - 1 if columns >= 20 else 159   # 0: a terminal that does not say


_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"   # jax records its start (scalar) and duration
_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


class CompileNotice:
    """Says that XLA is compiling, with the elapsed time, whenever a compilation runs longer than `after_s`.

    A wait starts when XLA starts compiling a program; tracing and lowering the programs that follow within `gap_s`
    belong to the same wait (the engine's first step compiles several back to back), and a program loaded from the
    persistent cache ends it. On a terminal the notice is one line redrawn in place and cleared when compiling ends,
    and drawn only while `can_draw()` (the caller's output is not in the middle of a line); elsewhere a line when the
    wait passes `after_s`, one every `plain_every_s`, and 'compiled in Ns' at the end. `label()` names the wait.
    Reads jax's monitoring events: `install()` once, `uninstall()` to stop."""

    def __init__(self, label: Callable[[], str], *, stream=None, after_s: float = 1.0, gap_s: float = 2.0,
                 plain_every_s: float = 15.0, tick_s: float = 0.25, can_draw: Callable[[], bool] = lambda: True):
        self.label, self.stream, self.can_draw = label, stream or sys.stderr, can_draw
        self.tty = is_terminal(self.stream)
        self.after_s, self.gap_s, self.plain_every_s, self.tick_s = after_s, gap_s, plain_every_s, tick_s
        self._lock = threading.Lock()
        self._open: list[tuple[str, str]] = []   # (event, function) started and not yet ended, in this wait
        self._wait_start: float | None = None    # start of the current wait (a run of compilations)
        self._last_end = -1e9
        self._hit = False                        # the program being compiled came from the persistent cache
        self._shown = False                      # the notice is on screen now (tty)
        self._noticed = False                    # this wait was announced
        self._last_plain = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waits: list[float] = []             # seconds of every wait that was announced

    # ------------------------------------------------------------------------------------------ jax's events
    def _on_scalar(self, event: str, value: float, fun_name: str = "", **kw) -> None:
        if event not in (_BACKEND_COMPILE, _TRACE, _LOWER):
            return
        now = time.monotonic()
        with self._lock:
            idle = not self._open and now - self._last_end > self.gap_s
            if event == _BACKEND_COMPILE:
                if self._wait_start is None or idle:
                    self._end_wait()
                    self._wait_start = now
            elif self._wait_start is None or idle:
                return           # tracing outside a wait: jax at work, not a compilation
            self._open.append((event, fun_name))

    def _on_event(self, event: str, **kw) -> None:
        if event == _CACHE_HIT:
            with self._lock:
                self._hit = True

    def _on_duration(self, event: str, duration: float, fun_name: str = "", **kw) -> None:
        with self._lock:
            if (event, fun_name) not in self._open:
                return
            self._open.remove((event, fun_name))
            self._last_end = time.monotonic()
            if event == _BACKEND_COMPILE and self._hit:   # loaded, not compiled: no wait to tell of
                self._hit = False
                if not self._open and not self._noticed:
                    self._wait_start = None
            if not self._open and self._shown:
                # clear before control returns to the caller, whose output (the first token) comes next
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
                self._shown = False

    def _end_wait(self) -> None:
        """Close the current wait (plain output: say how long it took). Call with the lock held."""
        if self._noticed and self._wait_start is not None:
            took = self._last_end - self._wait_start
            if not self.tty:
                self.stream.write(f"compiled in {took:.1f}s\n")
                self.stream.flush()
            self.waits.append(took)
        self._noticed = False
        self._wait_start = None
        self._open = []

    # -------------------------------------------------------------------------------------------- the ticker
    def tick(self) -> None:
        """Draw the notice if a wait is on (called every tick_s by the thread; callable directly in tests)."""
        now = time.monotonic()
        with self._lock:
            if self._wait_start is None:
                return
            if not self._open:
                if now - self._last_end > self.gap_s:
                    self._end_wait()
                return
            elapsed = now - self._wait_start
            if elapsed < self.after_s or self._hit:    # a cached program being loaded is no compilation
                return
            if self.tty:
                if not self.can_draw():
                    return
                self.stream.write(f"{CLEAR_LINE}{self.label()}: {format_seconds(elapsed)}")
                self._shown = True
            elif not self._noticed:
                self.stream.write(f"{self.label()} ...\n")
                self._last_plain = now
            elif now - self._last_plain >= self.plain_every_s:
                self.stream.write(f"still compiling: {format_seconds(elapsed)}\n")
                self._last_plain = now
            else:
                return
            self.stream.flush()
            self._noticed = True

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def install(self) -> "CompileNotice":
        from jax import monitoring

        monitoring.register_scalar_listener(self._on_scalar)
        monitoring.register_event_listener(self._on_event)
        monitoring.register_event_duration_secs_listener(self._on_duration)
        self._thread = threading.Thread(target=self._run, name="gptoss-compile-notice", daemon=True)
        self._thread.start()
        return self

    def uninstall(self) -> None:
        from jax import monitoring

        self._stop.set()
        for unregister, fn in ((monitoring.unregister_scalar_listener, self._on_scalar),
                               (monitoring.unregister_event_listener, self._on_event),
                               (monitoring.unregister_event_duration_listener, self._on_duration)):
            try:
                unregister(fn)
            except (AssertionError, ValueError, KeyError):  # never registered
                pass
        with self._lock:
            self._end_wait()


def compile_label() -> str:
    """What a compile wait is called: with the persistent cache on, the next start loads what this one compiles."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return "compiling (first run; cached afterwards)"
    return "compiling (the compilation cache is off: every start compiles)"


class Waiting:
    """A transient 'label: 3s' line on a terminal while a block runs longer than `after_s` (nothing elsewhere):
    `with Waiting("starting"): import ...`."""

    def __init__(self, label: str, *, stream=None, after_s: float = 1.0, tick_s: float = 0.25):
        self.label, self.stream, self.after_s, self.tick_s = label, stream or sys.stderr, after_s, tick_s
        self._stop = threading.Event()
        self._shown = False
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.tick_s):
            elapsed = time.monotonic() - t0
            if elapsed >= self.after_s:
                self.stream.write(f"{CLEAR_LINE}{self.label}: {format_seconds(elapsed)}")
                self.stream.flush()
                self._shown = True

    def __enter__(self) -> "Waiting":
        if is_terminal(self.stream):
            self._thread = threading.Thread(target=self._run, name="gptoss-waiting", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            if self._shown:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()


class RequestProgress:
    """Progress of a batch of engine requests: requests finished of all, and tokens generated so far (counted every
    engine step, so the line moves during long generations) with their rate. A batch of scoring requests (prefill
    only: `gptoss score`, multiple-choice evals) counts pairs and the tokens scored instead."""

    def __init__(self, requests, *, enabled: bool, stream=None):
        self.scoring = bool(requests) and all(
            getattr(r, "score_from", None) is not None and getattr(r.sampling, "max_tokens", None) == 0
            for r in requests)
        self.bar = Progress(len(requests), "score" if self.scoring else "generate",
                            unit=" pairs" if self.scoring else " requests", enabled=enabled, stream=stream)
        self.tokens = 0

    def step(self, events, finished) -> None:
        """After an engine step: its TokenEvents and the Results that finished in it."""
        if self.scoring:
            self.tokens += sum(len(r.prompt_logprobs or []) for r in finished)
        else:
            self.tokens += sum(1 for ev in events if ev.token_id >= 0)
        elapsed = max(time.monotonic() - self.bar.t0, 1e-9)
        verb = "scored" if self.scoring else "generated"
        self.bar.update(len(finished), note=f"{self.tokens:,} tokens {verb}, {self.tokens / elapsed:,.1f} tokens/s")

    def close(self) -> None:
        self.bar.close()
