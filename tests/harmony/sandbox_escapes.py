"""Escape attempts against the python sandbox, written as model-written code would be, and the harm each must not do.

Each scenario's code reaches for the host: the caller's pid (@HOST_PID@), a host file that holds a secret
(@SECRET_PATH@, readable by the caller), a folder the caller may write (@MARKER@ is a file there that must never
appear), a loopback listener on the host (@PORT@), and @TOKEN@, a process name that no process may still carry
after the call. Code prints "ESCAPED" when a step succeeds that the sandbox must refuse. Most steps go through
ctypes, around the interpreter's audit hook, so that the kernel layers (namespaces, seccomp, read-only mounts,
limits) are what is tested.

The tests import this module and run the scenarios in-process (as whoever runs pytest) and, when pytest runs as
root, once more as an ordinary user: ``python -m tests.harmony.sandbox_escapes CONTEXT.json OUT.json`` runs every
scenario as the current user and writes the results.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys

_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
_SETNS = _LIBC + """
for path in ['/proc/%d/ns/NS' % os.getppid(), '/proc/1/ns/NS', '/proc/@HOST_PID@/ns/NS']:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        print(path, 'cannot open:', e)
        continue
    rc = libc.setns(fd, 0)
    print(path, 'setns ->', rc, os.strerror(ctypes.get_errno()))
    if rc == 0:
        print('ESCAPED: setns into', path)
"""
_CONNECT = """
import socket, struct
s = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
addr = struct.pack('<HH4s8x', socket.AF_INET, socket.htons(@PORT@), bytes([127, 0, 0, 1]))
rc = libc.connect(s, addr, 16)
print('connect ->', rc, os.strerror(ctypes.get_errno()))
if rc == 0:
    print('ESCAPED: connected to the host listener')
"""
_WRITE_MARKER = """
fd = libc.open(b'@MARKER@', os.O_WRONLY | os.O_CREAT, 0o644)
print('open marker ->', fd, os.strerror(ctypes.get_errno()))
if fd >= 0:
    print('ESCAPED: created', '@MARKER@', libc.write(fd, b'pwned', 5))
"""
_MOUNT = _LIBC + """
MS_REMOUNT, MS_BIND = 32, 4096
def mount(src, target, fstype, flags):
    rc = libc.mount(src, target, fstype, flags, None)
    print('mount', target, '->', rc, os.strerror(ctypes.get_errno()))
    if rc == 0:
        print('ESCAPED: mounted', target)
"""
_FORK = _LIBC + """
import time
def child(name):
    libc.prctl(15, name, 0, 0, 0)  # PR_SET_NAME: the host looks for this name afterwards
    time.sleep(60)
    os._exit(0)
"""
_ORPHAN = _FORK + """
pid = libc.fork()
if pid == 0:
    os.setsid()
    child(b'@TOKEN@')
print('orphan forked:', pid > 0, flush=True)
"""

SCENARIOS: dict[str, tuple[str, dict]] = {
    "ctypes_system": (_LIBC + """
print('system ->', libc.system(b'id; echo pwned > @MARKER@; kill -9 @HOST_PID@; cat @SECRET_PATH@'))
""", {}),
    "posixsubprocess_fork_exec": ("""
import _posixsubprocess, os
r, w = os.pipe()
pid = _posixsubprocess.fork_exec(
    [b'/bin/sh', b'-c', b'id; echo pwned > @MARKER@; kill -9 @HOST_PID@; cat @SECRET_PATH@'], [b'/bin/sh'],
    True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None, False)
os.close(w)
print('child', pid, 'exited', os.waitpid(pid, 0)[1])
""", {}),
    "setns_parent_net": (_SETNS.replace("NS", "net") + _CONNECT, {}),
    "setns_parent_mnt": (_SETNS.replace("NS", "mnt") + _WRITE_MARKER, {}),
    "remount_root": (_MOUNT + """
mount(None, b'/', None, MS_REMOUNT | MS_BIND)
mount(None, b'/', None, MS_REMOUNT)
mount(b'/', b'/tmp', None, MS_BIND)
""" + _WRITE_MARKER, {}),
    "remount_proc": (_MOUNT + """
mount(None, b'/proc', None, MS_REMOUNT)
os.makedirs('/tmp/p', exist_ok=True)
mount(b'proc', b'/tmp/p', b'proc', 0)
for pid in (os.getppid(), @HOST_PID@):
    fd = libc.open(b'/proc/%d/mem' % pid, os.O_RDWR)
    print('open /proc/%d/mem ->' % pid, fd, os.strerror(ctypes.get_errno()))
    if fd >= 0 and pid != os.getpid():
        print('ESCAPED: opened the memory of', pid)
""", {}),
    "read_parent_environ": (_LIBC + """
for pid in (os.getppid(), 1, @HOST_PID@):
    try:
        print(pid, open('/proc/%d/environ' % pid, 'rb').read())
    except OSError as e:
        print(pid, 'cannot read environ:', e)
""", {}),
    "write_parent_mem": (_LIBC + """
for pid in (os.getppid(), @HOST_PID@):
    fd = libc.open(b'/proc/%d/mem' % pid, os.O_RDWR)
    print('open /proc/%d/mem ->' % pid, fd, os.strerror(ctypes.get_errno()))
    if fd >= 0:
        libc.pwrite.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
        print('ESCAPED: wrote', libc.pwrite(fd, b'\\0' * 8, 8, 0x400000), 'bytes into', pid)
""", {}),
    "kill_parent": (_LIBC + """
