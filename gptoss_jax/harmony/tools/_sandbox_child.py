"""Child side of the python sandbox: the interpreter bubblewrap starts inside the sandbox; never imported by the host.

Run as ``python -I -B -c <this file's source>`` by ``sandbox.run_python``. It reads a JSON request from stdin
(``{"code", "files", "limits", "host_namespaces", "status_fd"}``) and, before any of the code runs:

1. checks that it really is sandboxed: a seccomp filter in force, no capabilities, no_new_privs, not uid 0, every
   namespace different from the host's, every mount read-only except /tmp, /proc and the device nodes. If a check
   fails it says which on the status pipe and exits without running the code (the host then refuses loudly);
2. sets resource limits: address space, CPU seconds, threads (RLIMIT_NPROC, counted in the sandbox's own user
   namespace; the seccomp policy allows no second process), file size, open files, no core dumps;
3. writes the request's files into /tmp, the private scratch folder and working directory;
4. installs an audit hook (PEP 578) that refuses sockets, new processes and writes outside /tmp with a
   PermissionError naming what was refused. The hook is not the boundary (ctypes goes around it; the kernel
   layers hold regardless): it gives honest code a clear message instead of a bare EPERM or EROFS.

Standard library only; it must not import gptoss_jax.
"""
import json
import os
import resource
import sys

WORKDIR = "/tmp"
_NAMESPACES = ("user", "pid", "net", "ipc", "mnt", "uts")
_WRITABLE_MOUNTS = {"/tmp", "/proc", "/dev/pts", "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                    "/dev/urandom", "/dev/tty"}


def _status_fields() -> dict:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _check_isolation(host_namespaces: dict) -> list:
    """The layers that are in force; raises RuntimeError naming the first that is not."""
    status = _status_fields()
    if status.get("Seccomp") != "2":
        raise RuntimeError(f"no seccomp filter is in force (Seccomp: {status.get('Seccomp')})")
    try:  # a no-op for the kernel; the sandbox's own policy refuses every unshare
        os.unshare(0)
        raise RuntimeError("the seccomp filter in force is not the sandbox's (unshare was allowed)")
    except PermissionError:
        pass
    for field in ("CapEff", "CapPrm", "CapAmb"):
        if int(status.get(field, "1"), 16) != 0:
            raise RuntimeError(f"the process holds capabilities ({field}: {status.get(field)})")
    if status.get("NoNewPrivs") != "1":
        raise RuntimeError("no_new_privs is not set")
    if os.getuid() == 0 or os.geteuid() == 0:
        raise RuntimeError("the code would run as uid 0")
    for name in _NAMESPACES:
        if os.stat(f"/proc/self/ns/{name}").st_ino == host_namespaces.get(name):
            raise RuntimeError(f"the {name} namespace is the host's")
    with open("/proc/self/mountinfo") as f:
        for fields in (line.split() for line in f):
            target, options = fields[4].replace("\\040", " "), fields[5].split(",")
            if "ro" not in options and target not in _WRITABLE_MOUNTS:
                raise RuntimeError(f"{target} is mounted writable")
    return ["bubblewrap", *(f"{n}-namespace" for n in _NAMESPACES), "seccomp", "no-capabilities",
            "no-new-privs", "unprivileged-uid", "read-only-root"]


def _set_limits(limits: dict) -> None:
    mb = 1024 * 1024
    for which, value in ((resource.RLIMIT_AS, limits["memory_mb"] * mb), (resource.RLIMIT_NPROC, limits["nproc"]),
                         (resource.RLIMIT_FSIZE, limits["fsize_mb"] * mb), (resource.RLIMIT_NOFILE, 256),
                         (resource.RLIMIT_CORE, 0)):
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))


def _write_files(files: dict) -> None:
    for name, content in files.items():
        path = os.path.join(WORKDIR, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> (indexes of the path arguments it modifies, index of its dir_fd argument or None)
_MUTATING_EVENTS = {
    "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2), "os.rename": ((0, 1), 2),
    "os.replace": ((0, 1), 2), "os.chmod": ((0,), 2), "os.chown": ((0,), 3), "os.symlink": ((1,), 2),
    "os.link": ((1,), 3), "os.truncate": ((0,), None), "os.utime": ((0,), 3), "os.mkfifo": ((0,), 2),
    "os.mknod": ((0,), 3), "shutil.rmtree": ((0,), 1), "os.setxattr": ((0,), None),
    "os.removexattr": ((0,), None),
}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "pty.spawn"}
_ALLOWED_DEVICES = {"/dev/null", "/dev/stdout", "/dev/stderr"}


def _install_audit_hook(workdir: str) -> None:
    realpath, join, fspath, isabs, getcwd = os.path.realpath, os.path.join, os.fspath, os.path.isabs, os.getcwd

    def inside(path, dir_fd=None) -> bool:
        if isinstance(path, int):  # an already-open descriptor: its own open was checked
            return True
        path = fspath(path)
        if isinstance(path, bytes):
            path = path.decode(errors="surrogateescape")
        base = getcwd() if dir_fd is None else os.readlink(f"/proc/self/fd/{dir_fd}")
        full = realpath(path if isabs(path) else join(base, path))
        return full == workdir or full.startswith(workdir + "/") or full in _ALLOWED_DEVICES

    def refuse(what: str):
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and path is not None and not inside(path):
                refuse(f"writing outside the sandbox directory ({path!r})")
        elif event in _MUTATING_EVENTS:
            path_indexes, dir_fd_index = _MUTATING_EVENTS[event]
            dir_fd = args[dir_fd_index] if dir_fd_index is not None and dir_fd_index < len(args) else None
            if not isinstance(dir_fd, int) or dir_fd < 0:
                dir_fd = None
            for i in path_indexes:
                if i < len(args) and args[i] is not None and not inside(args[i], dir_fd):
                    refuse(f"{event} outside the sandbox directory ({args[i]!r})")
        elif event.startswith("socket.") and event not in ("socket.gethostname", "socket.sethostname"):
            refuse(f"network access ({event})")
        elif event in _PROCESS_EVENTS:
            refuse(f"starting a process ({event})")

    sys.addaudithook(hook)


def main() -> None:
    request = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    status = os.fdopen(request["status_fd"], "w")
    try:
        layers = _check_isolation(request["host_namespaces"])
        _set_limits(request["limits"])
        _write_files(request["files"])
    except Exception as e:  # noqa: BLE001 - any failure here means the code must not run
        status.write(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        status.close()
        os._exit(125)
    os.chdir(WORKDIR)
    _install_audit_hook(WORKDIR)
    status.write(json.dumps({"layers": [*layers, "rlimits", "audit-hook"]}))
    status.close()
    code = compile(request["code"], "<sandbox>", "exec")
    del request
    sys.argv = ["<sandbox>"]
    sys.path.insert(0, WORKDIR)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
