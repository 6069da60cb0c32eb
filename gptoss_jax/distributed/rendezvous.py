"""A rendezvous before JAX's own join: process 0 listens on the coordinator port and waits for every other process
to say hello, so a process that never joins is NAMED (JAX's join kills the process on a timeout without saying
who is missing), and bad ids (duplicates, out of range, other process counts) fail every process with one message.
A few JSON lines over TCP; the port is released before jax.distributed.initialize() binds it."""
from __future__ import annotations

import json
import socket
import time

from gptoss_jax.distributed.detect import Cluster, split_address
from gptoss_jax.errors import DistributedError


def _send(conn: socket.socket, obj: dict) -> None:
    conn.sendall((json.dumps(obj) + "\n").encode())


def _recv(conn: socket.socket, deadline: float) -> dict | None:
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        conn.settimeout(left)
        try:
            chunk = conn.recv(4096)
        except (socket.timeout, OSError):
            return None
        if not chunk:
            return None
        buf += chunk
    try:
        return json.loads(buf)
    except json.JSONDecodeError:
        return None


def _listen(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("", port))


def rendezvous(cluster: Cluster, timeout_s: float) -> None:
    """Wait until every process of the job is up, before JAX's own join (which kills the process on a timeout
    without saying who is missing). Process 0 listens on the coordinator port and names the ids that did not
    report; the others retry until they reach it. Bad ids (duplicate, out of range, other process counts) fail all."""
    host, port = split_address(cluster.coordinator_address, cluster.source)
    n, me = cluster.num_processes, cluster.process_id
    deadline = time.monotonic() + timeout_s
    where = f"coordinator {cluster.coordinator_address} ({cluster.source})"
    if me == 0:
        try:
            server = _listen(port)
        except OSError as e:
            raise DistributedError(f"process 0: cannot listen on port {port} for the {where}: {e.strerror} "
                                   f"(another job on this host using the port?)") from None
        joined: dict[int, tuple[socket.socket, str]] = {}
        problem = None
        try:
            with server:
                while len(joined) < n - 1 and problem is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    server.settimeout(left)
                    try:
                        conn, peer = server.accept()
                    except (socket.timeout, OSError):
                        break
                    hello = _recv(conn, min(deadline, time.monotonic() + 10))
                    if not hello or "process_id" not in hello:
                        conn.close()  # a port scan or a stray client
                        continue
                    pid, their_n, who = hello["process_id"], hello.get("num_processes"), hello.get("host", peer[0])
                    if their_n != n:
                        problem = (f"process {pid} on {who} was started with {their_n} processes, process 0 with "
                                   f"{n}: every process needs the same number of processes")
                    elif not isinstance(pid, int) or not 0 < pid < n:
                        problem = f"a process on {who} claims id {pid}, outside [1, {n})"
                    elif pid in joined:
                        problem = (f"process id {pid} was claimed twice, by {joined[pid][1]} and by {who}: every "
                                   f"process needs a distinct process id")
                    if problem:
                        _send(conn, {"ok": False, "error": problem})
                        conn.close()
                    else:
                        joined[pid] = (conn, who)
                missing = sorted(set(range(1, n)) - set(joined))
                if problem is None and missing:
                    problem = (f"process{'es' if len(missing) > 1 else ''} {missing} of {n} did not join the job "
                               f"within {timeout_s:g}s ({where}; joined besides process 0: "
                               f"{sorted(joined) or 'none'}). "
                               f"Check that every host runs the same command with a distinct process id and can "
                               f"reach {host}:{port}")
                for conn, _ in joined.values():
                    try:
                        _send(conn, {"ok": problem is None, "error": problem})
                    except OSError:
                        pass
                # let the others close first, so the port is free for JAX's coordinator right away
                for conn, _ in joined.values():
                    _recv(conn, time.monotonic() + 5)
        finally:
            for conn, _ in joined.values():
                conn.close()
        if problem:
            raise DistributedError(f"process 0: {problem}")
        return
    last = None
    conn = None
    while conn is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DistributedError(
                f"process {me}: could not reach the {where} within {timeout_s:g}s ({last}). Is process 0 running, "
                f"and can this host reach {host} on port {port}?")
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 5))
        except OSError as e:
            last = e.strerror or str(e)
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    with conn:
        _send(conn, {"process_id": me, "num_processes": n, "host": socket.gethostname()})
        reply = _recv(conn, deadline + 30)  # process 0 decides at its own deadline
    if reply is None:
        raise DistributedError(f"process {me}: the {where} accepted the connection but did not confirm the job "
                               f"within {timeout_s:g}s (it may have failed; see process 0's log)")
    if not reply.get("ok"):
        raise DistributedError(f"process {me}: the job cannot start: {reply.get('error')}")
