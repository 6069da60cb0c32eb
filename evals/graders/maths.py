"""Maths answers: equivalence by Hugging Face's math-verify (symbolic, LaTeX-aware), not string match; integer
answers (AIME) by exact comparison."""
from __future__ import annotations

import threading

from evals import extract
from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, TaskSpec

_LOCK = threading.Lock()  # math-verify uses signal-based timeouts only in the main thread; sympy is not thread-safe


def _as_latex(s: str) -> str:
    s = s.strip()
    if s.startswith("$") or "\\boxed" in s:
        return s
    return f"${s}$"


def grade_math(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    try:
        from math_verify import parse, verify  # noqa: PLC0415
    except ImportError:
        return Grade.failed("maths grading needs math-verify: pip install -e '.[evals]'")
    answer = extract.final_answer(result.content)
    if answer is None:
        return Grade(score=0.0, parsed=None, details={"extraction": "empty answer"})
    gold_text = str(sample.target)
    with _LOCK:
        try:
            gold = parse(_as_latex(gold_text), parsing_timeout=None)
            pred = parse(_as_latex(answer), parsing_timeout=None)
            if not pred:
                pred = parse(answer, parsing_timeout=None)
            ok = bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=None)
        except Exception as e:  # noqa: BLE001 - a pathological expression is a wrong answer, not a crash
            return Grade(score=0.0, parsed=answer, details={"math_verify_error": f"{type(e).__name__}: {e}"})
    return Grade(score=float(ok), parsed=answer,
                 details={} if pred else {"extraction": "math-verify could not parse the answer"})


def grade_integer(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    """Integer answers (AIME): the final statement's integer (extract.integer: a hedge reads as none) against the
    target, exactly as OpenAI's aime_eval compares int(extracted) with int(answer)."""
    parsed = extract.integer(result.content)
    details = {} if parsed is not None else {"extraction": "no single integer in the final answer statement"}
    return Grade(score=float(parsed is not None and parsed == int(sample.target)), parsed=parsed, details=details)
