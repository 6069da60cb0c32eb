"""Two processes x four CPU devices on localhost, started by launch/local.py: the job gives the single-process
logits and greedy tokens, each process reads only its share of the checkpoint, replicas merge their records, and a
process that never joins (or a coordinator that is not there, or flags that differ) gives one clear error."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding

import gptoss_jax
from gptoss_jax import params as params_lib
from gptoss_jax import sharding
from gptoss_jax.checkpoint import layouts, synthetic
from gptoss_jax.config import PRESETS
from tests.multihost import common as mh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch", "local.py")
JOB_TIMEOUT_S = 240


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTOSS_") and k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **extra)
    return env


def _run(cmd: list[str], timeout_s: float, env: dict | None = None) -> tuple[int, str]:
    """Run a command in its own process group; kill the whole group if it overruns. (rc, output)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{cmd[:4]} overran {timeout_s}s:\n{out[-4000:]}")
    return proc.returncode, out


def _start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(procs: list[subprocess.Popen], timeout_s: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout_s
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, text))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model in both release layouts; the job loads the original one (fused qkv: several params a tensor)."""
    root = synthetic.write_release(str(tmp_path_factory.mktemp("mh_ckpt") / "tiny"), PRESETS["tiny"], seed=5)
    return os.path.join(root, "original")


@pytest.fixture(scope="module")
def job(checkpoint, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mh_job"))
    t0 = time.monotonic()
    rc, text = _run([sys.executable, LAUNCH, "-n", "2", "--cpu_devices", "4", "--timeout", str(JOB_TIMEOUT_S), "--",
                     sys.executable, "-m", "tests.multihost.worker", f"--checkpoint={checkpoint}",
                     f"--mesh={mh.MESH}", "--dtype=float32", "--progress=false", f"--out={out}",
                     "--init_timeout=60"], JOB_TIMEOUT_S + 30)
    wall = time.monotonic() - t0
    assert rc == 0, f"multi-process job failed (status {rc}):\n{text[-6000:]}"
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    print(f"2-process job: {wall:.1f}s wall")
    return {"out": out, "report": report, "result": np.load(os.path.join(out, "result.npz")), "stdout": text}


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The same model, mesh shape and computation in this one process (8 local devices)."""
    model = gptoss_jax.load(checkpoint, mesh=sharding.make_mesh(mh.MESH), dtype="float32", show_progress=False)
    toks = mh.tokens(model.cfg.vocab_size)
    return mh.forward_and_decode(model, toks)


def test_job_spans_both_processes(job):
    report = job["report"]
    assert report["device_count"] == 8
    assert [p["local_devices"] for p in report["processes"]] == [4, 4]
    # the expert axis crosses the process boundary: each process owns half of the expert groups
    owners = np.array(report["mesh_process"])
    assert owners.shape == (1, 4, 2) and set(owners[0, :2].flat) == {0} and set(owners[0, 2:].flat) == {1}
    # process 0 alone prints
    assert "this line is printed by process 0 only" in job["stdout"]
    assert "process 1: this line" not in job["stdout"]


def test_logits_and_greedy_tokens_equal_single_process(job, reference):
    want_logits, want_greedy = reference
    got = job["result"]
    assert got["logits"].shape == want_logits.shape
    err = np.abs(got["logits"] - want_logits).max()
    assert err <= 1e-5, f"multi-process logits differ from the single-process run by {err}"
    np.testing.assert_array_equal(got["greedy"], want_greedy)


def _expected_bytes(cfg, layout: str, owners: np.ndarray) -> dict[int, dict[str, int]]:
    """Bytes each process must read, per checkpoint tensor: for every param the tensor holds, the distinct boxes its
    sharding gives the devices of that process (each read once; of the fused qkv, the part of the box that the
    tensor's rows fill), at the stored dtype."""
    devices = np.array(jax.devices()[:owners.size]).reshape(owners.shape)
    mesh = Mesh(devices, sharding.MESH_AXES)
    owner = {d: int(p) for d, p in zip(devices.flat, owners.flat)}
    specs = params_lib.flat_specs(cfg)
    out: dict[int, dict[str, int]] = {p: {} for p in set(owner.values())}
    for entry in layouts.entries(cfg, layout):
        item = np.dtype(jnp.dtype(entry.dtype)).itemsize
        for part in entry.parts:
            spec = specs[part.param].unstacked() if part.pair is not None else specs[part.param]
            boxes: dict[int, set] = {}
            index_map = NamedSharding(mesh, sharding.logical_spec(spec.axes)).devices_indices_map(spec.shape)
            for d, index in index_map.items():
                boxes.setdefault(owner[d], set()).add(tuple(s.indices(n)[:2] for s, n in zip(index, spec.shape)))
            for p, bs in boxes.items():
                if part.axis1 is not None:      # the rows of this part fill only a slice of the fused qkv's axis 1
                    lo, hi = part.axis1
                    bs = {(box[0], (max(box[1][0], lo), min(box[1][1], hi)), *box[2:]) for box in bs}
                n = sum(math.prod(max(b - a, 0) for a, b in box) for box in bs) * item
                out[p][entry.name] = out[p].get(entry.name, 0) + n
    return out