import time
for pid in (os.getppid(), @HOST_PID@):
    try:
        os.kill(pid, 9)
        print('os.kill', pid, 'sent')
    except OSError as e:
        print('os.kill', pid, e)
    print('libc.kill', pid, '->', libc.kill(pid, 9), os.strerror(ctypes.get_errno()))
time.sleep(0.2)
print('still here')
""", {}),
    "fork_200": (_FORK + """
forked = 0
for i in range(200):
    pid = libc.fork()
    if pid == 0:
        child(b'@TOKEN@')
    if pid < 0:
        print('fork', i, 'failed:', os.strerror(ctypes.get_errno()))
        break
    forked += 1
print('forked', forked)
""", {"max_threads": 16}),
    "orphan_after_timeout": (_ORPHAN + """
while True:  # sleeping, not spinning: only the wall clock can end this
    time.sleep(1)
""", {"timeout_s": 1.5}),
    "orphan_after_exit": (_ORPHAN + """
time.sleep(0.2)
print('parent exits')
""", {}),
    "allocate_20gb": ("""
x = bytearray(20 * 1024 ** 3)
print('allocated', len(x))
""", {"memory_mb": 512}),
    "output_100mb": ("""
import sys
chunk = 'x' * (1 << 20)
for _ in range(100):
    sys.stdout.write(chunk)
""", {"max_output_bytes": 1 << 16}),
    "infinite_loop": ("while True:\n    pass\n", {"timeout_s": 1}),
    "read_host_files": (_LIBC + """
for path in ('@SECRET_PATH@', '/proc/1/root@SECRET_PATH@', '/proc/@HOST_PID@/root@SECRET_PATH@'):
    try:
        print(path, open(path).read())
    except OSError as e:
        print(path, 'cannot read:', e)
fd = libc.open(b'@SECRET_PATH@', os.O_RDONLY)
print('libc open ->', fd, os.strerror(ctypes.get_errno()))
for folder in (os.path.dirname('@SECRET_PATH@'), '/root', '/home', '/etc'):
    try:
        print(folder, os.listdir(folder))
    except OSError as e:
        print(folder, 'cannot list:', e)
""", {}),
    "connect_loopback": (_LIBC + """
import socket
try:
    socket.create_connection(('127.0.0.1', @PORT@), timeout=2)
    print('ESCAPED: python socket connected')
except OSError as e:
    print('python socket:', e)
""" + _CONNECT, {}),
    "new_namespaces": (_LIBC + """
for name, flag in (('user', 0x10000000), ('net', 0x40000000), ('mount', 0x00020000), ('pid', 0x20000000)):
    rc = libc.unshare(flag)
    print('unshare', name, '->', rc, os.strerror(ctypes.get_errno()))
    if rc == 0:
        print('ESCAPED: unshare', name)
import platform
clone_nr = {'x86_64': 56, 'aarch64': 220}[platform.machine()]
pid = libc.syscall(clone_nr, 0x10000000 | 17, 0, 0, 0, 0)  # raw clone(CLONE_NEWUSER | SIGCHLD)
if pid == 0:
    os._exit(0)
print('clone(CLONE_NEWUSER) ->', pid, os.strerror(ctypes.get_errno()))
if pid > 0:
    print('ESCAPED: cloned into a new user namespace')
""", {}),
    "x32_abi_syscall": (_LIBC + """
import platform
if platform.machine() == 'x86_64':  # the same unshare through the x32 ABI, which a naive filter misses
    print('before', flush=True)
    rc = libc.syscall(0x40000000 + 272, 0x10000000)
    print('x32 unshare ->', rc, os.strerror(ctypes.get_errno()))
    if rc == 0:
        print('ESCAPED: unshare through x32')
else:
    print('not x86_64')
""", {}),
}


@dataclasses.dataclass(frozen=True)
class Context:
    host_pid: int
    secret_path: str
    secret: str  # the content of secret_path
    env_secret: str  # a value in the caller's environment
    marker_dir: str
    port: int
    token: str  # 15 characters at most (a process name)

    def code(self, name: str) -> str:
        text, _ = SCENARIOS[name]
        for key, value in (("@HOST_PID@", self.host_pid), ("@SECRET_PATH@", self.secret_path),
                           ("@MARKER@", self.marker(name)), ("@PORT@", self.port), ("@TOKEN@", self.token)):
            text = text.replace(key, str(value))
        return text

    def marker(self, name: str) -> str:
        return os.path.join(self.marker_dir, f"{name}.marker")


def run(ctx: Context, name: str) -> dict:
    """Run one scenario through the sandbox; the result as a plain dict."""
    from gptoss_jax.harmony.tools.sandbox import run_python  # noqa: PLC0415
    kwargs = {"timeout_s": 10, **SCENARIOS[name][1]}
    r = run_python(ctx.code(name), **kwargs)
    return {"ok": r.ok, "stdout": r.stdout, "stderr": r.stderr, "exit_code": r.exit_code, "timed_out": r.timed_out,
            "error": r.error, "duration_s": r.duration_s, "isolation": list(r.isolation), "kwargs": kwargs}


def main(argv: list[str]) -> None:
    """As the ordinary user: run every scenario with this process as the caller; write the results as JSON."""
    fields = json.loads(open(argv[0]).read())
    ctx = Context(**{**fields, "host_pid": os.getpid()})
    os.environ["GPTOSS_ESCAPE_SECRET"] = ctx.env_secret
    results = {name: run(ctx, name) for name in SCENARIOS}
    with open(argv[1], "w") as f:
        json.dump({"uid": os.getuid(), "pid": os.getpid(), "results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1:])
