"""Graders that ask a grader model, through any backend (``--grader_*`` flags; the endpoint or the local engine).

* ``simpleqa``: the SimpleQA protocol: the grader labels the predicted answer CORRECT, INCORRECT or NOT_ATTEMPTED
  against the gold target; the score is 1 for CORRECT. The three-way verdict is kept in the record.
* ``hle_judge`` (Humanity's Last Exam): HLE's judge rubric: the judge extracts the response's final answer, decides
  whether it matches the correct answer (small numerical margins allowed, any inconsistency or ambiguity is a no),
  and reports the response's confidence; the score is 1 for yes.
* ``rubric`` (HealthBench): one grader call per rubric item, asking whether the response meets it; the sample score
  is the points of the criteria met over the total positive points (negative items subtract), and the benchmark
  score is the mean clipped to [0, 1], as HealthBench defines it.
A grader model that fails or answers in an unparseable way makes the sample *failed* (not wrong).
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from evals.backends.base import Request, Result
from evals.graders.base import Grade, GradeContext, add_usage
from evals.spec import Sample, TaskSpec

SIMPLEQA_TEMPLATE = """You are grading a short factual answer. Compare the predicted answer with the gold target.

Reply with exactly one letter:
A) CORRECT: the predicted answer contains the gold target's meaning and nothing that contradicts it (extra
   detail, hedging that still commits to the right answer, and different but equivalent wording are fine).
B) INCORRECT: the predicted answer states something that contradicts the gold target, or commits to a wrong answer
   (even with hedging).
C) NOT_ATTEMPTED: the predicted answer does not commit to an answer (for example "I don't know") and contradicts
   nothing.
Numbers must match to the precision of the gold target. A partially named person or place is correct only if it
is unambiguous.

Question: {question}
Gold target: {target}
Predicted answer: {predicted}

Your grade (A, B or C):"""

RUBRIC_TEMPLATE = """You are grading the last assistant turn of a conversation against one rubric item.

# Conversation
{conversation}

# Rubric item
{criterion}

Decide whether the last assistant turn meets the rubric item. If the item lists several requirements, all must hold;
examples introduced by "such as", "for example" or "including" need not all appear. Some items describe undesirable
behaviour (they carry negative points): still answer whether the behaviour is present, not whether it is good.

Return only a JSON object: {{"explanation": "<one or two sentences>", "criteria_met": true or false}}"""

_SIMPLEQA_WORDS = {"NOT_ATTEMPTED": "C", "NOT ATTEMPTED": "C", "INCORRECT": "B", "CORRECT": "A"}


class GraderModelError(RuntimeError):
    pass


def _ask(ctx: GradeContext, prompts: Sequence[str], tag: str, usage: dict[str, int]) -> list[Result]:
    if ctx.grader_backend is None:
        raise GraderModelError("this task needs a grader model: pass --grader_model (and --grader_base_url for an "
                               "endpoint), or --grader_backend=local")
    reqs = [Request(id=f"{tag}#{i}", messages=({"role": "user", "content": p},),
                    reasoning_effort=ctx.grader_reasoning_effort, sampling=ctx.grader_sampling)
            for i, p in enumerate(prompts)]
    got: dict[str, Result] = dict(ctx.grader_backend.complete_many(reqs))
    out = []
    for r in reqs:
        res = got.get(r.id)
        if res is None or not res.ok:
            raise GraderModelError(f"grader model failed: {res.error if res else 'no result'}")
        add_usage(usage, res)
        out.append(res)
    return out


def parse_simpleqa_verdict(text: str) -> str | None:
    t = (text or "").strip().upper()
    m = re.search(r"\b([ABC])\b", t.replace("*", ""))
    if m and len(t) <= 40:
        return m.group(1)
    for word, letter in _SIMPLEQA_WORDS.items():  # NOT_ATTEMPTED / INCORRECT before CORRECT
        if word in t:
            return letter
    return m.group(1) if m else None


def _judge(ctx: GradeContext, prompt: str, sample: Sample, parse, expected: str):
    """One grader call: (its reading, grader usage), or (a failed Grade, usage) when the grader failed or gave no
    reading (``expected`` names what was missing)."""
    usage: dict[str, int] = {}
    try:
        [res] = _ask(ctx, [prompt], f"grade:{sample.id}", usage)
    except GraderModelError as e:
        return Grade.failed(str(e)), usage
    reading = parse(res.content)
    if reading is None:
        g = Grade.failed(f"grader model gave no {expected}: {res.content[:200]!r}")
        g.grader_usage = usage
        return g, usage
    return reading, usage


def grade_simpleqa(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    prompt = SIMPLEQA_TEMPLATE.format(question=sample.fields["question"], target=sample.target,
                                      predicted=(result.content or "").strip())
    verdict, usage = _judge(ctx, prompt, sample, parse_simpleqa_verdict, "A/B/C verdict")
    if isinstance(verdict, Grade):
        return verdict
    name = {"A": "CORRECT", "B": "INCORRECT", "C": "NOT_ATTEMPTED"}[verdict]
    return Grade(score=float(verdict == "A"), parsed=(result.content or "").strip(),
                 details={"verdict": name}, grader_usage=usage)


HLE_JUDGE_TEMPLATE = """Decide whether the [response] below answers the [question] correctly, judging only against
the precise and unambiguous [correct_answer].

