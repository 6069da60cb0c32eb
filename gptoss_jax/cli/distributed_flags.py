"""The multi-process flags every gptoss subcommand has, and the one call that joins the job they describe.

cli/main.py imports this module (not cli/flags.py, whose model flags some subcommands define their own way) and calls
init_distributed() after parsing flags and before the subcommand runs; cli/flags.load_model() calls it too, for
programs that load a model without going through main.py. Recipes: launch/README.md.
"""
from __future__ import annotations

import hashlib
import json

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"], "Join a multi-process job: auto (when flags, "
                  "GPTOSS_* variables, an srun step, a TPU pod slice or a Kubernetes indexed Job/JobSet describe one), "
                  "on (insist), off (run alone).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (default $GPTOSS_COORDINATOR_ADDRESS, "
                    "else from the cluster).")
flags.DEFINE_integer("num_processes", None, "Processes in the job (default $GPTOSS_NUM_PROCESSES, else from the "
                     "cluster).")
flags.DEFINE_integer("process_id", None, "This process's id in [0, num_processes) (default $GPTOSS_PROCESS_ID, "
                     "else from the cluster).")
flags.DEFINE_integer("init_timeout", 300, "Seconds to wait for every process to join; then one error names the "
                     "missing process ids.")
flags.DEFINE_integer("cpu_devices", None, "CPU platform only: devices per process (jax_num_cpu_devices; default "
                     "$GPTOSS_CPU_DEVICES), to run meshes without accelerators.")
flags.DEFINE_integer("replicas", 1, "Independent model replicas (data-parallel sweeps): the processes form this many "
                     "equal groups of consecutive ids, each with its own copy of the model (--mesh then shapes one "
                     "replica); see gptoss_jax.distributed.replica_info.")

# flags that differ between processes by nature; every other flag must agree across processes
PER_PROCESS_FLAGS = frozenset({"process_id"})
SECRET_WORDS = frozenset({"key", "token", "secret", "password", "apikey"})  # words of a flag name
_joined = False


def init_distributed() -> None:
    """Join the multi-process job the flags or environment describe (once; no-op when running alone), before any
    JAX device use. Then process 0 alone prints and logs, and every flag must agree across processes: one error,
    on every process, names the first flag that differs and its value on each."""
    global _joined
    if _joined:
        return
    from gptoss_jax import distributed

    cluster = distributed.detect(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                                 process_id=FLAGS.process_id, mode=FLAGS.distributed, timeout_s=FLAGS.init_timeout)
    distributed.initialize(cluster, timeout_s=FLAGS.init_timeout, num_cpu_devices=FLAGS.cpu_devices)
    _joined = True
    if cluster is not None:
        distributed.setup_logging(verbose=getattr(FLAGS, "verbose", False))
        distributed.check_same(job_flags(), "flags", timeout_s=FLAGS.init_timeout)


def job_flags() -> dict[str, object]:
    """This program's flags (absl's own left out) as '--name' -> value; secrets only as a digest."""
    out = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith("absl."):
            continue
        for fl in module_flags:
            if fl.name in PER_PROCESS_FLAGS:
                continue
            value = fl.value
            if value is not None and SECRET_WORDS & set(fl.name.lower().split("_")):
                digest = hashlib.sha256(json.dumps(value, default=repr).encode()).hexdigest()[:12]
                value = f"<secret, sha256 {digest}>"
            out[f"--{fl.name}"] = value
    return dict(sorted(out.items()))
