"""Function calling: BFCL (non-live AST categories), data and checker from the bfcl-eval package."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import PackageFile
from evals.graders import bfcl
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
VERSION = "BFCL_v4"


def _source(category: str, answers: bool) -> tuple[PackageFile, ...]:
    sub = "possible_answer/" if answers else ""
    return (PackageFile("bfcl_eval", f"data/{sub}{VERSION}_{category}.json",
                        f"bfcl/{sub}{VERSION}_{category}.json", "jsonl", pip="bfcl-eval", license="Apache-2.0"),)


def parse_bfcl(tables: Tables) -> list[Sample]:
    out = []
    for category in CATEGORIES:
        answers = {r["id"]: r["ground_truth"] for r in tables[f"{category}_answers"]}
        for row in tables[category]:
            rid, question, functions = require(row, "id", "question", "function", task="bfcl")
            if rid not in answers:
                raise ValueError(f"task 'bfcl': no possible answer for {rid!r}")
            turn = question[0]
            out.append(Sample(id=rid, fields={}, target=answers[rid],
                              messages=tuple({"role": m["role"], "content": m["content"]} for m in turn),
                              tools=bfcl.openai_tools(functions),
                              meta={"category": category, "functions": functions}))
    return out


_DATA = {"main": ()}
for _c in CATEGORIES:
    _DATA[_c] = _source(_c, False)
    _DATA[f"{_c}_answers"] = _source(_c, True)
_DATA["main"] = _DATA[CATEGORIES[0]]

BFCL = TaskSpec(
    name="bfcl", benchmark="BFCL (AST, non-live)", category="Function Calling", data=_DATA,
    parser=parse_bfcl, template="", extractor="tool_calls", grader="bfcl_ast", strategy=Strategy("zero-shot"),
    license="Apache-2.0", needs=("bfcl_eval",),
    description="Berkeley Function Calling Leaderboard v4, categories simple_python (400), multiple (200), "
                "parallel (200), parallel_multiple (200) as shipped in bfcl-eval 2026.3.23; functions offered as "
                "OpenAI tools, calls checked by BFCL's AST checker. The score is accuracy over the 1,000 questions; "
                "BFCL's leaderboard instead averages per-category accuracies and counts Java/JavaScript in "
                "'simple', so the two numbers are not the same metric.")

TASKS = (BFCL,)
