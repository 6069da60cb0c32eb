"""What a task is, as data: `TaskSpec` (one per benchmark) and `Sample` (one per question).

A TaskSpec names its data tables (each with alternative sources), the function that turns raw rows into Samples (``parser``), the prompting
strategy, the prompt template, the answer extractor and the grader. Strategies, extractors and graders are looked up
by name in their registries (prompts.py, extract.py, graders/), so a variant of a task is
``dataclasses.replace(spec, strategy=...)``, not new code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Callable, Mapping, Sequence

from evals.data.sources import Source

CATEGORIES = ("Coding", "General Knowledge", "Email Classification", "Reasoning", "Hallucinations", "Mathematics",
              "Instruction Following", "Ethics", "Health", "Function Calling", "Agentic")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One question.

    id: stable within the task (used in resume keys). fields: values for the prompt template. target: the gold
    answer in whatever form the grader expects. messages: a whole conversation, for tasks whose prompt is one
    (HealthBench); when set, the template is not used. tools: OpenAI function tools offered to the model (BFCL).
    """

    id: str
    fields: Mapping[str, Any]
    target: Any
    messages: tuple[Mapping[str, Any], ...] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """How the prompt is built: ``zero-shot``, ``few-shot`` (``shots`` worked examples before the question, drawn
    deterministically from the task's ``fewshot`` data table, or if it has none from the other samples) or
    ``chain-of-thought`` (the template asks for step-by-step reasoning before the answer line)."""

    kind: str = "zero-shot"
    shots: int = 0

    def label(self) -> str:
        if self.kind == "few-shot":
            return f"few-shot ({self.shots})"
        return self.kind


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    benchmark: str
    category: str
    data: Mapping[str, tuple[Source, ...]]  # table name -> alternative sources; "main" holds the questions
    parser: Callable[[Mapping[str, Sequence[Mapping[str, Any]]]], list[Sample]]
    template: str
    extractor: str
    grader: str
    strategy: Strategy = Strategy()
    system: str | None = None
    fewshot_answer_template: str = ""
    grader_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    license: str = ""
    description: str = ""
    default_repeats: int = 1
    # completion limit when neither the flags nor the sweep file set one: what OpenAI's gpt-oss eval harness
    # (gpt_oss/evals) gives every request; a task may set its own
    default_max_tokens: int | None = 32768
    needs: tuple[str, ...] = ()  # import names of optional packages the grader needs (checked up front)
    # per-repeat variant of a sample (GPQA: a fresh option order per repeat, as OpenAI runs it): (sample, repeat)
    vary: Callable[[Sample, int], Sample] | None = None
    revision: int = 1  # bump when the prompt, extraction or grading changes meaning (part of the task version)
    runner: str | None = None  # a task that is not one request per sample (an agent loop): see evals/agentic/

    def version(self) -> str:
        """A short hash of everything that decides what a record of this task means (data hashed separately)."""
        parts = [self.name, self.template, self.system, self.extractor, self.grader, self.strategy.label(),
                 sorted((str(k), str(v)) for k, v in self.grader_options.items()), self.revision,
                 self.fewshot_answer_template, self.runner,
                 {t: [s.describe() for s in srcs] for t, srcs in self.data.items()}]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]

    def __post_init__(self):
        if "main" not in self.data:
            raise ValueError(f"task {self.name!r}: data needs a 'main' table")
        if self.category not in CATEGORIES:
            raise ValueError(f"task {self.name!r}: category {self.category!r} is not one of {CATEGORIES}")
