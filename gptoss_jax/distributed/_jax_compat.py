"""Every private JAX name the distributed package uses, in one place (jax 0.11). When JAX moves one of them, this
is the only file to change; each function says what it stands for."""
from __future__ import annotations

import warnings


def cluster_detectors() -> list:
    """JAX's cluster environments (SLURM, Open MPI, GCE/GKE TPU pods, Kubernetes), in the order
    jax.distributed.initialize() consults them; opt-in ones (mpi4py) left out, as it leaves them out."""
    from jax._src import clusters

    return [env for env in clusters.ClusterEnv._cluster_types if not env.opt_in_only_method]


def present(env) -> bool:
    """env.is_env_present(), without the warning JAX's Kubernetes detector prints when its optional package is
    missing (this project then uses its own indexed-Job detection)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(env.is_env_present())


def running_in_cloud_tpu_vm() -> bool:
    from jax._src.cloud_tpu_init import running_in_cloud_tpu_vm as on_tpu_vm

    return bool(on_tpu_vm)


def backends_started() -> bool:
    """Whether any JAX backend (device client) exists yet: the multi-process runtime must start before one does."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _state():
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state


def coordination_client():
    """The client of the coordination service jax.distributed.initialize() started (key-value store, barriers);
    None when this process is not part of a job."""
    return _state().client


def process_position() -> tuple[int, int]:
    """(process id, process count) of the job, read without starting a device backend (jax.process_index() would)."""
    state = _state()
    if state.client is None:
        return 0, 1
    return state.process_id, state.num_processes
