"""Multi-process runs (several hosts, or several processes on one host) on JAX's multi-controller runtime.

Every process runs the same command; `jax.distributed.initialize` joins them into one job whose `jax.devices()` spans
all hosts, so a mesh over `jax.devices()` (sharding.make_mesh) spans them too. This module holds:

  detect(...)       -> Cluster | None   who the processes are: explicit values (flags or GPTOSS_* variables), else the
                                        cluster's own variables (SLURM srun step, TPU pod via JAX's detectors,
                                        Kubernetes indexed Job / JobSet); None for a single process
  initialize(cluster, timeout_s=, num_cpu_devices=)   join the job: a rendezvous that names a process that never
                                        joins (JAX itself aborts the process without saying which one), then
                                        jax.distributed.initialize; on CPU also gloo collectives and the device count
  setup_logging()                       process 0 alone prints and logs; the others keep only errors, prefixed
  is_main()                             process 0: the one that writes outputs
  check_same(values, what)              every process holds the same values, or one error naming the first that
                                        differs and its value on each process
  broadcast_json(value), gather_json_to_main(value), allgather_json(value), barrier(name)
                                        host data between processes (JSON-able values; collective: every process
                                        calls them in the same order)
  replica_info(replicas) -> ReplicaInfo data-parallel model replicas made of whole processes (eval sweeps)
  collect_files(folder, names)          bring each replica's output files to process 0 (hosts without shared disks)

Host data goes through the coordination service's key-value store (the channel jax.distributed already opened, the
one Orbax uses too), not device collectives, so it needs no compilation and works for any size or process layout.
Device arrays that must agree are broadcast with jax.experimental.multihost_utils.broadcast_one_to_all.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

ENV_COORDINATOR = "GPTOSS_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "GPTOSS_NUM_PROCESSES"
ENV_PROCESS_ID = "GPTOSS_PROCESS_ID"
ENV_COORDINATOR_PORT = "GPTOSS_COORDINATOR_PORT"
ENV_CPU_DEVICES = "GPTOSS_CPU_DEVICES"
ENV_LOG_ALL = "GPTOSS_LOG_ALL_PROCESSES"
DEFAULT_PORT = 8476
MODES = ("auto", "on", "off")
_CHUNK = 1 << 20  # key-value store values are sent in pieces of this many bytes


class DistributedError(RuntimeError):
    """A multi-process job that cannot start, or whose processes disagree: says which process and what."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One process's place in a job."""
    coordinator_address: str  # host:port of process 0
    num_processes: int
    process_id: int
    source: str  # where the values came from, for messages
    local_device_ids: tuple[int, ...] | None = None  # None: every local accelerator

    def __post_init__(self):
        if self.num_processes < 1:
            raise DistributedError(f"{self.source}: number of processes must be >= 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise DistributedError(f"{self.source}: process id {self.process_id} is not in [0, {self.num_processes})")
        _split_address(self.coordinator_address, self.source)


# ------------------------------------------------------------------------------------------------------- detection
def _split_address(address: str, source: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"{source}: coordinator address {address!r} is not host:port "
                               f"(e.g. 10.0.0.2:{DEFAULT_PORT})")
    return host.strip("[]"), int(port)


def _int_env(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[007-009,012],cpu1' -> 'gpu007', 'a1,a2' -> 'a1'."""
    m = re.match(r"([^,\[]*)(?:\[(\d+))?", nodelist)
    return m.group(1) + (m.group(2) or "")


def _max_tasks_per_node(spec: str) -> int:
    """SLURM_STEP_TASKS_PER_NODE such as '4(x2),3' -> 4."""
    return max((int(m.group()) for m in (re.match(r"\d+", p) for p in spec.split(",")) if m), default=1)


def _from_slurm(environ: Mapping[str, str]) -> Cluster | None:
    """Inside an `srun` step: one process per task (SLURM_PROCID of SLURM_STEP_NUM_TASKS)."""
    if not all(k in environ for k in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID")):
        return None  # not inside srun (an sbatch script's own shell is one process)
    count = _int_env(environ, "SLURM_STEP_NUM_TASKS") or _int_env(environ, "SLURM_NTASKS") or 1
    port = _int_env(environ, ENV_COORDINATOR_PORT) or 61440 + int(environ["SLURM_JOB_ID"]) % 4096
    # several tasks on a node: task i of the node drives local GPU i; one task a node drives all of them
    per_node = _max_tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", environ.get("SLURM_TASKS_PER_NODE", "1")))
    # (unless SLURM already bound one GPU to the task, e.g. --gpus-per-task=1: then it is the task's only device)
    bound = len([d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]) == 1
    local = (_int_env(environ, "SLURM_LOCALID"),) if per_node > 1 and not bound and "SLURM_LOCALID" in environ else None
    return Cluster(f"{first_slurm_host(environ['SLURM_STEP_NODELIST'])}:{port}", count,
                   _int_env(environ, "SLURM_PROCID") or 0, "SLURM", local)


def _from_kubernetes(environ: Mapping[str, str], coordinator: str | None) -> tuple[int, str | None] | None:
    """An indexed Job / JobSet pod: process id = JOB_COMPLETION_INDEX; a JobSet names its first pod."""
    index = _int_env(environ, "JOB_COMPLETION_INDEX")
    if index is None:
        return None
    job_index = _int_env(environ, "JOB_INDEX") or 0
    if job_index:
        raise DistributedError(
            f"Kubernetes: JOB_INDEX={job_index}: use one replicated job (replicas: 1) whose parallelism and "
            f"completions equal the number of processes, or set {ENV_PROCESS_ID} yourself")
    if coordinator is None and environ.get("JOBSET_NAME") and environ.get("REPLICATED_JOB_NAME"):
        # JobSet pod hostnames: <jobset>-<replicated job>-<job index>-<pod index>.<subdomain = jobset name>
        js, rj = environ["JOBSET_NAME"], environ["REPLICATED_JOB_NAME"]
        port = _int_env(environ, ENV_COORDINATOR_PORT) or DEFAULT_PORT
        coordinator = f"{js}-{rj}-0-0.{environ.get('GPTOSS_SUBDOMAIN', js)}:{port}"
    return index, coordinator


def _from_jax_detectors(timeout_s: float) -> Cluster | None:
    """TPU VMs and TPU pods on GKE: JAX's own detectors (GCE metadata, TPU_WORKER_* variables)."""
    try:
        from jax._src import clusters  # the registry jax.distributed.initialize() consults
        from jax._src.cloud_tpu_init import running_in_cloud_tpu_vm
    except ImportError:  # pragma: no cover - a JAX without the registry
        return None
    if not running_in_cloud_tpu_vm:
        return None
    for env in clusters.ClusterEnv._cluster_types:
        if env.name in ("gcetpu", "gketpu") and env.is_env_present():
            port = os.environ.get("JAX_COORDINATOR_PORT")
            address = env.get_coordinator_address(timeout_secs=int(timeout_s), override_coordinator_port=port)
            return Cluster(address, env.get_process_count(), env.get_process_id(), f"TPU ({env.name})")
    return None


def detect(*, coordinator_address: str | None = None, num_processes: int | None = None,
           process_id: int | None = None, mode: str = "auto", timeout_s: float = 300,
           environ: Mapping[str, str] | None = None) -> Cluster | None:
    """This process's place in a multi-process job, or None when it runs alone.

    Explicit values win (arguments, then GPTOSS_COORDINATOR_ADDRESS / GPTOSS_NUM_PROCESSES / GPTOSS_PROCESS_ID);
    values still missing come from the cluster: an srun step (SLURM_*), a TPU VM pod slice (JAX's detectors), a
    Kubernetes indexed Job or JobSet (JOB_COMPLETION_INDEX, once GPTOSS_NUM_PROCESSES says the pods form one job; a
    JobSet's first pod as coordinator). mode 'off' always gives None; 'on' insists on a job; 'auto' joins one when
    the values describe one of more than one process.
    """
    if mode not in MODES:
        raise DistributedError(f"--distributed={mode!r}: expected one of {MODES}")
    if mode == "off":
        return None
    env = os.environ if environ is None else environ
    addr = coordinator_address or env.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else _int_env(env, ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else _int_env(env, ENV_PROCESS_ID)
    explicit = [v for v in (addr, count, pid) if v is not None]
    source = "flags/GPTOSS_* environment"
    found = None
    if len(explicit) < 3:
        slurm = _from_slurm(env)
        if slurm is not None:
            found = slurm
        elif not explicit and environ is None:
            found = _from_jax_detectors(timeout_s)
        if found is None and (count is not None or mode == "on"):
            # an indexed Job's pods are one job only when told how many they are (else they may be independent)
            k8s = _from_kubernetes(env, addr)
            if k8s is not None:
                pid = pid if pid is not None else k8s[0]
                addr = addr or k8s[1]
                source = "Kubernetes (JOB_COMPLETION_INDEX)" + (" + flags/GPTOSS_*" if explicit else "")
    if found is not None:
        addr = addr or found.coordinator_address
        count = count if count is not None else found.num_processes
        pid = pid if pid is not None else found.process_id
        source = found.source + (" + flags/GPTOSS_*" if explicit else "")
    if addr is None and count is None and pid is None:
        if mode == "on":
            raise DistributedError(
                "--distributed=on but nothing describes the job: pass --coordinator_address, --num_processes and "
                "--process_id (or GPTOSS_COORDINATOR_ADDRESS, GPTOSS_NUM_PROCESSES, GPTOSS_PROCESS_ID), or run "
                "under srun, on a TPU pod slice, or in a Kubernetes indexed Job/JobSet")
        return None
    if count == 1 and addr is None and mode != "on":
        return None
    missing = [n for n, v in (("--coordinator_address", addr), ("--num_processes", count),
                              ("--process_id", pid)) if v is None]
    if missing:
        raise DistributedError(f"multi-process job ({source}) is missing {', '.join(missing)}; every process needs "
                               f"the coordinator's host:port, the number of processes and its own id")
    cluster = Cluster(addr, count, pid, source, found.local_device_ids if found is not None else None)
    if cluster.num_processes == 1 and mode != "on":
        return None
    return cluster


# -------------------------------------------------------------------------------------------------- joining a job
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
    host, port = _split_address(cluster.coordinator_address, cluster.source)
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


def _backends_started() -> bool:
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()


def initialize(cluster: Cluster | None, *, timeout_s: float = 300, num_cpu_devices: int | None = None) -> None:
    """Join the job (no-op for None). Call once, before any JAX device use.

    num_cpu_devices (default $GPTOSS_CPU_DEVICES): devices per process on the CPU platform, for testing meshes without
    accelerators. Multi-process CPU runs use gloo collectives (set here; the setting concerns the CPU backend only).
    """
    import jax

    if is_initialized():
        raise DistributedError("jax.distributed is already initialized in this process")
    if num_cpu_devices is None and os.environ.get(ENV_CPU_DEVICES):
        num_cpu_devices = _int_env(os.environ, ENV_CPU_DEVICES)
    if (num_cpu_devices is not None or cluster is not None) and _backends_started():
        raise DistributedError("the multi-process runtime must start before any JAX device use; something used "
                               "jax.devices() or ran a computation before initialize()")
    if num_cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", int(num_cpu_devices))
    if cluster is None:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    t0 = time.monotonic()
    rendezvous(cluster, timeout_s)
    left = max(10, int(timeout_s - (time.monotonic() - t0)))
    jax.distributed.initialize(cluster.coordinator_address, cluster.num_processes, cluster.process_id,
                               local_device_ids=list(cluster.local_device_ids) if cluster.local_device_ids else None,
                               cluster_detection_method="deactivate", initialization_timeout=left)
    log.info("joined a job of %d processes as process %d (coordinator %s, from %s)", cluster.num_processes,
             cluster.process_id, cluster.coordinator_address, cluster.source)


def _client():
    from jax._src import distributed as jax_distributed
    return jax_distributed.global_state.client


def is_initialized() -> bool:
    return _client() is not None


def _process() -> tuple[int, int]:
    """(process id, process count) without starting a backend when this is a single process."""
    if not is_initialized():
        return 0, 1
    from jax._src import distributed as jax_distributed
    return jax_distributed.global_state.process_id, jax_distributed.global_state.num_processes


def is_main() -> bool:
    """True on process 0, the one process that prints results and writes outputs (True when running alone)."""
    return _process()[0] == 0


# --------------------------------------------------------------------------------------------------------- logging
class _ProcessPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_gptoss_prefixed", False):
            record.msg = f"{self.prefix}{record.msg}"
            record._gptoss_prefixed = True
        return True


def setup_logging() -> None:
    """Process 0 alone writes to stdout and logs; the others keep errors only, prefixed with their process id.
    GPTOSS_LOG_ALL_PROCESSES=1 keeps every process's output (debugging a hang or a crash on one host)."""
    pid, n = _process()
    if n == 1:
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    for h in root.handlers:
        h.addFilter(_ProcessPrefix(f"[process {pid}/{n}] "))
    if pid == 0 or os.environ.get(ENV_LOG_ALL, "") not in ("", "0"):
        return
    root.setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


# ---------------------------------------------------------------------------------------- host data between hosts
_sequence = itertools.count()


def _timeout_ms(timeout_s: float | None) -> int:
    return int((24 * 3600 if timeout_s is None else timeout_s) * 1000)


def _put(client, key: str, data: bytes) -> None:
    pieces = [data[i:i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
    for i, p in enumerate(pieces):
        client.key_value_set_bytes(f"{key}/{i}", p)
    client.key_value_set(f"{key}/n", str(len(pieces)))


def _get(client, key: str, timeout_s: float | None, what: str, pid: int) -> bytes:
    try:
        n = int(client.blocking_key_value_get(f"{key}/n", _timeout_ms(timeout_s)))
        return b"".join(client.blocking_key_value_get_bytes(f"{key}/{i}", _timeout_ms(timeout_s)) for i in range(n))
    except Exception as e:  # noqa: BLE001 - the runtime raises its own error types
        raise DistributedError(f"{what}: no value from process {pid} within {timeout_s}s ({str(e).splitlines()[0]}); "
                               f"did it fail or take another code path?") from None


def _delete(client, key: str) -> None:
    try:
        client.key_value_delete(key)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def _allgather_bytes(data: bytes, what: str, timeout_s: float | None, to_main_only: bool = False) -> list[bytes]:
    pid, n = _process()
    if n == 1:
        return [data]
    client = _client()
    key = f"gptoss/{next(_sequence)}/{what.replace('/', '_')}"
    _put(client, f"{key}/{pid}", data)
    if to_main_only and pid != 0:
        return []
    out = [data if i == pid else _get(client, f"{key}/{i}", timeout_s, what, i) for i in range(n)]
    if to_main_only:
        _delete(client, key)
    return out


def allgather_json(value: Any, *, what: str = "allgather", timeout_s: float | None = 600) -> list[Any]:
    """Every process's JSON-able value, in process order, on every process (collective: all must call it; n^2
    reads for n processes, so for small jobs or rare calls; gather_json_to_main is linear)."""
    return [json.loads(b) for b in _allgather_bytes(json.dumps(value).encode(), what, timeout_s)]


def gather_json_to_main(value: Any, *, what: str = "gather", timeout_s: float | None = 600) -> list[Any] | None:
    """Every process's value on process 0 (in process order); None elsewhere (collective)."""
    out = _allgather_bytes(json.dumps(value).encode(), what, timeout_s, to_main_only=True)
    return [json.loads(b) for b in out] if out else None


def broadcast_json(value: Any, *, what: str = "broadcast", timeout_s: float | None = 600) -> Any:
    """Process 0's JSON-able value on every process (host inputs such as prompts read from a file or stdin)."""
    pid, n = _process()
    if n == 1:
        return value
    client = _client()
    key = f"gptoss/{next(_sequence)}/{what.replace('/', '_')}"
    if pid == 0:
        _put(client, key, json.dumps(value).encode())
        return value
    return json.loads(_get(client, key, timeout_s, what, 0))


def barrier(name: str, *, timeout_s: float | None = None) -> None:
    """Wait until every process reaches the barrier `name` (default: wait up to a day, e.g. replicas of a sweep
    finishing at different times)."""
    pid, n = _process()
    if n == 1:
        return
    try:
        _client().wait_at_barrier(f"gptoss/{next(_sequence)}/{name}", _timeout_ms(timeout_s))
    except Exception as e:  # noqa: BLE001
        raise DistributedError(f"process {pid}: barrier {name!r} not reached by every process within {timeout_s}s "
                               f"({str(e).splitlines()[0]})") from None


def check_same(values: Mapping[str, Any], what: str = "settings", *, timeout_s: float | None = 600) -> None:
    """Raise one DistributedError, on every process, unless all processes hold equal `values` (names -> JSON-able
    values); it names the first name that differs and its value on each process. Process 0 compares (one value from
    each process) and tells everyone the verdict, so the cost grows linearly with the number of processes."""
    pid, n = _process()
    if n == 1:
        return
    mine = {k: json.loads(json.dumps(v, default=repr)) for k, v in values.items()}
    everyone = gather_json_to_main(mine, what=f"check_same/{what}", timeout_s=timeout_s)
    problem = None
    if everyone is not None:
        for name in dict.fromkeys(k for d in everyone for k in d):
            seen = [d.get(name, "<not set>") for d in everyone]
            if any(s != seen[0] for s in seen[1:]):
                groups: dict[str, list[int]] = {}
                for i, s in enumerate(seen):
                    groups.setdefault(json.dumps(s), []).append(i)
                detail = "; ".join(f"{v} on process{'es' if len(p) > 1 else ''} {_ranges(p)}"
                                   for v, p in groups.items())
                problem = (f"{what} differ across the {n} processes: {name} is {detail}. Every process must run "
                           f"the same command with the same inputs")
                break
    problem = broadcast_json(problem, what=f"check_same/{what}/verdict", timeout_s=timeout_s)
    if problem:
        raise DistributedError(problem)


def _ranges(ids: Sequence[int]) -> str:
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)


# ------------------------------------------------------------------------------------------------ replicas, sweeps
@dataclasses.dataclass(frozen=True)
class ReplicaInfo:
    """A data-parallel model replica: a group of whole processes with its own copy of the model.

    Sweeps give replica `index` of `count` its share of the samples (evals: replica_index / replica_count); the
    leader (the group's first process) writes that replica's record stream. Process ids are stable across restarts
    on SLURM, TPU pods and indexed Jobs, so a preempted sweep resumes each replica from its own records.
    """
    index: int
    count: int
    process_ids: tuple[int, ...]

    @property
    def leader(self) -> int:
        return self.process_ids[0]

    @property
    def is_leader(self) -> bool:
        return _process()[0] == self.leader

    def devices(self) -> list:
        """The devices of this replica's processes, in jax.devices() order (build its mesh over these)."""
        import jax
        return [d for d in jax.devices() if d.process_index in self.process_ids]


def replica_info(replicas: int = 1) -> ReplicaInfo:
    """This process's replica when the job's processes form `replicas` equal groups of consecutive process ids."""
    pid, n = _process()
    if replicas < 1 or n % replicas:
        raise DistributedError(f"{replicas} replicas cannot split the job's {n} processes evenly; use a divisor "
                               f"of {n}")
    per = n // replicas
    index = pid // per
    return ReplicaInfo(index, replicas, tuple(range(index * per, (index + 1) * per)))


def collect_files(folder: str, names: Sequence[str], *, timeout_s: float | None = 3600) -> list[str]:
    """Bring the files each process wrote (`names`, relative to `folder`) into process 0's `folder`: what a report
    that merges per-replica records needs when hosts do not share a disk. Collective; on a shared filesystem the
    files are already there (same bytes) and nothing is rewritten. Returns the names written on process 0."""
    blobs = []
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            blobs.append(f.read())
    header = json.dumps([[name, len(b)] for name, b in zip(names, blobs)]).encode()
    gathered = _allgather_bytes(header + b"\n" + b"".join(blobs), "collect_files", timeout_s, to_main_only=True)
    written = []
    for pid, payload in enumerate(gathered):
        head, _, data = payload.partition(b"\n")
        offset = 0
        for name, size in json.loads(head):
            content, offset = data[offset:offset + size], offset + size
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    if f.read() == content:
                        continue
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            tmp = f"{path}.from-process-{pid}"
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, path)
            written.append(name)
    return written
