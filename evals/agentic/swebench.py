"""SWE-bench Verified through the official harness (the ``swebench`` package, run_evaluation in Docker).

The model gets the issue (``problem_statement``) with the repository and commit and answers with a unified diff;
the official harness (``python -m swebench.harness.run_evaluation``) builds the instance's container, applies the
patch and runs the FAIL_TO_PASS / PASS_TO_PASS tests; the sample scores 1 when the harness reports it resolved.
Data: ``princeton-nlp/SWE-bench_Verified`` (500 instances, test split) through the Hugging Face datasets-server.

This is the patch-only setting (no repository browsing tools): the model card's SWE-bench number comes from an
agent with a shell in the repository, which this harness does not provide yet. Without Docker (or without the
``swebench`` package) the task refuses before anything runs, naming what is missing.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from evals.backends.base import Backend, Request, Result
from evals.data.sources import HFRows
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, Strategy, TaskSpec

TEMPLATE = ("You are given an issue from the GitHub repository {repo} at commit {base_commit}. Write a patch that "
            "resolves it. Answer with a single unified diff (as `git diff` prints it, paths relative to the "
            "repository root) in a ```diff fenced block.\n\n<issue>\n{problem_statement}\n</issue>")
_DIFF = re.compile(r"```(?:diff|patch)?[ \t]*\n(.*?)```", re.S)


class SwebenchUnavailable(RuntimeError):
    pass


def preflight() -> None:
    """Refuse clearly when the official harness cannot run here."""
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("swebench") is None:
        raise SwebenchUnavailable("SWE-bench Verified is graded by the official harness: pip install swebench")
    docker = shutil.which("docker")
    if docker is None:
        raise SwebenchUnavailable("SWE-bench Verified needs Docker (the official harness runs each instance's "
                                  "tests in a container), and `docker` is not on PATH: install Docker or drop the "
                                  "task")
    probe = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        raise SwebenchUnavailable(f"SWE-bench Verified needs a running Docker daemon; `docker info` failed: "
                                  f"{(probe.stderr or probe.stdout).strip()[:300]}")


def parse(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Sample]:
    return [Sample(id=row["instance_id"], target=row["instance_id"],
                   fields={"repo": row["repo"], "base_commit": row["base_commit"],
                           "problem_statement": row["problem_statement"]},
                   meta={"runner": "swebench"}) for row in tables["main"]]


SWEBENCH_VERIFIED = TaskSpec(
    name="swebench_verified", benchmark="SWE-bench Verified", category="Agentic",
    data={"main": (HFRows("princeton-nlp/SWE-bench_Verified", "default", "test", rows=500, license="MIT"),)},
    parser=parse, template=TEMPLATE, extractor="raw", grader="swebench", runner="swebench",
    strategy=Strategy("zero-shot"), license="MIT", needs=("swebench",),
    description="500 human-validated GitHub issues (OpenAI, 2024); patch-only, graded by the official harness.")

TASKS = (SWEBENCH_VERIFIED,)


def run_episode(agent: Backend, user: Backend | None, req: Request) -> Result:
    """Patch-only: one request; the patch is extracted and graded by the harness."""
    return agent.complete(dataclasses.replace(req, metadata={k: v for k, v in req.metadata.items()
                                                             if k != "runner"}))


def extract_patch(text: str) -> str | None:
    blocks = _DIFF.findall(text or "")
    patch = blocks[-1] if blocks else (text if (text or "").lstrip().startswith(("diff --git", "--- ")) else None)
    return patch if patch and patch.strip() else None


def grade_swebench(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    patch = extract_patch(result.content)
    if patch is None:
        return Grade(score=0.0, details={"extraction": "no diff in the answer"})
    try:
        preflight()
    except SwebenchUnavailable as e:
        return Grade.failed(str(e))
    with tempfile.TemporaryDirectory(prefix="swebench-") as tmp:
        preds = Path(tmp) / "preds.jsonl"
        preds.write_text(json.dumps({"instance_id": sample.id, "model_name_or_path": "gptoss-eval",
                                     "model_patch": patch}) + "\n")
        run_id = re.sub(r"[^A-Za-z0-9_.-]", "_", f"gptoss-{sample.id}")
        p = subprocess.run([sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name",
                            "princeton-nlp/SWE-bench_Verified", "--predictions_path", str(preds), "--instance_ids",
                            sample.id, "--max_workers", "1", "--run_id", run_id], cwd=tmp, capture_output=True,
                           text=True, timeout=3600)
        reports = list(Path(tmp).rglob("report.json"))
        if not reports:
            return Grade.failed(f"the swebench harness produced no report (exit {p.returncode}): "
                                f"{(p.stderr or p.stdout)[-500:]}")
        report = json.loads(reports[0].read_text()).get(sample.id, {})
    return Grade(score=float(bool(report.get("resolved"))), parsed=patch[:2000],
                 details={"resolved": bool(report.get("resolved")), "tests_status": report.get("tests_status")})
