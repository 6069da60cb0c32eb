"""Grader correctness for every task, through the whole pipeline: the real `openai` client talks to a scripted
OpenAI-compatible server on 127.0.0.1 that answers in harmony-final-channel wording. Gold answers must score 100%,
wrong answers 0%."""
import importlib.util

import pytest

from evals.backends.base import BackendConfig
from evals.backends.endpoint import EndpointBackend
from evals.graders import GradeContext
from evals.records import load_records, record_files
from evals.registry import TASKS
from evals.report import summarize
from evals.runner import SweepConfig, run_sweep
from tests.evals.conftest import answer_table, make_server

HAS_BFCL = importlib.util.find_spec("bfcl_eval") is not None
ALL = [t for t, s in TASKS.items() if t != "bfcl" and not s.runner]  # agentic: test_evals_agentic.py


def _run(tasks, cache_dir, out, wrong, efforts=("low",)):
    table = answer_table(tasks, cache_dir, wrong_for=lambda t, s: wrong)
    with make_server(table) as srv:
        cfg = BackendConfig(kind="endpoint", base_url=srv.url, model="gpt-oss-test", api_key="k", concurrency=4,
                            max_retries=1, backoff_initial_s=0.01)
        backend, grader = EndpointBackend(cfg), EndpointBackend(cfg)
        ctx = GradeContext(grader_backend=grader, code_timeout_s=10)
        o = run_sweep(SweepConfig(tasks=tuple(tasks), efforts=efforts, repeats=1), backend, out,
                      cache_dir=cache_dir, offline=True, grade_ctx=ctx, progress=False, log=lambda m: None)
        backend.close(), grader.close()
    recs = load_records(record_files(out))
    return o, recs, summarize(recs, task_order=tasks)


@pytest.mark.parametrize("wrong", [False, True], ids=["gold", "wrong"])
def test_every_task_gold_scores_100_wrong_scores_0(cache_dir, tmp_path, wrong):
    o, recs, rows = _run(ALL, cache_dir, tmp_path / "out", wrong)
    assert o.failed == 0, [r["error"] for r in recs.values() if r["status"] == "failed"]
    assert {r["task"] for r in rows} == set(ALL)
    for r in rows:
        assert r["graded"] == r["executions"] > 0
        assert r["accuracy"] == (0.0 if wrong else 1.0), (r["task"], r["accuracy"])
    for rec in recs.values():  # the chain of thought and usage are recorded
        assert rec["output"]["reasoning"].startswith("We need to answer")
        assert rec["usage"]["prompt_tokens"] > 0 and rec["usage"]["cached_tokens"] > 0


@pytest.mark.skipif(not HAS_BFCL, reason="bfcl-eval not installed (pip install --no-deps bfcl-eval==2026.3.23)")
@pytest.mark.parametrize("wrong", [False, True], ids=["gold", "wrong"])
def test_bfcl_gold_and_wrong(cache_dir, tmp_path, wrong):
    o, recs, rows = _run(["bfcl"], cache_dir, tmp_path / "out", wrong)
    assert o.failed == 0, [r["error"] for r in recs.values()]
    assert rows[0]["executions"] == 8
    assert rows[0]["accuracy"] == (0.0 if wrong else 1.0)
