"""Where a process learns its place in a job: flags, GPTOSS_* variables, SLURM, Kubernetes; single-process no-ops."""
import pytest

from gptoss_jax import distributed
from gptoss_jax.distributed import Cluster, DistributedError


def test_alone_without_any_description(detect_in):
    assert detect_in({}) is None
    assert detect_in({"GPTOSS_COORDINATOR_ADDRESS": "h:1", "GPTOSS_NUM_PROCESSES": "2",
                      "GPTOSS_PROCESS_ID": "1"}, mode="off") is None
    assert detect_in({"GPTOSS_NUM_PROCESSES": "1"}) is None
    with pytest.raises(DistributedError, match="--distributed=on but nothing describes the job"):
        detect_in({}, mode="on")
    with pytest.raises(DistributedError, match="expected one of"):
        detect_in({}, mode="maybe")


def test_flags_win_over_environment(detect_in):
    env = {"GPTOSS_COORDINATOR_ADDRESS": "env-host:1234", "GPTOSS_NUM_PROCESSES": "4", "GPTOSS_PROCESS_ID": "3"}
    assert detect_in(env) == Cluster("env-host:1234", 4, 3, "flags/GPTOSS_* environment")
    got = detect_in(env, coordinator_address="flag-host:99", process_id=1)
    assert (got.coordinator_address, got.num_processes, got.process_id) == ("flag-host:99", 4, 1)


def test_incomplete_or_bad_values_are_named(detect_in):
    with pytest.raises(DistributedError, match="missing --coordinator_address, --process_id"):
        detect_in({}, num_processes=2)
    with pytest.raises(DistributedError, match=r"process id 5 is not in \[0, 2\)"):
        detect_in({}, coordinator_address="h:1", num_processes=2, process_id=5)
    with pytest.raises(DistributedError, match="is not host:port"):
        detect_in({}, coordinator_address="just-a-host", num_processes=2, process_id=0)
    with pytest.raises(DistributedError, match="GPTOSS_NUM_PROCESSES='two' is not an integer"):
        detect_in({"GPTOSS_NUM_PROCESSES": "two"})


SRUN_STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_PROCID": "1",
             "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
             "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}


def test_slurm_srun_step_one_task_per_node(detect_in):
    c = detect_in(SRUN_STEP)
    assert (c.coordinator_address, c.num_processes, c.process_id) == (f"gpu007:{61440 + 4242 % 4096}", 2, 1)
    assert c.local_device_ids is None  # one task drives every GPU of its node
    assert c.source == "SLURM"
    # the batch script's own shell (no srun step) is not a job of several processes
    batch_shell = {k: v for k, v in SRUN_STEP.items() if not k.startswith("SLURM_STEP")}
    assert detect_in(batch_shell) is None
    # a port of your choosing
    assert detect_in(SRUN_STEP | {"GPTOSS_COORDINATOR_PORT": "9000"}).coordinator_address == "gpu007:9000"


def test_slurm_one_task_per_gpu(detect_in):
    env = SRUN_STEP | {"SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16", "SLURM_PROCID": "11",
                       "SLURM_LOCALID": "3", "SLURM_STEP_TASKS_PER_NODE": "8(x2)"}
    c = detect_in(env)
    assert (c.num_processes, c.process_id, c.local_device_ids) == (16, 11, (3,))
    # SLURM already bound one GPU to the task: it is the task's only visible device
    assert detect_in(env | {"CUDA_VISIBLE_DEVICES": "3"}).local_device_ids is None


@pytest.mark.parametrize("nodelist,first", [("node001", "node001"), ("a1,a2", "a1"),
                                            ("gpu[007-009,012],cpu1", "gpu007"), ("n[3,1]", "n3")])
def test_first_slurm_host(nodelist, first, detect_in):
    """The coordinator is the first host of the step's node list (as JAX's SLURM detector reads it)."""
    assert detect_in(SRUN_STEP | {"SLURM_STEP_NODELIST": nodelist}).coordinator_address.split(":")[0] == first


def test_kubernetes_jobset_and_indexed_job(detect_in):
    pod = {"JOB_COMPLETION_INDEX": "1", "GPTOSS_NUM_PROCESSES": "2", "JOBSET_NAME": "gptoss",
           "REPLICATED_JOB_NAME": "workers", "JOB_INDEX": "0"}
    c = detect_in(pod)
    assert (c.coordinator_address, c.num_processes, c.process_id) == ("gptoss-workers-0-0.gptoss:8476", 2, 1)
    # a plain indexed Job names its coordinator itself
    c = detect_in({"JOB_COMPLETION_INDEX": "0", "GPTOSS_NUM_PROCESSES": "3",
                   "GPTOSS_COORDINATOR_ADDRESS": "gptoss-0.gptoss:8476"})
    assert (c.coordinator_address, c.num_processes, c.process_id) == ("gptoss-0.gptoss:8476", 3, 0)
    with pytest.raises(DistributedError, match="JOB_INDEX=1"):
        detect_in(pod | {"JOB_INDEX": "1"})
    # without a process count the pods of an indexed Job may be independent runs: each runs alone
    untold = {k: v for k, v in pod.items() if k != "GPTOSS_NUM_PROCESSES"}
    assert detect_in(untold) is None
    with pytest.raises(DistributedError, match="missing --num_processes"):
        detect_in(untold, mode="on")


def test_single_process_helpers_are_no_ops(tmp_path):
    assert distributed.is_main() and not distributed.is_initialized()
    distributed.check_same({"--mesh": "1,8,1"}, "flags")
    assert distributed.broadcast_json({"a": 1}) == {"a": 1}
    assert distributed.allgather_json(3) == [3]
    assert distributed.gather_json_to_main("x") == ["x"]
    distributed.barrier("nothing to wait for")
    info = distributed.replica_info(1)
    assert (info.index, info.count, info.process_ids, info.is_leader) == (0, 1, (0,), True)
    with pytest.raises(DistributedError, match="2 replicas cannot split the job's 1 processes"):
        distributed.replica_info(2)
    (tmp_path / "records.jsonl").write_text("{}\n")
    assert distributed.collect_files(str(tmp_path), ["records.jsonl"]) == []  # already on process 0


def test_secret_flags_are_compared_by_digest_only():
    from absl import flags

    from gptoss_jax.cli import distributed_flags

    fv = flags.FlagValues()
    flags.DEFINE_string("api_key", "sk-very-secret", "", flag_values=fv)
    flags.DEFINE_integer("max_tokens", 5, "", flag_values=fv)
    flags.DEFINE_integer("process_id", 3, "", flag_values=fv)
    fv(["prog"])
    saved, distributed_flags.FLAGS = distributed_flags.FLAGS, fv
    try:
        got = distributed_flags.job_flags()
    finally:
        distributed_flags.FLAGS = saved
    assert got["--max_tokens"] == 5 and "--process_id" not in got
    assert got["--api_key"].startswith("<secret, sha256 ") and "very-secret" not in got["--api_key"]
