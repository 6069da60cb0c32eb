"""Hallucinations: SimpleQA (grader model: correct / incorrect / not attempted)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import UrlFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]


def parse_simpleqa(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        q, a = require(row, "problem", "answer", task="simpleqa")
        out.append(Sample(id=str(i), target=a.strip(), fields={"question": q.strip()}))
    return out


# Evidence: openai/simple-evals simpleqa_eval.py reads this URL with pandas and uses row["problem"] and
# row["answer"]; a copy of the file committed in a fork of simple-evals (adorosario, 207ed43) has the header
# metadata,problem,answer (metadata is a Python-dict string: topic, answer_type, urls) and 4,326 rows.
SIMPLEQA = TaskSpec(
    name="simpleqa", benchmark="SimpleQA", category="Hallucinations",
    data={"main": (UrlFile("https://openaipublic.blob.core.windows.net/simple-evals/simple_qa_test_set.csv",
                           "simple-evals/simple_qa_test_set.csv", "csv", rows=4326, license="MIT"),)},
    parser=parse_simpleqa, template="{question}", extractor="raw", grader="simpleqa",
    strategy=Strategy("zero-shot"), license="MIT",
    description="4,326 short fact-seeking questions (Wei et al. 2024); a grader model labels each answer correct, "
                "incorrect or not attempted; accuracy = correct / all.")

TASKS = (SIMPLEQA,)
