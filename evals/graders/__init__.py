"""Grader registry: a TaskSpec names its grader; `grade` dispatches and never raises for a bad answer."""
from __future__ import annotations

from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext, Grader
from evals.graders.bfcl import grade_bfcl
from evals.graders.choice import grade_label, grade_mc
from evals.graders.code import grade_humaneval
from evals.graders.ifeval import grade_ifeval
from evals.graders.maths import grade_integer, grade_math
from evals.graders.model_graded import grade_hle, grade_rubric, grade_simpleqa
from evals.spec import Sample, TaskSpec
from evals.agentic.swebench import grade_swebench
from evals.agentic.taubench import grade_taubench

GRADERS: dict[str, Grader] = {
    "mc": grade_mc,
    "label": grade_label,
    "math": grade_math,
    "integer": grade_integer,
    "humaneval": grade_humaneval,
    "ifeval": grade_ifeval,
    "bfcl_ast": grade_bfcl,
    "simpleqa": grade_simpleqa,
    "rubric": grade_rubric,
    "hle_judge": grade_hle,
    "taubench": grade_taubench,
    "swebench": grade_swebench,
}

#: graders that call a grader model
MODEL_GRADED = ("simpleqa", "rubric", "hle_judge")

__all__ = ["GRADERS", "MODEL_GRADED", "Grade", "GradeContext", "grade"]


def grade(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    fn = GRADERS.get(spec.grader)
    if fn is None:
        return Grade.failed(f"task {spec.name!r}: unknown grader {spec.grader!r}; expected one of {sorted(GRADERS)}")
    try:
        return fn(spec, sample, result, ctx)
    except Exception as e:  # noqa: BLE001 - a grader bug must not kill a long sweep; the record says what happened
        return Grade.failed(f"grader {spec.grader!r} crashed: {type(e).__name__}: {e}")
