"""Answer extraction from the model's final text (harmony ``final`` channel), robust to markdown wording such as
``**Answer: C**``, ``The correct answer is **(C)**``, ``$\\boxed{C}$`` or ``**Final answer:** 204``.

Each extractor returns the parsed answer or None (a malformed answer, which grades as wrong, not as failed).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

_MD = re.compile(r"[*_`]+")
_ANSWER_LINE = re.compile(r"(?i)\b(?:final\s+)?answer\s*(?:is\s*)?[:：=]\s*(.+)")
_BOXED = re.compile(r"\\boxed\s*\{")


def strip_markdown(text: str) -> str:
    return _MD.sub("", text or "")


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (brace-balanced), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    depth = 1
    j = i
    while j < len(text) and depth:
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
        j += 1
    return text[i:j - 1].strip() if depth == 0 else None


def answer_line(text: str) -> str | None:
    """The text after the last ``Answer:`` (``Final answer:``, ``answer is:``), markdown removed, or None."""
    plain = strip_markdown(text)
    matches = list(_ANSWER_LINE.finditer(plain))
    if not matches:
        return None
    value = matches[-1].group(1).strip()
    return value.rstrip(" .") or None


# ---- multiple choice ---------------------------------------------------------------------------------------------
_MC_PATTERNS = (
    # Answer: C / Answer: (C) / answer is C / Final answer - C / correct option is (B). The letter itself must be a
    # capital, or "the answer is a bit subtle" would read as A.
    re.compile(r"\b(?i:answer|option|choice)\b(?:\s+(?i:is))?[\s:：=\-–—]*[(\[{]?\s*([A-Z])\s*[)\]}]?"
               r"(?![A-Za-z0-9])"),
    # a lower-case letter only alone after a colon or in parentheses: "answer: c." / "answer is (c)" / "option (b)"
    re.compile(r"(?m)\b(?i:answer|option|choice)\b(?:\s+(?i:is))?"
               r"(?:\s*[:：]\s*([a-z])(?=\s*(?:[.,;)\]]|$))|\s*[:：]?\s*\(([a-z])\))"),
    # \boxed{C}, \boxed{\text{C}}, \boxed{(C)}
    re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?\s*\(?([A-Z])\)?\s*\}"),
)
_MC_LAST_LINE = re.compile(r"^[\s(\[]*([A-Z])\s*(?:[).\]:]|$)")


def mc_letter(text: str, letters: str = "ABCD") -> str | None:
    plain = strip_markdown(text or "").replace("$", " ")
    best: tuple[int, str] | None = None
    for pat in _MC_PATTERNS:
        for m in pat.finditer(plain):
            letter = m.group(m.lastindex).upper()
            if letter in letters and (best is None or m.start() > best[0]):
                best = (m.start(), letter)
    if best is not None:
        return best[1]
    for line in reversed([ln for ln in plain.splitlines() if ln.strip()]):
        m = _MC_LAST_LINE.match(line)
        if m and m.group(1) in letters:
            return m.group(1)
        break
    return None


# ---- free-form final answers (maths, short QA) -------------------------------------------------------------------
def final_answer(text: str) -> str | None:
    """The final answer string: the ``Answer:`` line, else the last ``\\boxed{}``, else the last non-empty line."""
    if not text or not text.strip():
        return None
    line = answer_line(text)
    if line is not None:
        inner = last_boxed(line)
        return inner if inner is not None else line.strip().strip("$").strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    lines = [ln.strip() for ln in strip_markdown(text).splitlines() if ln.strip()]
    return lines[-1] if lines else None


# ---- code ----------------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)


def code_block(text: str) -> str | None:
    """The last fenced code block (the longest if several follow the same wording), else the raw text."""
    if not text or not text.strip():
        return None
    blocks = _FENCE.findall(text)
    if blocks:
        return blocks[-1].strip("\n")
    return text.strip("\n")


# ---- labels --------------------------------------------------------------------------------------------------------
def label(text: str, labels: Mapping[str, Sequence[str]]) -> str | None:
    """Map the answer to one of ``labels`` (label -> synonyms). The ``Answer:`` line wins; otherwise the last
    synonym mentioned. Longer synonyms beat their substrings ("not spam" is not "spam")."""
    if not text:
        return None
    syn = sorted(((s.lower(), lab) for lab, ss in labels.items() for s in (lab, *ss)), key=lambda x: -len(x[0]))
    pat = re.compile(r"(?i)(?<![A-Za-z])(" + "|".join(re.escape(s) for s, _ in syn) + r")(?![A-Za-z])")
    lookup = dict(syn)
    line = answer_line(text)
    if line:
        found = pat.findall(line)
        if found:
            return lookup[found[0].lower()]
    found = pat.findall(strip_markdown(text))
    return lookup[found[-1].lower()] if found else None


def raw(text: str) -> str:
    return text or ""


EXTRACTORS: dict[str, Callable[..., Any]] = {
    "mc_letter": mc_letter,
    "final_answer": final_answer,
    "code_block": code_block,
    "label": label,
    "raw": raw,
    "tool_calls": raw,  # BFCL reads Result.tool_calls; the text is kept for the record
}
