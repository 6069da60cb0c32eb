"""kill -9 in the middle of a sweep, rerun the same command: nothing finished is recomputed or lost, and the final
table equals an uninterrupted run's."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evals.records import iter_records, load_records, record_files
from evals.report import comparable, summarize
from tests.evals.conftest import answer_table, make_server

REPO = Path(__file__).resolve().parents[2]
TASKS = ["mmlu", "gsm8k", "math500"]
PLANNED = (3 + 2 + 3) * 3


def _cmd(url, cache_dir, out):
    return [sys.executable, "-m", "evals.cli", f"--tasks={','.join(TASKS)}", "--reasoning_efforts=low,medium,high",
            f"--base_url={url}", "--model=gpt-oss-test", "--api_key=k", f"--cache_dir={cache_dir}", "--offline",
            f"--output_dir={out}", "--concurrency=2", "--noprogress"]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_kill9_then_resume(cache_dir, tmp_path):
    table = answer_table(TASKS, cache_dir, wrong_for=lambda t, s: s.id.endswith("1"))  # mixed scores
    out = tmp_path / "run"
    with make_server(table, delay_s=0.15) as srv:
        proc = subprocess.Popen(_cmd(srv.url, cache_dir, out), env=_env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        recs_file = out / "records.jsonl"
        while time.time() < deadline:
            if recs_file.exists() and recs_file.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        before = {r["key"]: r for r in iter_records(recs_file)}
        assert 6 <= len(before) < PLANNED, "the kill did not land mid-sweep"
        seeds_before = {r["sampling"]["seed"] for r in before.values()}

        done = subprocess.run(_cmd(srv.url, cache_dir, out), env=_env(), cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"resume: {len(before)} of {PLANNED}" in done.stderr
        # no finished sample was requested again
        per_seed = {}
        for (fp, effort, seed), n in srv.counts.items():
            per_seed[seed] = per_seed.get(seed, 0) + n
        assert all(per_seed[s] == 1 for s in seeds_before), "a finished sample was recomputed"
    lines = recs_file.read_bytes().splitlines()
    resumed = load_records(record_files(out))
    assert len(resumed) == PLANNED == len(lines), "a sample was lost or duplicated"
    assert all(resumed[k]["output"] == before[k]["output"] for k in before)

    base = tmp_path / "baseline"
    with make_server(table) as srv2:
        ref = subprocess.run(_cmd(srv2.url, cache_dir, base), env=_env(), cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert ref.returncode == 0, ref.stderr
    a = summarize(resumed, task_order=TASKS)
    b = summarize(load_records(record_files(base)), task_order=TASKS)
    assert comparable(a) == comparable(b)
    assert 0 < a[0]["accuracy"] < 1
    assert (out / "summary.md").read_text().splitlines()[0].startswith("| Benchmark | Category | Reasoning")
    assert "Accuracy vs reasoning effort" in (out / "report.html").read_text()


def _rec(key):
    return {"key": key, "task": "t", "benchmark": "B", "category": "Coding", "strategy": "zero-shot",
            "reasoning_effort": "low", "sampling_key": "s", "sample_id": key, "status": "ok", "score": 1.0,
            "started_at": 0.0, "ended_at": 1.0}


def test_torn_last_line_is_ignored_and_repaired(tmp_path):
    from evals.records import RecordWriter
    p = tmp_path / "records.jsonl"
    with RecordWriter(p) as w:
        w.write(_rec("a"))
    with open(p, "ab") as f:
        f.write(b'{"key": "b", "sta')  # kill -9 mid-write
    assert [r["key"] for r in iter_records(p)] == ["a"]
    with RecordWriter(p) as w:
        assert w.dropped_bytes > 0
        w.write(_rec("c"))
    assert [r["key"] for r in iter_records(p)] == ["a", "c"]
