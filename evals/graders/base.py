"""The grader interface.

A grader is ``fn(spec, sample, result, ctx) -> Grade``. It runs after the model answered (``result.ok``).
``Grade.error`` set means grading itself could not run (grader model unreachable, a checker's data missing): the
sample is then recorded as *failed*, not wrong. A malformed answer is a normal Grade with score 0 and parsed None.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from evals.backends.base import Backend, Result, Sampling
from evals.spec import Sample, TaskSpec


@dataclasses.dataclass
class Grade:
    score: float
    parsed: Any = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    grader_usage: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def failed(cls, message: str, **details: Any) -> "Grade":
        return cls(score=0.0, error=message, details=details)


@dataclasses.dataclass
class GradeContext:
    """What graders may need besides the sample: a grader model (SimpleQA, HealthBench), a user simulator (the
    episodes of agentic tasks) and limits."""

    grader_backend: Backend | None = None
    user_backend: Backend | None = None  # the simulated user of agentic tasks (Tau-Bench)
    grader_sampling: Sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=2048)
    grader_reasoning_effort: str = "low"
    code_timeout_s: float = 10.0
    code_memory_mb: int = 1024


Grader = Callable[[TaskSpec, Sample, Result, GradeContext], Grade]


def add_usage(total: dict[str, int], result: Result) -> None:
    for k, v in result.usage_dict().items():
        if v:
            total[k] = total.get(k, 0) + int(v)


def opt(spec: TaskSpec, name: str, default: Any = None) -> Any:
    options: Mapping[str, Any] = spec.grader_options
    return options.get(name, default)
