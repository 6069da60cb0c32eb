"""Multi-process runs (several hosts, or several processes on one host) on JAX's multi-controller runtime.

Every process runs the same command; `jax.distributed.initialize` joins them into one job whose `jax.devices()` spans
all hosts, so a mesh over `jax.devices()` (sharding.make_mesh) spans them too. By concern:

  detect.py      detect(...) -> Cluster | None: who the processes are (flags / GPTOSS_* variables first, then JAX's
                 own cluster detectors, then Kubernetes indexed Jobs); None for a single process
  rendezvous.py  a hello from every process before JAX's join, so a process that never joins is named
  runtime.py     initialize(cluster, ...), is_initialized(), is_main(), setup_logging()
  host_data.py   JSON-able host values between processes over the coordination service's key-value store:
                 broadcast_json, gather_json_to_main, allgather_json, barrier, check_same
  replicas.py    replica_info(replicas) -> ReplicaInfo (data-parallel replicas of whole processes), collect_files
  _jax_compat.py every private JAX name used, behind small functions

Device arrays that must agree are broadcast with jax.experimental.multihost_utils.broadcast_one_to_all.
"""
from __future__ import annotations

from gptoss_jax.distributed.detect import DEFAULT_PORT, MODES, Cluster, detect
from gptoss_jax.distributed.host_data import allgather_json, barrier, broadcast_json, check_same, gather_json_to_main
from gptoss_jax.distributed.replicas import ReplicaInfo, collect_files, replica_info
from gptoss_jax.distributed.runtime import initialize, is_initialized, is_main, setup_logging
from gptoss_jax.errors import DistributedError

__all__ = ["Cluster", "DEFAULT_PORT", "DistributedError", "MODES", "ReplicaInfo", "allgather_json", "barrier",
           "broadcast_json", "check_same", "collect_files", "detect", "gather_json_to_main", "initialize",
           "is_initialized", "is_main", "replica_info", "setup_logging"]