def test_each_process_reads_only_its_share(job, checkpoint):
    report = job["report"]
    located = layouts.locate(checkpoint)
    cfg = PRESETS["tiny"]
    expected = _expected_bytes(cfg, located.layout, np.array(report["mesh_process"]))
    entries = layouts.entries(cfg, located.layout)
    sizes = {e.name: math.prod(e.shape) * np.dtype(jnp.dtype(e.dtype)).itemsize for e in entries}
    specs = params_lib.flat_specs(cfg)
    expert = {e.name for e in entries if "experts" in specs[e.parts[0].param].axes}
    assert expert and len(expert) < len(sizes)
    for p in report["processes"]:
        got = p["bytes_by_tensor"]
        pid = p["process"]
        assert got == expected[pid], f"process {pid} read other bytes than its devices own"
        # the experts: exactly this process's half; everything else: exactly once, though 4 local devices hold it
        for name, size in sizes.items():
            assert got[name] == (size // 2 if name in expert else size), name
        mine, total = sum(got.values()), sum(sizes.values())
        ex_mine, ex_total = sum(got[n] for n in expert), sum(sizes[n] for n in expert)
        print(f"process {pid}: read {mine} of {total} checkpoint bytes; experts {ex_mine} of {ex_total}")


def test_replicas_write_their_own_records_and_merge_on_process_0(job, reference):
    report = job["report"]
    assert [r["replica"] for r in report["replicas"]] == [[0, 2], [1, 2]]
    assert [r["replica_devices"] for r in report["replicas"]] == [4, 4]  # each replica: its own process's devices
    assert all(r["told"] == {"from": "process 0"} for r in report["replicas"])  # broadcast from process 0
    want_logits, want_greedy = reference
    assert np.abs(job["result"]["replica_logits"] - want_logits).max() <= 1e-5
    # process 0's folder (a disk the other host does not share) now holds both replicas' records
    assert report["collected"] == ["records.replica-1-of-2.jsonl"]
    host0 = os.path.join(job["out"], "host0")
    assert sorted(os.listdir(host0)) == ["records.replica-0-of-2.jsonl", "records.replica-1-of-2.jsonl"]
    for i in range(2):
        with open(os.path.join(host0, f"records.replica-{i}-of-2.jsonl")) as f:
            rec = json.loads(f.readline())
        assert rec["replica"] == i
        np.testing.assert_array_equal(rec["greedy"], want_greedy)


# ------------------------------------------------------------------------------------------------------- failures
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gptoss_jax.cli.main", "demo", "--model=tiny", "--progress=false", *args]


def test_process_that_never_joins_is_named(tmp_path):
    port = _free_port()
    t0 = time.monotonic()
    rc, text = _run(_cli(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=3", "--process_id=0",
                         "--init_timeout=3", f"--synthetic_dir={tmp_path}"), 60)
    assert rc != 0
    assert "processes [1, 2] of 3 did not join the job within 3s" in text, text[-3000:]
    assert time.monotonic() - t0 < 45
    assert not os.listdir(tmp_path)  # failed before doing any work


def test_unreachable_coordinator_is_named(tmp_path):
    port = _free_port()
    rc, text = _run(_cli(f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", "--process_id=1",
                         "--init_timeout=3", f"--synthetic_dir={tmp_path}"), 60)
    assert rc != 0
    assert f"process 1: could not reach the coordinator 127.0.0.1:{port}" in text, text[-3000:]


def test_flags_that_differ_across_processes_are_named(tmp_path):
    port = _free_port()
    procs = [_start(_cli(f"--seed={seed}", f"--synthetic_dir={tmp_path}", "--init_timeout=60"),
                    _env(GPTOSS_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", GPTOSS_NUM_PROCESSES="2",
                         GPTOSS_PROCESS_ID=str(pid), GPTOSS_CPU_DEVICES="1"))
             for pid, seed in ((0, 3), (1, 4))]
    results = _finish(procs, 120)
    for rc, text in results:
        assert rc != 0
        assert "flags differ across the 2 processes: --seed is 3 on process 0; 4 on process 1" in text, text[-3000:]
    assert not os.listdir(tmp_path)


# ------------------------------------------------------------------------------------------------ eval sweeps
def _eval_job(out: str, synth: str, *extra: str) -> list[str]:
    return [sys.executable, LAUNCH, "-n", "2", "--cpu_devices", "2", "--timeout", str(JOB_TIMEOUT_S), "--",
            sys.executable, "-m", "gptoss_jax.cli.main", "eval", "--backend=local", "--model=demo",
            "--tasks=humaneval", "--reasoning_efforts=low,high", "--limit=3", "--repeats=1", "--max_tokens=8",
            f"--output_dir={out}", "--backend_arg=num_slots=2", "--backend_arg=max_len=1024",
            f"--backend_arg=synthetic_dir={synth}", "--progress=false", *extra]


def test_eval_sweep_splits_across_replicas_and_merges(tmp_path):
    """`gptoss eval` as a 2-process job with 2 replicas: each runs its share of the samples on its own devices,
    writes its own records, and process 0 prints one table over all of them."""
    out = str(tmp_path / "run")
    rc, text = _run(_eval_job(out, str(tmp_path / "synth"), "--replicas=2"), JOB_TIMEOUT_S + 30)
    assert rc == 0, text[-4000:]
    files = sorted(f for f in os.listdir(out) if f.startswith("records"))
    assert files == ["records.replica-0-of-2.jsonl", "records.replica-1-of-2.jsonl"]
    keys = []
    for f in files:
        with open(os.path.join(out, f)) as fh:
            recs = [json.loads(line) for line in fh]
        assert recs and all(r["status"] == "ok" for r in recs)
        keys += [r["key"] for r in recs]
    assert len(keys) == len(set(keys)) == 6                       # every sample once, split between replicas
    table = [line for line in text.splitlines() if line.startswith("HumanEval")]
    assert len(table) == 2 and all(" 3 " in line for line in table)  # one table, 3 executions an effort
