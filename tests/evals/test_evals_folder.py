"""Eval output folders: one sweep at a time (lock), one run per folder (identity), unreadable records skipped."""
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from evals.backends.scripted import ScriptedBackend
from evals.records import load_records, record_files
from evals.run_folder import FolderError, FolderLock
from evals.runner import SweepConfig, run_sweep
from tests.evals.conftest import answer_table, make_server

REPO = Path(__file__).resolve().parents[2]


def _cmd(url, cache_dir, out, *extra, model="gpt-oss-test"):
    return [sys.executable, "-m", "evals.cli", "--tasks=mmlu,gsm8k", "--reasoning_efforts=low,medium",
            f"--base_url={url}", f"--model={model}", "--api_key=k", f"--cache_dir={cache_dir}", "--offline",
            f"--output_dir={out}", "--concurrency=2", "--noprogress", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_two_sweeps_on_one_folder_one_refuses_the_other_waits_nothing_runs_twice(cache_dir, tmp_path):
    out = tmp_path / "run"
    table = answer_table(["mmlu", "gsm8k"], cache_dir)
    with make_server(table, delay_s=2.0) as srv:
        first = subprocess.Popen(_cmd(srv.url, cache_dir, out), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and not srv.seen:  # the first sweep holds the lock once it requests
            time.sleep(0.02)
        assert srv.seen, "the first sweep never started"
        waiter = subprocess.Popen(_cmd(srv.url, cache_dir, out, "--wait_for_lock"), env=_env(), cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        refused = subprocess.run(_cmd(srv.url, cache_dir, out), env=_env(), cwd=REPO, capture_output=True,
                                 text=True, timeout=60)
        assert refused.returncode == 2
        assert "another sweep is running in" in refused.stderr and f"pid {first.pid}" in refused.stderr
        assert "--wait_for_lock" in refused.stderr
        assert first.wait(timeout=60) == 0, first.stderr.read()
        assert waiter.wait(timeout=60) == 0
        waited = waiter.stderr.read()
        assert "waiting for the sweep running in" in waited
        assert "running 0" in waited  # everything was done by the first sweep
        per_request = Counter((json.dumps(b["messages"]), b.get("reasoning_effort"), b.get("seed"))
                              for b in srv.seen)
    planned = (3 + 2) * 2
    assert len(per_request) == planned and max(per_request.values()) == 1, "a sample ran twice"
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == planned == len({json.loads(x)["key"] for x in lines})


def test_lock_is_released_by_a_dead_process_and_replicas_lock_separately(tmp_path):
    code = ("import sys, time; sys.path.insert(0, %r); from evals.run_folder import FolderLock; "
            "FolderLock(%r).acquire(); print('held', flush=True); time.sleep(60)" % (str(REPO), str(tmp_path)))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    with pytest.raises(FolderError, match=f"pid {p.pid}"):
        FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path, replica=(1, 2)):  # another replica's lock is its own
        pass
    p.kill()
    p.wait()
    with FolderLock(tmp_path):  # kill -9 released it
        pass


def _sweep(out, cache_dir, identity, **kw):
    return run_sweep(SweepConfig(tasks=("mmlu",), efforts=("low",), **kw), ScriptedBackend(lambda r: "Answer: A"),
                     out, cache_dir=cache_dir, offline=True, progress=False, log=lambda m: None,
                     model_identity=identity)


def test_resume_with_another_model_or_backend_refuses_naming_the_difference(cache_dir, tmp_path):
    local = {"backend": "local", "model": "/ckpt/a", "checkpoint": "abc"}
    assert _sweep(tmp_path, cache_dir, local).ran == 3
    assert _sweep(tmp_path, cache_dir, local).ran == 0  # the same run resumes
    endpoint = {"backend": "endpoint", "model": "openai/gpt-oss-120b", "base_url": "http://h/v1"}
    with pytest.raises(FolderError) as e:
        _sweep(tmp_path, cache_dir, endpoint)
    msg = str(e.value)
    assert "backend: folder has 'local', this run has 'endpoint'" in msg
    assert "model: folder has '/ckpt/a', this run has 'openai/gpt-oss-120b'" in msg and "base_url" in msg
    with pytest.raises(FolderError, match="checkpoint: folder has 'abc', this run has 'def'"):
        _sweep(tmp_path, cache_dir, {**local, "checkpoint": "def"})
    from evals.backends.base import Sampling
    with pytest.raises(FolderError, match="sampling"):
        _sweep(tmp_path, cache_dir, local, sampling=(Sampling(temperature=0.6),))
    assert len(load_records(record_files(tmp_path))) == 3  # nothing was added by the refused runs


def test_a_folder_from_before_run_json_is_adopted_only_by_its_own_backend(cache_dir, tmp_path):
    from evals.backends.scripted import ScriptedBackend as SB

    def sweep(name):
        return run_sweep(SweepConfig(tasks=("mmlu",), efforts=("low",)), SB(lambda r: "Answer: A", name=name),
                         tmp_path, cache_dir=cache_dir, offline=True, progress=False, log=lambda m: None)
    assert sweep("m1").ran == 3
    (tmp_path / "run.json").unlink()  # as an older version left it
    with pytest.raises(FolderError, match="no run.json.*\n  - model: folder's records have 'm1', this run has 'm2'"):
        sweep("m2")
    assert sweep("m1").ran == 0 and (tmp_path / "run.json").exists()  # adopted: identity recorded from now on


def test_resume_with_changed_task_data_refuses(cache_dir, tmp_path):
    ident = {"backend": "scripted", "model": "m"}
    _sweep(tmp_path, cache_dir, ident)
    mmlu = cache_dir / "simple-evals" / "mmlu.csv"
    mmlu.write_text(mmlu.read_text().replace("?", "??", 1))
    with pytest.raises(FolderError, match=r"task mmlu: data_sha256 differ"):
        _sweep(tmp_path, cache_dir, ident)


def test_cli_endpoint_after_local_in_one_folder_refuses(cache_dir, tmp_path):
    out = tmp_path / "run"
    table = answer_table(["mmlu"], cache_dir)
    with make_server(table) as srv:
        ok = subprocess.run(_cmd(srv.url, cache_dir, out, "--tasks=mmlu"), env=_env(), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        other = subprocess.run(_cmd(srv.url, cache_dir, out, "--tasks=mmlu", model="another-model"), env=_env(),
                               cwd=REPO, capture_output=True, text=True, timeout=60)
    assert other.returncode == 2 and "holds the records of another run" in other.stderr
    assert "model: folder has 'gpt-oss-test', this run has 'another-model'" in other.stderr
    assert "Traceback" not in other.stderr


def test_default_folder_differs_per_model_and_backend():
    from evals.run_folder import default_output_dir
    a = default_output_dir("sweep", {"backend": "endpoint", "model": "m1", "base_url": "u"})
    b = default_output_dir("sweep", {"backend": "endpoint", "model": "m2", "base_url": "u"})
    c = default_output_dir("sweep", {"backend": "local", "model": "m1"})
    assert len({a, b, c}) == 3 and a.name.startswith("sweep-m1-") and a.parent == Path("runs/evals")


def test_report_skips_and_counts_unreadable_records(cache_dir, tmp_path):
    _sweep(tmp_path, cache_dir, {"backend": "scripted", "model": "m"})
    path = tmp_path / "records.jsonl"
    good = [json.loads(x) for x in path.read_text().splitlines()]
    bad_score = {**good[0], "key": "x1", "score": "1.0"}
    no_task = {k: v for k, v in good[0].items() if k != "task"} | {"key": "x2"}
    with open(path, "a") as f:
        f.write(json.dumps(bad_score) + "\n" + json.dumps(no_task) + "\n[1, 2]\n{not json\n")
    skipped = []
    recs = load_records(record_files(tmp_path), skipped)
    assert len(recs) == 3 and len(skipped) == 4
    assert "'score' is str" in skipped[0][2] and "no 'task' field" in skipped[1][2]
    r = subprocess.run([sys.executable, "-m", "evals.cli", "--report_only", "--tasks=mmlu",
                        f"--output_dir={tmp_path}"], env=_env(), cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "skipped 4 unreadable record line(s)" in r.stderr and "'score' is str" in r.stderr
    assert "MMLU" in r.stdout and "Traceback" not in r.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["meta"]["skipped_records"] == 4
