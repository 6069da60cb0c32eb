"""Run untrusted Python code in a sandboxed subprocess; never in-process.

Stable API (the eval harness grades code benchmarks with it)::

    run_python(code, *, timeout_s=10, memory_mb=1024, files=None) -> SandboxResult

Each call gets a fresh interpreter (``python -I -B``, same executable as the host) in its own new session
and a fresh temporary directory (the working directory, also HOME and TMPDIR) holding ``files``. Limits and
isolation, applied by ``_sandbox_child.py`` before the code runs:

- wall time ``timeout_s`` (the host kills the whole process group), CPU time ``ceil(timeout_s) + 1`` s
  (RLIMIT_CPU), address space ``memory_mb`` (RLIMIT_AS: big allocations raise MemoryError), file size,
  open files, no core dumps;
- no network: a new network namespace with nothing reachable, where the kernel allows it, plus an audit
  hook refusing every socket operation;
- no writes outside the temporary directory: a mount namespace where everything else is read-only,
  where the kernel allows it, plus the audit hook refusing writes, deletions and renames outside it;
- no child processes (the audit hook refuses fork/exec/subprocess);
- stdout and stderr are captured up to ``max_output_bytes`` each (the rest is drained and dropped).

``SandboxResult.isolation`` lists the layers that were actually applied (``rlimits``, ``netns``,
``readonly-fs``, ``audit-hook``). Thread-safe: callers may run many sandboxes at once from threads.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_child.py")
_TRUNCATED = "\n[... output truncated by the sandbox ...]\n"
_SIGNAL_MEANING = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded",
    signal.SIGKILL: "killed (SIGKILL)",
    signal.SIGSEGV: "crashed (segmentation fault)",
}


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run. ``ok`` is True only for exit code 0 within the limits."""

    ok: bool
    stdout: str
    stderr: str
    exit_code: int | None  # negative: killed by that signal; None: never started
    timed_out: bool
    error: str | None  # one line saying what went wrong (None when ok)
    duration_s: float = 0.0
    isolation: tuple[str, ...] = ()


def _drain(stream, limit: int, sink: list[bytes]) -> None:
    """Read a pipe to its end, keeping at most ``limit`` bytes (so a print loop cannot exhaust the host)."""
    kept = 0
    dropped = False
    while chunk := stream.read(65536):
        take = chunk[: max(0, limit - kept)]
        if take:
            sink.append(take)
            kept += len(take)
        dropped = dropped or len(take) < len(chunk)
    if dropped:
        sink.append(_TRUNCATED.encode())
    stream.close()


def _write_files(workdir: str, files: dict[str, str]) -> None:
    for name, content in files.items():
        if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.split("/"):
            raise ValueError(f"run_python: files keys must be relative paths inside the sandbox, got {name!r}")
        if not isinstance(content, str):
            raise TypeError(f"run_python: files[{name!r}] must be str, got {type(content).__name__}")
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)


def _describe_failure(exit_code: int | None, timed_out: bool, timeout_s: float, stderr: str) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g} s (wall clock); the process group was killed"
    if exit_code == 0:
        return None
    if exit_code is not None and exit_code < 0:
        try:
            sig = signal.Signals(-exit_code)
        except ValueError:
            return f"killed by signal {-exit_code}"
        return _SIGNAL_MEANING.get(sig, f"killed by {sig.name}")
    last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "")
    if last.startswith("MemoryError"):
        return "memory limit exceeded (MemoryError)"
    return last or f"exited with code {exit_code}"


def run_python(code: str, *, timeout_s: float = 10, memory_mb: int = 1024, files: dict[str, str] | None = None,
               max_output_bytes: int = 1 << 20, kernel_isolation: bool = True) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a sandboxed subprocess and return what happened. Never raises for
    anything the code does; raises ValueError/TypeError only for bad arguments.

    ``kernel_isolation=False`` skips the namespaces (rlimits and the audit hook remain); tests use it to check
    the fallback layer on its own."""
    if not isinstance(code, str):
        raise TypeError(f"run_python: code must be str, got {type(code).__name__}")
    if not (timeout_s > 0):
        raise ValueError(f"run_python: timeout_s must be > 0, got {timeout_s!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(f"run_python: memory_mb must be an int >= 64, got {memory_mb!r}")
    workdir = tempfile.mkdtemp(prefix="gptoss-sandbox-")
    start = time.monotonic()
    try:
        _write_files(workdir, files or {})
        request = {"workdir": workdir, "code": code, "memory_mb": memory_mb,
                   "cpu_s": int(math.ceil(timeout_s)) + 1, "fsize_mb": 256,
                   "namespaces": bool(kernel_isolation)}
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        status_read, status_write = os.pipe()
        try:
            request = json.dumps({**request, "status_fd": status_write})
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=workdir, env=env, start_new_session=True, pass_fds=(status_write,))
        except OSError:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [threading.Thread(target=_drain, args=(proc.stdout, max_output_bytes, out), daemon=True),
                   threading.Thread(target=_drain, args=(proc.stderr, max_output_bytes, err), daemon=True)]
        for t in readers:
            t.start()
        try:
            proc.stdin.write(request.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc.pid)
        proc.wait()
        for t in readers:
            t.join(timeout=5)
        with os.fdopen(status_read, "rb") as f:
            status = f.read()
        try:
            isolation = tuple(json.loads(status)["layers"]) if status else ()
        except (ValueError, KeyError, TypeError):
            isolation = ()
        stdout = b"".join(out).decode("utf-8", errors="replace")
        stderr = b"".join(err).decode("utf-8", errors="replace")
        exit_code = proc.returncode
        error = _describe_failure(exit_code, timed_out, timeout_s, stderr)
        if error is None and not isolation:
            error = "sandbox setup failed before the code ran"
        return SandboxResult(ok=error is None, stdout=stdout, stderr=stderr, exit_code=exit_code,
                             timed_out=timed_out, error=error, duration_s=time.monotonic() - start,
                             isolation=isolation)
    except OSError as e:
        return SandboxResult(ok=False, stdout="", stderr="", exit_code=None, timed_out=False,
                             error=f"could not start the sandbox: {e}", duration_s=time.monotonic() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
