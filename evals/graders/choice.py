"""Exact-match graders: multiple-choice letters and classification labels."""
from __future__ import annotations

from evals import extract
from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext, opt
from evals.spec import Sample, TaskSpec


def grade_mc(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    letters = sample.meta.get("letters") or opt(spec, "letters", "ABCD")
    parsed = extract.mc_letter(result.content, letters)
    return Grade(score=float(parsed == sample.target), parsed=parsed,
                 details={} if parsed else {"extraction": f"no answer letter among {letters} found"})


def grade_label(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    labels = opt(spec, "labels")
    if not labels:
        return Grade.failed(f"task {spec.name!r}: grader 'label' needs grader_options['labels']")
    parsed = extract.label(result.content, labels)
    return Grade(score=float(parsed == sample.target), parsed=parsed,
                 details={} if parsed else {"extraction": f"no label among {sorted(labels)} found"})
