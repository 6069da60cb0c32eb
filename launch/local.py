#!/usr/bin/env python3
"""Start N processes of one command on this machine as one multi-process JAX job (testing, CPU meshes).

    python launch/local.py -n 2 --cpu_devices 4 -- gptoss demo --model tiny --mesh 1,4,2

Each process gets GPTOSS_COORDINATOR_ADDRESS (127.0.0.1 and a free port), GPTOSS_NUM_PROCESSES and its own
GPTOSS_PROCESS_ID, which every gptoss CLI reads (gptoss_jax/distributed/detect.py). With --cpu_devices K the processes run on
the CPU platform with K devices each (JAX_PLATFORMS=cpu, GPTOSS_CPU_DEVICES=K; collectives over gloo), so a mesh of
N*K devices spans the processes as it would span hosts. Without it, the processes use this machine's accelerators
(give each its own with --visible_devices_env, e.g. CUDA_VISIBLE_DEVICES).

The command's program is looked up on PATH, then beside this Python (the bin/ of a virtual environment that is not
activated), then in the repository's .venv/bin; `gptoss` also runs as `python -m gptoss_jax.cli.main` where the
package imports but has no script. A program found nowhere ends the launcher with one line naming the places it looked
and status 127, before any process starts.

The launcher exits with the first failing process's status (and stops the others), 124 after --timeout seconds, and
never leaves a child behind: children die with it (Linux), and Ctrl-C or SIGTERM stops them all. Standard library only.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

GRACE_S = 10
NOT_FOUND = 127   # the shell's status for a command it cannot find
REPO_VENV_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin")


class CommandNotFound(Exception):
    pass


def resolve_command(command: list[str], *, path: str | None = None, python: str = sys.executable,
                    venv_bin: str = REPO_VENV_BIN) -> list[str]:
    """`command` with its program made runnable: as given when it is a path or on PATH, else the same name beside
    `python` or in the repository's .venv/bin, else (for gptoss) `python -m gptoss_jax.cli.main`. Raises
    CommandNotFound naming where it looked."""
    prog, rest = command[0], command[1:]
    if os.sep in prog:
        if os.access(prog, os.X_OK) and not os.path.isdir(prog):
            return command
        raise CommandNotFound(f"{prog} is not an executable file")
    if shutil.which(prog, path=path):
        return command
    places = [os.path.dirname(python), venv_bin]
    for folder in places:
        candidate = os.path.join(folder, prog)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return [candidate, *rest]
    if prog == "gptoss" and importlib.util.find_spec("gptoss_jax") is not None:
        return [python, "-m", "gptoss_jax.cli.main", *rest]
    hint = (" (run `make setup` in the repository, then `source .venv/bin/activate`)" if prog == "gptoss" else "")
    raise CommandNotFound(f"cannot find the command {prog!r}: not on PATH, not in {' or '.join(dict.fromkeys(places))}"
                          f"{hint}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the launcher dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def child_env(base: dict, index: int, n: int, port: int, cpu_devices: int | None,
              visible_env: str | None) -> dict:
    env = dict(base)
    env.update(GPTOSS_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", GPTOSS_NUM_PROCESSES=str(n),
               GPTOSS_PROCESS_ID=str(index), PYTHONUNBUFFERED="1")
    if cpu_devices is not None:
        env.update(JAX_PLATFORMS="cpu", GPTOSS_CPU_DEVICES=str(cpu_devices))
        # the device count is set per process; a forced host device count would fight it
        forced = "--xla_force_host_platform_device_count"
        env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(forced))
    if visible_env:
        env[visible_env] = str(index)
    return env


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(command: list[str], n: int, *, cpu_devices: int | None = None, port: int | None = None,
        timeout_s: float | None = None, visible_env: str | None = None) -> int:
    port = port or free_port()
    procs: list[subprocess.Popen] = []

    def on_signal(signum, frame):
        stop(procs)
        sys.exit(128 + signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(n):
            try:
                procs.append(subprocess.Popen(command, env=child_env(os.environ, i, n, port, cpu_devices, visible_env),
                                              preexec_fn=_die_with_parent if sys.platform == "linux" else None))
            except OSError as e:  # e.g. not executable after all
                print(f"launch/local.py: cannot start {command[0]!r}: {e.strerror or e}", file=sys.stderr)
                return NOT_FOUND
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, code = failed[0]
                print(f"launch/local.py: process {i} exited with status {code}; stopping the others",
                      file=sys.stderr)
                stop(procs)
                return code if code > 0 else 128 - code
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(f"launch/local.py: timed out after {timeout_s:g}s; stopping all {n} processes", file=sys.stderr)
                stop(procs)
                return 124
            time.sleep(0.1)
    finally:
        stop(procs)
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s -n N [--cpu_devices K] [--timeout S] -- COMMAND [ARGS...]")
    parser.add_argument("-n", "--num_processes", type=int, required=True, help="processes to start")
    parser.add_argument("--cpu_devices", type=int, default=None,
                        help="run on the CPU platform with this many devices per process")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=None, help="stop everything after this many seconds")
    parser.add_argument("--visible_devices_env", default=None,
                        help="give process i accelerator i through this variable, e.g. CUDA_VISIBLE_DEVICES")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command every process runs (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: put it after --")
    if args.num_processes < 1:
        parser.error(f"-n must be >= 1, got {args.num_processes}")
    try:
        command = resolve_command(command)
    except CommandNotFound as e:
        print(f"launch/local.py: {e}", file=sys.stderr)
        return NOT_FOUND
    return run(command, args.num_processes, cpu_devices=args.cpu_devices, port=args.port, timeout_s=args.timeout,
               visible_env=args.visible_devices_env)


if __name__ == "__main__":
    sys.exit(main())
