"""Model-written code that attacks the host (sandbox_escapes.py), run through the sandbox as root and as an ordinary
user: none of it may do harm, and every call returns promptly with a result that says what happened."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import sandbox_escapes as esc
from gptoss_jax.harmony.tools import sandbox_command

REPO = Path(__file__).resolve().parents[2]
ORDINARY_UID = 4242  # the ordinary user of the second run: no passwd entry needed
SLACK_S = 20  # a loaded 2-core machine: "promptly" is the call's own limit plus this

# What each attack must have come to, beyond the checks every scenario gets (see _harm).
EXPECT = {
    # No shell could start: the code is one process (no marker, no kill, no secret are checked for all).
    "ctypes_system": lambda r: r["ok"] and "uid=" not in r["stdout"] and "system -> 32512" in r["stdout"],
    "posixsubprocess_fork_exec": lambda r: not r["ok"] and "Operation not permitted" in r["error"],
    "kill_parent": lambda r: r["ok"] and "still here" in r["stdout"],
    "fork_200": lambda r: r["ok"] and "fork 0 failed: Operation not permitted" in r["stdout"],
    "orphan_after_timeout": lambda r: r["timed_out"] and "timed out" in r["error"],
    "orphan_after_exit": lambda r: r["ok"] and "orphan forked: False" in r["stdout"],
    "allocate_20gb": lambda r: not r["ok"] and "memory" in r["error"].lower() and "allocated" not in r["stdout"],
    "output_100mb": lambda r: r["ok"] and len(r["stdout"]) < (1 << 16) + 100,
    "infinite_loop": lambda r: r["timed_out"] and "timed out" in r["error"],
    "x32_abi_syscall": lambda r: (r["exit_code"] == -31 and "SIGSYS" in r["error"]) or "not x86_64" in r["stdout"],
}


@pytest.fixture(scope="module")
def host():
    """What the attacks aim at: a secret file the caller can read, a folder it can write, a listener."""
    base = Path(tempfile.mkdtemp(prefix="gptoss-escapes-"))
    base.chmod(0o755)
    secret = base / "secret.txt"
    secret.write_text(f"secret-{secrets.token_hex(8)}")
    secret.chmod(0o644)
    for sub in ("markers", "out"):
        (base / sub).mkdir()
        (base / sub).chmod(0o777)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    yield {"base": base, "secret_path": str(secret), "secret": secret.read_text(), "listener": listener,
           "env_secret": f"env-{secrets.token_hex(8)}"}
    listener.close()
    shutil.rmtree(base, ignore_errors=True)


def _context(host, token: str) -> esc.Context:
    return esc.Context(host_pid=os.getpid(), secret_path=host["secret_path"], secret=host["secret"],
                       env_secret=host["env_secret"], marker_dir=str(host["base"] / "markers"),
                       port=host["listener"].getsockname()[1], token=token)


def _processes_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == name:
                found.append(int(entry))
        except OSError:
            pass
    return found


def _connections(listener) -> int:
    n = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def _harm(name: str, result: dict, ctx: esc.Context, host) -> list[str]:
    out = result["stdout"] + result["stderr"]
    problems = []
    if os.path.exists(ctx.marker(name)):
        problems.append(f"the host file {ctx.marker(name)} was written")
    if "ESCAPED" in out:
        problems.append("a refused step succeeded: " + next(ln for ln in out.splitlines() if "ESCAPED" in ln))
    if ctx.secret in out:
        problems.append("the host file's secret reached the output")
    if ctx.env_secret in out:
        problems.append("the caller's environment reached the output")
    if _processes_named(ctx.token):
        problems.append(f"processes left alive after the call: {_processes_named(ctx.token)}")
    if _connections(host["listener"]):
        problems.append("the host's loopback listener got a connection")
    if result["duration_s"] > result["kwargs"]["timeout_s"] + SLACK_S:
        problems.append(f"the call took {result['duration_s']:.1f} s")
    if not result["ok"] and not result["error"]:
        problems.append("a failed call without an error message")
    expect = EXPECT.get(name)
    if expect is not None and not expect(result):
        problems.append(f"unexpected outcome: ok={result['ok']} error={result['error']!r} "
                        f"stdout={result['stdout'][-300:]!r} stderr={result['stderr'][-300:]!r}")
    return problems


@pytest.mark.parametrize("name", sorted(esc.SCENARIOS))
def test_escape_fails_as_the_caller(name, host, monkeypatch):
    """In-process, as whoever runs the tests (root in CI: then the code runs as an unprivileged uid)."""
    token = f"gxc{secrets.token_hex(6)}"
    ctx = _context(host, token)
    monkeypatch.setenv("GPTOSS_ESCAPE_SECRET", ctx.env_secret)
    result = esc.run(ctx, name)
    assert _harm(name, result, ctx, host) == []
    assert {"pid-namespace", "net-namespace", "seccomp", "no-capabilities"} <= set(result["isolation"]) or \
        result["timed_out"]


# The walls behind the single-process rule: with processes allowed, forks stop at max_threads and every process
# dies with the sandbox's PID namespace, orphans included.
SECOND_WALL = {
    "fork_200": lambda r: r["ok"] and 0 < int(r["stdout"].split("forked ")[1].split()[0]) < 16,
    "orphan_after_timeout": lambda r: r["timed_out"] and "orphan forked: True" in r["stdout"],
    "orphan_after_exit": lambda r: r["ok"] and "orphan forked: True" in r["stdout"] and "parent exits" in r["stdout"],
}


@pytest.mark.parametrize("name", sorted(SECOND_WALL))
def test_processes_cannot_outlive_the_sandbox_even_if_forks_were_allowed(name, host, monkeypatch):
    from gptoss_jax.harmony.tools import sandbox, sandbox_seccomp
    monkeypatch.setattr(sandbox, "policy_bpf", lambda: sandbox_seccomp.policy_bpf(allow_processes=True))
    token = f"gxw{secrets.token_hex(6)}"
    ctx = _context(host, token)
    result = esc.run(ctx, name)
    monkeypatch.setitem(EXPECT, name, SECOND_WALL[name])  # which also checks that the fork really happened
    assert _harm(name, result, ctx, host) == []


def _ordinary_user_view() -> list[str]:
    """bwrap arguments that show the interpreter and the repository to ORDINARY_UID when they live under a
    folder only root may enter (pyenv in /root): a tmpfs over that folder, the needed paths bound back. This is
    test setup standing in for a machine where Python is installed where everyone can read it."""
    needed = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, str(REPO))})
    blocked = set()
    for path in needed:
        parts = Path(path).parts
        for i in range(2, len(parts) + 1):
            ancestor = os.path.join(*parts[:i])
            if not os.stat(ancestor).st_mode & 0o001:
                blocked.add(ancestor)
                break
    args = []
    for folder in sorted(blocked):
        args += ["--tmpfs", folder]
    for path in needed:
        under = [b for b in blocked if path.startswith(b + "/")]
        if not under:
            continue
        parts = Path(path).parts
        for i in range(len(Path(under[0]).parts) + 1, len(parts)):  # bwrap would make these 0700
            args += ["--perms", "0755", "--dir", os.path.join(*parts[:i])]
        args += ["--ro-bind", path, path]
    return args


@pytest.fixture(scope="module")
def as_ordinary_user(host):
    """Every scenario run once by a helper process that runs as ORDINARY_UID (so the sandbox's caller and its
    bubblewrap are unprivileged); the host side checks come after."""
    if os.geteuid() != 0:
        pytest.skip("the tests already run as an ordinary user (test_escape_fails_as_the_caller)")
    token = f"gxu{secrets.token_hex(6)}"
    ctx = _context(host, token)
    ctx_file = host["base"] / "out" / "context.json"
    out_file = host["base"] / "out" / "results.json"
    fields = {k: v for k, v in vars(ctx).items() if k != "host_pid"}
    ctx_file.write_text(json.dumps(fields))
    ctx_file.chmod(0o644)
    argv = [sandbox_command.find_bwrap(), "--dev-bind", "/", "/", *_ordinary_user_view(), "--die-with-parent",
            "--", sandbox_command.find_setpriv(), f"--reuid={ORDINARY_UID}", f"--regid={ORDINARY_UID}",
            "--clear-groups", "--", sys.executable, str(Path(esc.__file__).resolve()), str(ctx_file), str(out_file)]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "GPTOSS_ESCAPE_SECRET": ctx.env_secret}
    proc = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the ordinary user's helper failed:\n{proc.stdout}\n{proc.stderr}"
    connections = _connections(host["listener"])  # made during the whole run, counted once
    report = json.loads(out_file.read_text())
    assert report["uid"] == ORDINARY_UID
    return ctx, report["results"], connections


@pytest.mark.parametrize("name", sorted(esc.SCENARIOS))
def test_escape_fails_as_an_ordinary_user(name, host, as_ordinary_user):
    ctx, results, connections = as_ordinary_user
    result = results[name]
    assert _harm(name, result, ctx, host) == []
    assert connections == 0, "the host's loopback listener got a connection during the ordinary user's run"
    assert "unprivileged-uid" in result["isolation"] or result["timed_out"]
