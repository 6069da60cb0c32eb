"""This process's C-level stdout in a multi-process job: lines that libraries below Python print straight to file
descriptor 1 (Gloo's "[Gloo] Rank N is connected to M peer ranks", once per collective group on the CPU) dropped,
everything else passed on in order. Python's own sys.stdout keeps writing to the terminal directly."""
from __future__ import annotations

import atexit
import os
import sys
import threading

GLOO_PREFIX = b"[Gloo] "


class StdoutFilter:
    """Route fd 1 through a pipe; a thread copies it to the real stdout, dropping lines that start with `drop`."""

    def __init__(self, drop: tuple[bytes, ...] = (GLOO_PREFIX,)):
        self.drop = drop
        self.dropped = 0
        sys.stdout.flush()
        self._real = os.dup(1)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.close(write_end)
        self._read = read_end
        tty = os.isatty(self._real)
        self._old_stdout = sys.stdout
        sys.stdout = open(self._real, "w", buffering=1 if tty else -1, encoding=sys.stdout.encoding,  # noqa: SIM115
                          errors=sys.stdout.errors, closefd=False)
        self._thread = threading.Thread(target=self._copy, name="gptoss-stdout-filter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _copy(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            self._emit(lines, newline=True)
        if pending:
            self._emit([pending], newline=False)
        os.close(self._read)

    def _emit(self, lines: list[bytes], *, newline: bool) -> None:
        out = []
        for line in lines:
            if line.startswith(self.drop):
                self.dropped += 1
            else:
                out.append(line + b"\n" if newline else line)
        if out:
            try:
                os.write(self._real, b"".join(out))
            except OSError:   # the reader went away
                pass

    def close(self) -> None:
        """Put fd 1 back (which ends the pipe) and let the thread pass on what is left."""
        if self._thread is None:
            return
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._real, 1)
        self._thread.join(timeout=2)
        self._thread = None


def drop_library_lines() -> StdoutFilter:
    return StdoutFilter()


def discard_c_stdout() -> None:
    """fd 1 to /dev/null (processes other than 0, whose Python stdout is already discarded)."""
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
