"""Turn a Sample into chat messages according to the task's Strategy (zero-shot, few-shot, chain-of-thought).

The template is a ``str.format`` string over ``Sample.fields``. Few-shot examples are rendered with the same template
as user turns, and ``TaskSpec.fewshot_answer_template`` (over the example's fields) as assistant turns; they are drawn
deterministically (seeded by the sample id) from the few-shot pool, never including the sample itself.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Mapping, Sequence

from evals.spec import Sample, TaskSpec

STRATEGIES = ("zero-shot", "few-shot", "chain-of-thought")


class PromptError(ValueError):
    pass


def _fill(template: str, fields: Mapping[str, Any], task: str) -> str:
    try:
        return template.format(**fields)
    except KeyError as e:
        raise PromptError(f"task {task!r}: template field {e} is missing from the sample") from e


def build_messages(spec: TaskSpec, sample: Sample, pool: Sequence[Sample] = ()) -> list[dict[str, Any]]:
    kind = spec.strategy.kind
    if kind not in STRATEGIES:
        raise PromptError(f"task {spec.name!r}: unknown strategy {kind!r}; expected one of {STRATEGIES}")
    messages: list[dict[str, Any]] = []
    if spec.system:
        messages.append({"role": "system", "content": spec.system})
    if sample.messages is not None:
        messages.extend(dict(m) for m in sample.messages)
        return messages
    if kind == "few-shot" and spec.strategy.shots > 0:
        candidates = [s for s in pool if s.id != sample.id]
        if len(candidates) < spec.strategy.shots:
            raise PromptError(f"task {spec.name!r}: few-shot needs {spec.strategy.shots} examples, the pool has "
                              f"{len(candidates)}")
        seed = int.from_bytes(hashlib.sha256(f"{spec.name}/{sample.id}".encode()).digest()[:8], "big")
        for ex in random.Random(seed).sample(candidates, spec.strategy.shots):
            messages.append({"role": "user", "content": _fill(spec.template, ex.fields, spec.name)})
            messages.append({"role": "assistant", "content": _fill(spec.fewshot_answer_template, ex.fields,
                                                                    spec.name)})
    messages.append({"role": "user", "content": _fill(spec.template, sample.fields, spec.name)})
    return messages
