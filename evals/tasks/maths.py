"""Mathematics: GSM8K, MATH-500 (answers checked by math-verify), AIME 2024 and 2025 (integers, the model card's
prompt and \\boxed{} convention)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import re

from evals.data.sources import Concat, HFRows, UrlFile
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import first_key, require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]
GSM8K_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, "12*100=<<12*100=1200>>1200"
_LEADING_INT = re.compile(r"\s*(\d+)")

MATH_TEMPLATE = ("Solve the following problem. Show your reasoning, then write the final answer on the last line "
                 "in the form 'Answer: <answer>'.\n\n{question}")
# The prompt of the model card's AIME runs (openai/gpt-oss gpt_oss/evals/aime_eval.py AIME_TEMPLATE, verbatim, its
# leading and trailing newlines included): the answer goes in \boxed{}, read by the one extraction rule (extract.py).
AIME_TEMPLATE = "\n{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}.\n"


def parse_gsm8k(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        q, a = require(row, "question", "answer", task="gsm8k")
        if "####" not in a:
            raise ValueError(f"task 'gsm8k': answer of row {i} has no '#### <number>' line")
        final = a.split("####")[-1].strip().replace(",", "")
        worked = _CALCULATOR.sub("", a.split("####")[0]).strip()
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
        # The answer is an integer 0-999; like gpt-oss's aime_eval.normalize_number, take its leading digits
        # (a few copies store strings such as "070" or "33 "); anything else is a data error.
        m = _LEADING_INT.match(str(a))
        if m is None:
            raise ValueError(f"task 'aime': answer {a!r} of row {i} is not an integer")
        out.append(Sample(id=str(sid), target=str(int(m.group(1))), fields={"question": str(q).strip()}))
    return out


# Evidence: openai/grade-school-math (MIT), branch master, grade_school_math/data/{test,train}.jsonl: 1,319 and 7,473
# rows {question, answer}; the answer is a worked solution with <<calculator>> annotations ending in
# "#### <number>" (dataset.py ANS_RE = "#### (\-?[0-9\.\,]+)", commas dropped). sha256 of the blobs at 3101c7d.
GSM8K = TaskSpec(
    name="gsm8k", benchmark="GSM8K", category="Mathematics",
    data={"main": (UrlFile(f"{GSM8K_URL}/test.jsonl", "gsm8k/test.jsonl", "jsonl", rows=1319, license="MIT",
                           sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),),
          "fewshot": (UrlFile(f"{GSM8K_URL}/train.jsonl", "gsm8k/train.jsonl", "jsonl", rows=7473, license="MIT",
                              sha256="17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),)},
    parser=parse_gsm8k, template=MATH_TEMPLATE, fewshot_answer_template="{worked}\nAnswer: {answer}",
    extractor="final_answer", grader="math", strategy=Strategy("few-shot", shots=5), license="MIT",
    description="1,319 grade-school word problems (Cobbe et al. 2021); 5 worked examples from the train split.")

# Evidence: openai/simple-evals math_eval.py reads f".../simple-evals/{split}.csv" for split "math_500_test" and
# formats {Question}, scores row["Answer"]; its sibling math_test.csv (committed in simple-evals 326580f) has the
# header ",Question,Answer" (a pandas index column first). HuggingFaceH4/MATH-500 (test.jsonl): config default, split
# test, 500 rows {problem, solution, answer, subject, level, unique_id}; its card states no license (the split comes
# from openai/prm800k, MIT; MATH itself is MIT).
MATH500 = TaskSpec(
    name="math500", benchmark="MATH-500", category="Mathematics",
    data={"main": (UrlFile("https://openaipublic.blob.core.windows.net/simple-evals/math_500_test.csv",
                           "simple-evals/math_500_test.csv", "csv", rows=500, license="MIT"),
                   HFRows("HuggingFaceH4/MATH-500", "default", "test", rows=500,
                          license="none stated; MATH and prm800k are MIT"))},
    parser=parse_math500, template=MATH_TEMPLATE, extractor="final_answer", grader="math",
    strategy=Strategy("chain-of-thought"), license="MIT",
    description="The 500-problem subset of MATH (Hendrycks et al. 2021) from 'Let's Verify Step by Step'.")

# Evidence: huggingface.co/datasets/HuggingFaceH4/aime_2024 card: config default, split train, 30 rows {id (int64),
# problem, solution, answer (str), url, year}, AIME 2024 I and II from AI-MO/aimo-validation-aime; the card states
# no license.
AIME2024 = TaskSpec(
    name="aime2024", benchmark="AIME 2024", category="Mathematics",
    data={"main": (HFRows("HuggingFaceH4/aime_2024", "default", "train", rows=30,
                          license="none stated; problems (c) MAA"),)},
    parser=parse_aime, template=AIME_TEMPLATE, extractor="integer", grader="integer",
    strategy=Strategy("chain-of-thought"), license="none stated by the card; problems (c) MAA", default_repeats=8,
    revision=2,
    description="AIME 2024 I and II, 30 problems, integer answers. OpenAI's defaults: 8 repeats.")

# Evidence: openai/gpt-oss gpt_oss/evals/aime_eval.py (the eval behind the model card's AIME 2025 numbers) reads
# huggingface.co/datasets/opencompass/AIME2025 raw/main/aime2025-I.jsonl + aime2025-II.jsonl (15 + 15 rows
# {question, answer}; card MIT), with 8 repeats. Fallbacks: math-ai/aime25 (test.jsonl: config default, split test,
# {problem, answer, id}; read by lm-evaluation-harness lm_eval/tasks/aime/aime25.yaml; no license stated) and
# yentinglin/aime_2025 (parquet, split train, 30 rows). Model card: 92.5 (120b) / 91.7 (20b), high effort, no tools.
OPENCOMPASS_AIME2025 = "https://huggingface.co/datasets/opencompass/AIME2025/resolve/main"
AIME2025 = TaskSpec(
    name="aime2025", benchmark="AIME 2025", category="Mathematics",
    data={"main": (Concat((UrlFile(f"{OPENCOMPASS_AIME2025}/aime2025-I.jsonl", "aime2025/aime2025-I.jsonl", "jsonl"),
                           UrlFile(f"{OPENCOMPASS_AIME2025}/aime2025-II.jsonl", "aime2025/aime2025-II.jsonl",
                                   "jsonl")), rows=30, license="MIT (opencompass card); problems (c) MAA"),
                   HFRows("math-ai/aime25", "default", "test", rows=30, license="none stated; problems (c) MAA"),
                   HFRows("yentinglin/aime_2025", "default", "train", rows=30,
                          license="none stated; problems (c) MAA"))},
    parser=parse_aime, template=AIME_TEMPLATE, extractor="integer", grader="integer",
    strategy=Strategy("chain-of-thought"), license="MIT (opencompass/AIME2025 card); problems (c) MAA",
    default_repeats=8, revision=2,
    description="AIME 2025 I and II, 30 problems, integer answers. OpenAI's defaults: 8 repeats.")

TASKS = (GSM8K, MATH500, AIME2024, AIME2025)