[question]: {question}

[response]: {response}

[correct_answer]: {correct_answer}

Reply in exactly this format:

extracted_final_answer: the final exact answer in the [response], or None if it gives no exact final answer.

reasoning: why the extracted_final_answer does or does not match [correct_answer], considering only meaningful
differences between the two; do not solve the problem yourself or argue for another answer.

correct: yes if extracted_final_answer matches [correct_answer], or is within a small margin of error for a
numerical problem; no otherwise (any inconsistency, ambiguity or non-equivalence, or a wrong answer).

confidence: the confidence score between 0% and 100% stated in the [response], or 100 if it states none."""

_JUDGE_FIELD = re.compile(r"(?im)^\s*\**(extracted_final_answer|reasoning|correct|confidence)\**\s*:\s*(.*)$")


def parse_hle_judgement(text: str) -> dict[str, str] | None:
    fields = {m.group(1).lower(): m.group(2).strip().strip("*").strip() for m in _JUDGE_FIELD.finditer(text or "")}
    verdict = fields.get("correct", "").lower()
    if not verdict.startswith(("yes", "no")):
        return None
    fields["correct"] = "yes" if verdict.startswith("yes") else "no"
    return fields


def grade_hle(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    prompt = HLE_JUDGE_TEMPLATE.format(question=sample.fields["question"], response=(result.content or "").strip(),
                                       correct_answer=sample.target)
    fields, usage = _judge(ctx, prompt, sample, parse_hle_judgement, "'correct: yes|no' line")
    if isinstance(fields, Grade):
        return fields
    return Grade(score=float(fields["correct"] == "yes"), parsed=fields.get("extracted_final_answer"),
                 details=fields, grader_usage=usage)


def _conversation(messages: Sequence[dict[str, Any]], response: str) -> str:
    turns = [f"{m['role']}: {m.get('content') or ''}" for m in messages if m.get("role") != "system"]
    turns.append(f"assistant: {response}")
    return "\n\n".join(turns)


def parse_json_verdict(text: str) -> bool | None:
    t = (text or "").strip()
    t = re.sub(r"^```(?:json)?\s*|\s*```$", "", t)
    m = re.search(r"\{.*\}", t, re.S)
    if not m:
        return None
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    val = obj.get("criteria_met") if isinstance(obj, dict) else None
    return val if isinstance(val, bool) else None


def grade_rubric(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    rubrics = sample.target
    convo = _conversation(sample.messages or (), (result.content or "").strip())
    prompts = [RUBRIC_TEMPLATE.format(conversation=convo, criterion=f"[{r['points']}] {r['criterion']}")
               for r in rubrics]
    usage: dict[str, int] = {}
    try:
        answers = _ask(ctx, prompts, f"grade:{sample.id}", usage)
    except GraderModelError as e:
        return Grade.failed(str(e))
    met = []
    for r, a in zip(rubrics, answers):
        v = parse_json_verdict(a.content)
        if v is None:
            g = Grade.failed(f"grader model returned no criteria_met verdict: {a.content[:200]!r}")
            g.grader_usage = usage
            return g
        met.append(v)
    total = sum(r["points"] for r in rubrics if r["points"] > 0)
    if total <= 0:
        return Grade.failed("rubric has no positive points")
    achieved = sum(r["points"] for r, m in zip(rubrics, met) if m)
    return Grade(score=achieved / total, parsed=None,
                 details={"criteria_met": met, "points": achieved, "possible": total}, grader_usage=usage)
