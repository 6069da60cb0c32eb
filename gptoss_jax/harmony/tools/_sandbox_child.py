"""Child side of the python sandbox: runs inside a fresh interpreter, never imported by the host.

Started by ``sandbox.run_python`` as ``python -I -B _sandbox_child.py``. It reads a JSON request from stdin
(``{"workdir", "code", "memory_mb", "cpu_s", "fsize_mb", "status_fd"}``), then, before any user code runs:

1. resource limits (address space, CPU seconds, file size, open files, no core dumps);
2. a new network namespace (only a down loopback inside: nothing is reachable) and a new mount namespace
   in which every mount is read-only except the work directory; as non-root it first enters a new user
   namespace. Each layer is best effort: what was applied is reported to the host on the status pipe;
3. an audit hook (PEP 578) that refuses sockets, process creation and any write outside the work directory
   with a PermissionError naming what was refused, so that refused code fails with a clear message even where
   the kernel layers are unavailable.

Standard library only; it must not import gptoss_jax.
"""
import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                       "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}


def _set_limits(memory_mb: int, cpu_s: int, fsize_mb: int) -> None:
    def cap(which, value):
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard if hard != resource.RLIM_INFINITY else value))

    cap(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    cap(resource.RLIMIT_FSIZE, fsize_mb * 1024 * 1024)
    cap(resource.RLIMIT_NOFILE, 256)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _write_map(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces() -> bool:
    """New network + mount namespaces (and a user namespace when not root). False when the kernel refuses."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        if uid == 0:
            os.unshare(os.CLONE_NEWNS | os.CLONE_NEWNET)
        else:
            os.unshare(os.CLONE_NEWUSER | os.CLONE_NEWNS | os.CLONE_NEWNET)
            _write_map("/proc/self/setgroups", "deny")
            _write_map("/proc/self/uid_map", f"0 {uid} 1")
            _write_map("/proc/self/gid_map", f"0 {gid} 1")
    except (OSError, AttributeError):
        return False
    return True


def _readonly_everything_but(workdir: str) -> bool:
    """Remount every mount read-only except a bind mount of workdir. True when all remounts succeeded."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]

    def mount(src, target, flags):
        return libc.mount(src, target.encode(), None, flags, None) == 0

    if not mount(b"none", "/", MS_REC | MS_PRIVATE):
        return False
    if not mount(workdir.encode(), workdir, MS_BIND | MS_REC):
        return False
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    all_ok = True
    for fields in entries:
        target = fields[4].replace("\\040", " ")
        if target == workdir or target.startswith(workdir + "/"):
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for option in fields[5].split(","):
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
        if not mount(None, target, flags):
            all_ok = False
    return all_ok


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
    workdir = os.path.realpath(request["workdir"])
    layers = ["rlimits"]
    _set_limits(request["memory_mb"], request["cpu_s"], request["fsize_mb"])
    if request.get("namespaces", True) and _enter_namespaces():
        layers.append("netns")
        if _readonly_everything_but(workdir):
            layers.append("readonly-fs")
    os.chdir(workdir)
    _install_audit_hook(workdir)
    layers.append("audit-hook")
    try:
        with os.fdopen(request["status_fd"], "w") as status:
            status.write(json.dumps({"layers": layers}))
    except OSError:
        pass
    code = compile(request["code"], "<sandbox>", "exec")
    sys.argv = ["<sandbox>"]
    sys.path.insert(0, workdir)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
