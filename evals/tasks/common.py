"""Helpers shared by the task definitions (formatting options, deterministic shuffles)."""
from __future__ import annotations

import hashlib
import random
import string
from typing import Any, Mapping, Sequence

from evals.spec import Sample

MC_TEMPLATE = ("Answer the following multiple-choice question. Reason it through, then write the final answer on "
               "the last line in the form 'Answer: X', where X is one of {letters_list}.\n\n{question}\n\n{options}")


def stable_rng(*parts: Any) -> random.Random:
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def mc_sample(sample_id: str, question: str, choices: Sequence[str], correct_index: int,
              meta: Mapping[str, Any] | None = None, *, shuffle: bool = False) -> Sample:
    """A multiple-choice Sample; with ``shuffle`` the options are permuted deterministically from the id."""
    order = list(range(len(choices)))
    if shuffle:
        stable_rng("mc", sample_id).shuffle(order)
    letters = string.ascii_uppercase[: len(choices)]
    options = "\n".join(f"{letters[i]}) {str(choices[j]).strip()}" for i, j in enumerate(order))
    target = letters[order.index(correct_index)]
    return Sample(id=sample_id, target=target,
                  fields={"question": question.strip(), "options": options, "letters": letters,
                          "letters_list": ", ".join(letters), "answer": target},
                  meta={"letters": letters, **(meta or {})})


def require(row: Mapping[str, Any], *keys: str, task: str) -> list[Any]:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"task {task!r}: data row lacks field(s) {missing}; has {sorted(row)[:12]} "
                         "(is the cached file from another dataset version?)")
    return [row[k] for k in keys]


def first_key(row: Mapping[str, Any], *keys: str, task: str) -> Any:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return row[k]
    raise ValueError(f"task {task!r}: data row has none of the fields {list(keys)}; has {sorted(row)[:12]}")
