"""Who the processes of a job are: `detect(...) -> Cluster | None`.

Explicit values win: arguments (the CLI flags), then GPTOSS_COORDINATOR_ADDRESS / GPTOSS_NUM_PROCESSES /
GPTOSS_PROCESS_ID. Values still missing come from the cluster, as jax.distributed.initialize() itself would find
them: JAX's own detectors (an srun step under SLURM, Open MPI, a TPU VM pod slice, Kubernetes with its API package).
What this project adds: a Kubernetes indexed Job or JobSet needs no API access (JOB_COMPLETION_INDEX, once
GPTOSS_NUM_PROCESSES says the pods form one job; a JobSet's first pod as coordinator), and under SLURM one task per
node drives every GPU of its node (JAX alone would give each task only its SLURM_LOCALID-th GPU).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping

from gptoss_jax.distributed import _jax_compat
from gptoss_jax.errors import DistributedError

ENV_COORDINATOR = "GPTOSS_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "GPTOSS_NUM_PROCESSES"
ENV_PROCESS_ID = "GPTOSS_PROCESS_ID"
ENV_COORDINATOR_PORT = "GPTOSS_COORDINATOR_PORT"
DEFAULT_PORT = 8476
MODES = ("auto", "on", "off")
# JAX's detector names -> how messages name the cluster
_NAMES = {"slurm": "SLURM", "ompi": "Open MPI", "gcetpu": "TPU (gcetpu)", "gketpu": "TPU (gketpu)",
          "k8s": "Kubernetes"}


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
        split_address(self.coordinator_address, self.source)


def split_address(address: str, source: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"{source}: coordinator address {address!r} is not host:port "
                               f"(e.g. 10.0.0.2:{DEFAULT_PORT})")
    return host.strip("[]"), int(port)


def int_env(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def _slurm_local_devices(environ: Mapping[str, str], local_id: int | None) -> tuple[int, ...] | None:
    """Several tasks on a node: task i of the node drives local GPU i; one task a node drives all of them (unless
    SLURM already bound one GPU to the task, e.g. --gpus-per-task=1: then it is the task's only device)."""
    spec = environ.get("SLURM_STEP_TASKS_PER_NODE", environ.get("SLURM_TASKS_PER_NODE", "1"))
    per_node = max((int(m.group()) for m in (re.match(r"\d+", p) for p in spec.split(",")) if m), default=1)
    bound = len([d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]) == 1
    return (local_id,) if per_node > 1 and not bound and local_id is not None else None


def _from_jax(environ: Mapping[str, str], timeout_s: float) -> Cluster | None:
    """The first cluster environment JAX's own detectors find (what jax.distributed.initialize() would use)."""
    port = environ.get(ENV_COORDINATOR_PORT) or environ.get("JAX_COORDINATOR_PORT")
    for env in _jax_compat.cluster_detectors():
        if not _jax_compat.present(env):
            continue
        source = _NAMES.get(env.name, env.name)
        address = env.get_coordinator_address(timeout_secs=int(timeout_s), override_coordinator_port=port)
        local_id = env.get_local_process_id()
        if env.name == "slurm":
            local = _slurm_local_devices(environ, local_id)
        elif local_id is None or _jax_compat.running_in_cloud_tpu_vm():
            local = None                       # JAX never restricts local devices on TPUs
        else:
            local = (local_id,)
        return Cluster(address, env.get_process_count(), env.get_process_id(), source, local)
    return None


def _from_kubernetes(environ: Mapping[str, str], coordinator: str | None) -> tuple[int, str | None] | None:
    """An indexed Job / JobSet pod: process id = JOB_COMPLETION_INDEX; a JobSet names its first pod."""
    index = int_env(environ, "JOB_COMPLETION_INDEX")
    if index is None:
        return None
    job_index = int_env(environ, "JOB_INDEX") or 0
    if job_index:
        raise DistributedError(
            f"Kubernetes: JOB_INDEX={job_index}: use one replicated job (replicas: 1) whose parallelism and "
            f"completions equal the number of processes, or set {ENV_PROCESS_ID} yourself")
    if coordinator is None and environ.get("JOBSET_NAME") and environ.get("REPLICATED_JOB_NAME"):
        # JobSet pod hostnames: <jobset>-<replicated job>-<job index>-<pod index>.<subdomain = jobset name>
        js, rj = environ["JOBSET_NAME"], environ["REPLICATED_JOB_NAME"]
        port = int_env(environ, ENV_COORDINATOR_PORT) or DEFAULT_PORT
        coordinator = f"{js}-{rj}-0-0.{environ.get('GPTOSS_SUBDOMAIN', js)}:{port}"
    return index, coordinator


def detect(*, coordinator_address: str | None = None, num_processes: int | None = None,
           process_id: int | None = None, mode: str = "auto", timeout_s: float = 300) -> Cluster | None:
    """This process's place in a multi-process job, or None when it runs alone (reads the environment).

    mode 'off' always gives None; 'on' insists on a job; 'auto' joins one when the values describe one of more
    than one process.
    """
    if mode not in MODES:
        raise DistributedError(f"--distributed={mode!r}: expected one of {MODES}")
    if mode == "off":
        return None
    env = os.environ
    addr = coordinator_address or env.get(ENV_COORDINATOR) or None
    count = num_processes if num_processes is not None else int_env(env, ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else int_env(env, ENV_PROCESS_ID)
    explicit = [v for v in (addr, count, pid) if v is not None]
    source = "flags/GPTOSS_* environment"
    found = _from_jax(env, timeout_s) if len(explicit) < 3 else None
    if found is None and len(explicit) < 3 and (count is not None or mode == "on"):
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
