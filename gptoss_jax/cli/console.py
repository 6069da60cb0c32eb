"""What the command line shows besides results: dependencies' logs quiet unless --verbose, our warnings as plain
lines, a notice while XLA compiles, and a quiet end when the reader of stdout goes away (`gptoss ... | head`).

main.py calls `setup(sub)` after parsing flags and before the subcommand (and the multi-process job) starts.
"""
from __future__ import annotations

import logging
import os
import sys

from absl import flags

FLAGS = flags.FLAGS

# `gptoss eval` defines --verbose too (evals/cli.py, same meaning for its HTTP and grader logs): whichever module
# loads last holds the one flag
flags.DEFINE_bool("verbose", False, "Show INFO logs of the libraries underneath (JAX, Orbax, absl, Gloo, HTTP "
                  "clients) and log lines with their full prefix (level, time, source line).", allow_override=True)

# loggers that speak at INFO by default; quiet below WARNING unless --verbose
NOISY_LOGGERS = ("absl", "jax", "orbax", "flax", "httpx", "httpcore", "urllib3", "openai", "filelock", "asyncio")
BROKEN_PIPE_STATUS = 141   # 128 + SIGPIPE, what `yes | head` leaves in $PIPESTATUS


class PlainFormatter(logging.Formatter):
    """'gptoss SUB: warning: message': a log line a user reads, without the level letter, time, thread and file."""

    def __init__(self, sub: str):
        super().__init__()
        self.prefix = f"gptoss {sub}" if sub else "gptoss"

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return f"{self.prefix}: {record.levelname.lower()}: {text}"


def quiet_logging(sub: str, verbose: bool) -> None:
    """Below WARNING nothing is logged unless `verbose`; then everything at INFO, with absl's full prefixes."""
    from absl import logging as absl_logging

    level = logging.INFO if verbose else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    logging.getLogger().setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    if not verbose:
        absl_logging.get_absl_handler().setFormatter(PlainFormatter(sub))


def show_progress() -> bool:
    """The subcommand's --progress (every model-running subcommand and `gptoss eval` define one), default on."""
    try:
        return bool(FLAGS["progress"].value)
    except KeyError:
        return True


class LineTracker:
    """sys.stdout as it was, remembering whether the text written so far ends a line: the compile notice, which
    redraws the terminal's current line, waits while a streamed answer is in the middle of one."""

    def __init__(self, inner):
        self._inner = inner
        self.at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text.endswith("\n")
        return self._inner.write(text)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def line_done() -> None:
    """The terminal's cursor is at the start of a line again (e.g. after the user typed a line and Enter)."""
    if isinstance(sys.stdout, LineTracker):
        sys.stdout.at_line_start = True


_notice = None


def watch_compiles() -> None:
    """Say "compiling (first run; cached afterwards)" with the elapsed time whenever XLA compiles for more than a
    second (stderr; process 0 only, and only with --progress)."""
    global _notice
    from gptoss_jax import distributed
    from gptoss_jax.progress import CompileNotice, compile_label, is_terminal

    if _notice is not None or not show_progress() or not distributed.is_main():
        return
    can_draw = lambda: True  # noqa: E731
    if is_terminal(sys.stdout) and is_terminal(sys.stderr) and not isinstance(sys.stdout, LineTracker):
        sys.stdout = tracker = LineTracker(sys.stdout)
        can_draw = lambda: tracker.at_line_start  # noqa: E731
    _notice = CompileNotice(compile_label, can_draw=can_draw).install()


def stop_watching_compiles() -> None:
    global _notice
    if _notice is not None:
        _notice.uninstall()
        _notice = None
    if isinstance(sys.stdout, LineTracker):
        sys.stdout = sys.stdout._inner


def setup(sub: str) -> None:
    quiet_logging(sub, FLAGS.verbose)


def end_on_broken_pipe() -> None:
    """The reader of stdout went away (`gptoss generate --help | head`): stop without a traceback. Further writes
    go to /dev/null so that the interpreter's own flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(BROKEN_PIPE_STATUS)
