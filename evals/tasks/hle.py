"""Humanity's Last Exam, text-only questions, graded by a judge model with HLE's rubric; run it with and without
the browser tool (``--tools=none --tools=browser``), and with python, as the model card does."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import HFRows
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]

# The answer format HLE asks of every model (centerforaisafety/hle run_model_predictions.py: one system prompt for
# exact-match questions, one for multiple choice), in our words; the judge reads the answer and the confidence.
SYSTEM_EXACT = ("Your response should be in the following format:\nExplanation: {your explanation for your final "
                "answer}\nExact Answer: {your succinct, final answer}\nConfidence: {your confidence score between "
                "0% and 100% for your answer}")
SYSTEM_MC = ("Your response should be in the following format:\nExplanation: {your explanation for your answer "
             "choice}\nAnswer: {your chosen answer}\nConfidence: {your confidence score between 0% and 100% for "
             "your answer}")


def parse_hle(tables: Tables) -> list[Sample]:
    """Text-only questions (``image`` empty), as the model card's HLE rows use."""
    out = []
    for row in tables["main"]:
        qid, question, answer = require(row, "id", "question", "answer", task="hle")
        if row.get("image"):
            continue
        mc = row.get("answer_type") == "multipleChoice"
        out.append(Sample(id=str(qid), target=str(answer), fields={"question": question},
                          messages=({"role": "system", "content": SYSTEM_MC if mc else SYSTEM_EXACT},
                                    {"role": "user", "content": question}),
                          meta={"answer_type": row.get("answer_type"), "category": row.get("category")}))
    return out


# Evidence: huggingface.co/datasets/cais/hle (gated: accept its terms, then set HF_TOKEN): config default, split
# test, 2,500 rows {id, question, image ("" when none), image_preview, answer, answer_type (exactMatch |
# multipleChoice), author_name, rationale, raw_subject, category, canary}; MIT. The judge (graders/model_graded.py
# grade_hle) follows HLE's run_judge_results.py: extract the final answer, compare it with the correct answer
# (small numerical margins allowed), answer yes/no, report the confidence.
HLE = TaskSpec(
    name="hle", benchmark="HLE (text-only)", category="Reasoning",
    data={"main": (HFRows("cais/hle", "default", "test", rows=2500, license="MIT"),)},
    parser=parse_hle, template="", extractor="raw", grader="hle_judge", strategy=Strategy("zero-shot"),
    license="MIT",
    description="Humanity's Last Exam (Phan et al. 2025), the text-only questions of the 2,500; a judge model "
                "decides each answer against the reference with HLE's rubric.")

TASKS = (HLE,)
