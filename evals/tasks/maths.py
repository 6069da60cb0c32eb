"""Mathematics: GSM8K, MATH-500, AIME 2024, AIME 2025 (answers checked by math-verify)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import HFRows, UrlFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import first_key, require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]
GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"

MATH_TEMPLATE = ("Solve the following problem. Show your reasoning, then write the final answer on the last line "
                 "in the form 'Answer: <answer>'.\n\n{question}")
AIME_TEMPLATE = ("Solve the following AIME problem. The answer is an integer from 0 to 999. Show your reasoning, "
                 "then write the final answer on the last line in the form 'Answer: <integer>'.\n\n{question}")


def parse_gsm8k(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        q, a = require(row, "question", "answer", task="gsm8k")
        final = a.split("####")[-1].strip().replace(",", "")
        worked = a.split("####")[0].strip()
        out.append(Sample(id=str(i), target=final, fields={"question": q.strip(), "worked": worked,
                                                             "answer": final}))
    return out


def parse_math500(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        q = first_key(row, "Question", "problem", task="math500")
        a = first_key(row, "Answer", "answer", task="math500")
        sid = row.get("unique_id") or str(i)
        out.append(Sample(id=str(sid), target=str(a), fields={"question": q.strip()},
                          meta={"level": row.get("level"), "subject": row.get("subject")}))
    return out


def parse_aime(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        q = first_key(row, "problem", "question", "Problem", task="aime")
        a = first_key(row, "answer", "Answer", task="aime")
        sid = row.get("id") or row.get("ID") or str(i)
        out.append(Sample(id=str(sid), target=str(int(str(a).strip())), fields={"question": str(q).strip()}))
    return out


GSM8K = TaskSpec(
    name="gsm8k", benchmark="GSM8K", category="Mathematics",
    data={"main": (UrlFile(f"{GSM8K_URL}/test.jsonl", "gsm8k/test.jsonl", "jsonl", license="MIT"),),
          "fewshot": (UrlFile(f"{GSM8K_URL}/train.jsonl", "gsm8k/train.jsonl", "jsonl", license="MIT"),)},
    parser=parse_gsm8k, template=MATH_TEMPLATE, fewshot_answer_template="{worked}\nAnswer: {answer}",
    extractor="final_answer", grader="math", strategy=Strategy("few-shot", shots=5), license="MIT",
    description="1,319 grade-school word problems (Cobbe et al. 2021); 5 worked examples from the train split.")

MATH500 = TaskSpec(
    name="math500", benchmark="MATH-500", category="Mathematics",
    data={"main": (UrlFile("https://openaipublic.blob.core.windows.net/simple-evals/math_500_test.csv",
                           "simple-evals/math_500_test.csv", "csv", license="MIT"),
                   HFRows("HuggingFaceH4/MATH-500", "default", "test", license="MIT"))},
    parser=parse_math500, template=MATH_TEMPLATE, extractor="final_answer", grader="math",
    strategy=Strategy("chain-of-thought"), license="MIT",
    description="The 500-problem subset of MATH (Hendrycks et al. 2021) from 'Let's Verify Step by Step'.")

AIME2024 = TaskSpec(
    name="aime2024", benchmark="AIME 2024", category="Mathematics",
    data={"main": (HFRows("HuggingFaceH4/aime_2024", "default", "train", license="MIT (card); problems (c) MAA"),)},
    parser=parse_aime, template=AIME_TEMPLATE, extractor="final_answer", grader="math",
    strategy=Strategy("chain-of-thought"), license="MIT (dataset card); problems (c) MAA", default_repeats=8,
    description="AIME 2024 I and II, 30 problems, integer answers. OpenAI's defaults: 8 repeats.")

AIME2025 = TaskSpec(
    name="aime2025", benchmark="AIME 2025", category="Mathematics",
    data={"main": (HFRows("math-ai/aime25", "default", "test", license="see dataset card; problems (c) MAA"),
                   HFRows("yentinglin/aime_2025", "default", "train", license="MIT (card); problems (c) MAA"))},
    parser=parse_aime, template=AIME_TEMPLATE, extractor="final_answer", grader="math",
    strategy=Strategy("chain-of-thought"), license="dataset cards (MIT / unspecified); problems (c) MAA",
    default_repeats=8,
    description="AIME 2025 I and II, 30 problems, integer answers. OpenAI's defaults: 8 repeats.")

TASKS = (GSM8K, MATH500, AIME2024, AIME2025)
