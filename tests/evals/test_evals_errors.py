"""Bad input and failures: clear messages; a failed sample is recorded as failed, not wrong, and the sweep goes on."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.backends import BackendConfig, BackendFatalError, make_backend
from evals.backends.base import Request
from evals.backends.endpoint import EndpointBackend
from evals.backends.scripted import ScriptedBackend
from evals.data import DatasetUnavailable
from evals.registry import UnknownTask, get_task, load_task
from evals.records import load_records, record_files
from evals.report import summarize, to_text
from evals.runner import SweepConfig, SweepError, run_sweep
from tests.evals.conftest import answer_table, make_server

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_unknown_task_names_the_task_and_suggests():
    with pytest.raises(UnknownTask, match=r"unknown task 'gpqa'.*did you mean gpqa_diamond"):
        get_task("gpqa")


def test_cli_unknown_task_and_local_backend_without_a_model(tmp_path):
    r = _cli("--tasks=mmlu,nope", "--base_url=http://127.0.0.1:9/v1", "--model=m", f"--output_dir={tmp_path}")
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr
    r = _cli("--tasks=mmlu", "--backend=local", f"--output_dir={tmp_path}")
    assert r.returncode == 2 and "--backend=local needs --model" in r.stderr
    r = _cli("--list_tasks")
    assert r.returncode == 0 and "gpqa_diamond" in r.stdout and "Instruction Following" in r.stdout


def test_offline_dataset_missing_is_clear(tmp_path):
    with pytest.raises(DatasetUnavailable) as e:
        load_task(get_task("mmlu"), cache_dir=tmp_path, offline=True)
    msg = str(e.value)
    assert "task 'mmlu'" in msg and "offline" in msg and "mmlu.csv" in msg and str(tmp_path) in msg


def test_malformed_answer_is_wrong_not_failed(cache_dir, tmp_path):
    backend = ScriptedBackend(lambda req: "I am not sure, sorry.")
    o = run_sweep(SweepConfig(tasks=("mmlu", "math500"), efforts=("low",)), backend, tmp_path, cache_dir=cache_dir,
                  offline=True, progress=False, log=lambda m: None)
    recs = load_records(record_files(tmp_path))
    assert o.failed == 0 and all(r["status"] == "ok" and r["score"] == 0.0 for r in recs.values())
    assert any(r["parsed"] is None for r in recs.values())


def test_endpoint_errors_are_recorded_as_failed_and_sweep_carries_on(cache_dir, tmp_path):
    table = answer_table(["mmlu"], cache_dir)
    fails = {"n": 0}

    def fail(body, n):  # the 2nd question always gets HTTP 500
        if "Which gas" in body["messages"][-1]["content"]:
            fails["n"] += 1
            return 500
        return None
    with make_server(table, fail=fail) as srv:
        be = EndpointBackend(BackendConfig(base_url=srv.url, model="m", api_key="k", concurrency=2, max_retries=2,
                                           backoff_initial_s=0.01, backoff_max_s=0.02))
        o = run_sweep(SweepConfig(tasks=("mmlu",), efforts=("low",)), be, tmp_path, cache_dir=cache_dir,
                      offline=True, progress=False, log=lambda m: None)
    assert fails["n"] == 3  # 1 try + 2 retries
    assert o.failed == 1 and o.ran == 3
    rows = summarize(load_records(record_files(tmp_path)))
    assert rows[0]["failed"] == 1 and rows[0]["graded"] == 2 and rows[0]["accuracy"] == 1.0
    assert "3 (1 failed)" in to_text(rows)
    rec = [r for r in load_records(record_files(tmp_path)).values() if r["status"] == "failed"][0]
    assert "HTTP 500" in rec["error"] and "gave up after 3 attempts" in rec["error"] and rec["score"] is None


def test_endpoint_timeout_and_unreachable(tmp_path):
    table = {}
    with make_server(table, delay_s=2.0) as srv:
        be = EndpointBackend(BackendConfig(base_url=srv.url, model="m", api_key="k", max_retries=0, timeout_s=0.3))
        r = be.complete(Request(id="x", messages=({"role": "user", "content": "hi"},)))
    assert not r.ok and "timed out after 0.3s" in r.error
    be = EndpointBackend(BackendConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key="k", max_retries=1,
                                       backoff_initial_s=0.01))
    r = be.complete(Request(id="y", messages=({"role": "user", "content": "hi"},)))
    assert not r.ok and "could not connect" in r.error and "2 attempts" in r.error


def test_endpoint_auth_and_404_are_fatal():
    with make_server({}, fail=lambda body, n: 401) as srv:
        be = EndpointBackend(BackendConfig(base_url=srv.url, model="m", api_key="bad", max_retries=0))
        with pytest.raises(BackendFatalError, match="credentials"):
            be.complete(Request(id="x", messages=({"role": "user", "content": "hi"},)))
    with make_server({}, fail=lambda body, n: 404) as srv:
        be = EndpointBackend(BackendConfig(base_url=srv.url, model="nope", api_key="k", max_retries=0))
        with pytest.raises(BackendFatalError, match="404 for model 'nope'"):
            be.complete(Request(id="x", messages=({"role": "user", "content": "hi"},)))


def test_endpoint_config_errors():
    with pytest.raises(BackendFatalError, match="--base_url"):
        make_backend(BackendConfig(kind="endpoint", model="m"))
    with pytest.raises(BackendFatalError, match="unknown backend"):
        make_backend(BackendConfig(kind="tpu-magic"))


def test_sweep_config_errors():
    with pytest.raises(SweepError, match="reasoning efforts"):
        SweepConfig(tasks=("mmlu",), efforts=("extreme",)).validate()
    with pytest.raises(SweepError, match="no tasks"):
        SweepConfig(tasks=()).validate()


def test_model_graded_task_without_grader_is_clear(cache_dir, tmp_path):
    with pytest.raises(SweepError, match="grader model"):
        run_sweep(SweepConfig(tasks=("simpleqa",), efforts=("low",)), ScriptedBackend(lambda r: "x"), tmp_path,
                  cache_dir=cache_dir, offline=True, progress=False)


def test_code_grader_time_limit(cache_dir, tmp_path):
    lt = load_task(get_task("humaneval"), cache_dir=cache_dir, offline=True)
    s = lt.samples[0]
    from evals.backends.base import Result
    from evals.graders import GradeContext, grade
    loop = "```python\n" + s.fields["prompt"] + "    while True:\n        pass\n```"
    g = grade(lt.spec, s, Result(content=loop), GradeContext(code_timeout_s=1.0))
    assert g.score == 0.0 and g.details["timed_out"] and g.error is None
    net = "```python\nimport socket\nsocket.create_connection(('127.0.0.1', 9))\n```"
    g = grade(lt.spec, s, Result(content=net), GradeContext(code_timeout_s=5.0))
    assert g.score == 0.0
