"""The launch/ recipes: the local launcher runs (and fails) as documented; the cluster recipes, which cannot run
here, parse and hand each process the values gptoss_jax.distributed.detect turns into the right job."""
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch")


def _launch_local(*args, timeout=60):
    return subprocess.run([sys.executable, os.path.join(LAUNCH, "local.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_local_launcher_gives_each_process_its_place(tmp_path):
    script = ("import os, json, sys; json.dump({k: os.environ.get(k) for k in ('GPTOSS_COORDINATOR_ADDRESS', "
              "'GPTOSS_NUM_PROCESSES', 'GPTOSS_PROCESS_ID', 'GPTOSS_CPU_DEVICES', 'JAX_PLATFORMS', 'XLA_FLAGS')}, "
              f"open(os.path.join({str(tmp_path)!r}, os.environ['GPTOSS_PROCESS_ID']), 'w'))")
    r = _launch_local("-n", "3", "--cpu_devices", "2", "--", sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr
    seen = [__import__("json").load(open(tmp_path / str(i))) for i in range(3)]
    assert [s["GPTOSS_PROCESS_ID"] for s in seen] == ["0", "1", "2"]
    assert {s["GPTOSS_COORDINATOR_ADDRESS"] for s in seen} == {seen[0]["GPTOSS_COORDINATOR_ADDRESS"]}
    assert seen[0]["GPTOSS_COORDINATOR_ADDRESS"].startswith("127.0.0.1:")
    assert all(s["GPTOSS_NUM_PROCESSES"] == "3" and s["GPTOSS_CPU_DEVICES"] == "2" and s["JAX_PLATFORMS"] == "cpu"
               for s in seen)
    assert all("xla_force_host_platform_device_count" not in (s["XLA_FLAGS"] or "") for s in seen)


def test_local_launcher_stops_everything_on_a_failure_or_timeout():
    fail_one = ("import os, sys, time; pid = os.environ['GPTOSS_PROCESS_ID']; "
                "sys.exit(3) if pid == '1' else time.sleep(120)")
    t0 = time.monotonic()
    r = _launch_local("-n", "2", "--", sys.executable, "-c", fail_one)
    assert r.returncode == 3 and "process 1 exited with status 3" in r.stderr
    r = _launch_local("-n", "2", "--timeout", "1", "--", sys.executable, "-c", "import time; time.sleep(120)")
    assert r.returncode == 124 and "timed out" in r.stderr
    assert time.monotonic() - t0 < 40  # the sleepers were stopped, not waited for
    r = _launch_local("-n", "2")
    assert r.returncode == 2 and "no command given" in r.stderr


def _yaml_docs(name):
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(LAUNCH, "k8s", name)) as f:
        return {d["kind"]: d for d in yaml.safe_load_all(f)}


def _container_env(container, labels):
    """A container's environment as Kubernetes would fill it (values and label fieldRefs)."""
    env = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            key = re.fullmatch(r"metadata\.labels\['(.+)'\]", path).group(1)
            env[e["name"]] = labels[key]
    return env


def test_jobset_manifest_forms_one_job(detect_in):
    docs = _yaml_docs("jobset.yaml")
    svc, js = docs["Service"], docs["JobSet"]
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    name = js["metadata"]["name"]
    net = js["spec"]["network"]
    assert net["enableDNSHostnames"] is True
    subdomain = net.get("subdomain", name)
    assert svc["metadata"]["name"] == subdomain and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"jobset.sigs.k8s.io/jobset-name": name}
    [rjob] = js["spec"]["replicatedJobs"]
    assert rjob["replicas"] == 1
    job = rjob["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    pod = job["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"][0] == "gptoss"
    ports = {p["containerPort"] for p in container["ports"]}
    # every pod: the labels JobSet puts on it, and the completion index Kubernetes gives it
    labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"],
              "jobset.sigs.k8s.io/job-index": "0"}
    pod0 = f"{name}-{rjob['name']}-0-0.{subdomain}"  # JobSet's hostname.subdomain of the first pod
    for i in range(job["completions"]):
        c = detect_in(_container_env(container, labels) | {"JOB_COMPLETION_INDEX": str(i)})
        assert (c.num_processes, c.process_id) == (job["completions"], i)
        host, port = c.coordinator_address.rsplit(":", 1)
        assert host == pod0 and int(port) in ports


def test_indexed_job_manifest_forms_one_job(detect_in):
    docs = _yaml_docs("indexed-job.yaml")
    svc, job = docs["Service"], docs["Job"]
    name = job["metadata"]["name"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"] and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {"job-name": name}
    [container] = pod["containers"]
    ports = {p["containerPort"] for p in container["ports"]}
    for i in range(spec["completions"]):
        c = detect_in(_container_env(container, {}) | {"JOB_COMPLETION_INDEX": str(i)})
        assert (c.num_processes, c.process_id) == (spec["completions"], i)
        host, port = c.coordinator_address.rsplit(":", 1)
        assert host == f"{name}-0.{pod['subdomain']}" and int(port) in ports  # pod 0's hostname.subdomain


def test_slurm_script_runs_one_task_per_node(detect_in):
    path = os.path.join(LAUNCH, "slurm.sbatch")
    text = open(path).read()
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
    assert directives["ntasks-per-node"] == "1" and "nodes" in directives
    assert re.search(r'^srun --ntasks-per-node=1 --kill-on-bad-exit=1 "\$@"$', text, re.M)
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    # what srun gives task 1 of a 2-node step: a job of 2 processes, all GPUs of each node, coordinator on node 1
    c = detect_in({"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "dgx[01-02]", "SLURM_PROCID": "1",
                   "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0",
                   "SLURM_STEP_TASKS_PER_NODE": "1(x2)"})
    assert (c.coordinator_address.split(":")[0], c.num_processes, c.process_id, c.local_device_ids) == \
        ("dgx01", 2, 1, None)


def test_tpu_script_checks_its_settings_before_calling_gcloud():
    path = os.path.join(LAUNCH, "tpu_pod.sh")
    assert subprocess.run(["bash", "-n", path]).returncode == 0
    text = open(path).read()
    assert "tpu-vm ssh" in text and "--worker=all" in text
    env = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")}
    r = subprocess.run(["bash", path, "run", "gptoss", "demo"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "set TPU_NAME" in r.stderr
    r = subprocess.run(["bash", path], env=env | {"TPU_NAME": "t", "ZONE": "z"}, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shell_recipes_pass_shellcheck():
    r = subprocess.run(["shellcheck", os.path.join(LAUNCH, "tpu_pod.sh"), os.path.join(LAUNCH, "slurm.sbatch")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
