"""This process's part in a job: joining it (`initialize`), who it is (`is_initialized`, `is_main`), and who prints
(`setup_logging`: process 0 alone writes to stdout and logs; the others keep errors only, prefixed)."""
from __future__ import annotations

import logging
import os
import sys
import time

from gptoss_jax.distributed import _jax_compat, stdout_filter
from gptoss_jax.distributed._jax_compat import process_position
from gptoss_jax.distributed.detect import Cluster, int_env
from gptoss_jax.distributed.rendezvous import rendezvous
from gptoss_jax.errors import DistributedError

log = logging.getLogger(__name__)

ENV_CPU_DEVICES = "GPTOSS_CPU_DEVICES"
ENV_LOG_ALL = "GPTOSS_LOG_ALL_PROCESSES"


def initialize(cluster: Cluster | None, *, timeout_s: float = 300, num_cpu_devices: int | None = None) -> None:
    """Join the job (no-op for None). Call once, before any JAX device use.

    num_cpu_devices (default $GPTOSS_CPU_DEVICES): devices per process on the CPU platform, for testing meshes without
    accelerators. Multi-process CPU runs use gloo collectives (set here; the setting concerns the CPU backend only).
    """
    import jax

    if is_initialized():
        raise DistributedError("jax.distributed is already initialized in this process")
    if num_cpu_devices is None and os.environ.get(ENV_CPU_DEVICES):
        num_cpu_devices = int_env(os.environ, ENV_CPU_DEVICES)
    if (num_cpu_devices is not None or cluster is not None) and _jax_compat.backends_started():
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


def is_initialized() -> bool:
    """Whether this process joined a multi-process job (jax.distributed.initialize ran)."""
    import jax

    return jax.distributed.is_initialized()


def is_main() -> bool:
    """True on process 0, the one process that prints results and writes outputs (True when running alone)."""
    return process_position()[0] == 0


class _ProcessPrefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_gptoss_prefixed", False):
            record.msg = f"{self.prefix}{record.msg}"
            record._gptoss_prefixed = True
        return True


def setup_logging(verbose: bool = False) -> None:
    """Process 0 alone writes to stdout and logs, without a prefix; the others keep errors only, prefixed with their
    process id. Lines that Gloo prints straight to stdout while connecting the CPU collectives are dropped unless
    `verbose`. GPTOSS_LOG_ALL_PROCESSES=1 keeps every process's output (debugging a hang or a crash on one host)."""
    pid, n = process_position()
    if n == 1:
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    log_all = os.environ.get(ENV_LOG_ALL, "") not in ("", "0")
    if pid != 0:
        for h in root.handlers:
            h.addFilter(_ProcessPrefix(f"[process {pid}/{n}] "))
    if pid == 0 or log_all:
        if not verbose:
            stdout_filter.drop_library_lines()
        return
    root.setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    stdout_filter.discard_c_stdout()
