"""Answer extraction from the model's final text (harmony ``final`` channel): one rule for every task.

**The final answer statement wins.** A statement is an explicit ``Answer:`` / ``Final answer:`` / ``the (correct)
answer is`` line, a ``\\boxed{}`` (or ``\\fbox``, ``\\framebox``), a bold span (``**C**``, ``\\textbf{C}``), a
claim such as ``C is correct`` or ``the correct option is C``, a parenthesised letter ending a line (``So (C).``) or
a line holding nothing but the answer. All are found with their positions; reading from the end, the first one
that holds an answer of the expected kind (a letter among the options, an integer, ...) is the answer: the last one
standing. A later ``\\boxed{41}`` beats an earlier ``Answer: 42``, for letters and numbers alike; a statement that
holds no answer (``**Note**: option A is tempting``) is passed over; mentions such as ``option A`` are not
statements at all.

Inside a statement, LaTeX and markdown wrappers are peeled (``\\textbf``, ``\\text``, ``\\mathrm``, ``$...$``,
``**``), a lower-case letter counts only when it stands alone (``the answer is c.``, not ``the answer is a bit
subtle``), ``42 (mod 1000)`` reads 42, and a **hedge** (``A, C``, ``A or C``, ``41 or 42``) reads as no answer:
it scores wrong, never as one of its options.

Each extractor returns the parsed answer or None (a malformed answer grades as wrong, not as failed).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

HEDGE = "<hedge>"  # what a value reader returns for "A or C": the statement stands, and holds no single answer


@dataclasses.dataclass(frozen=True)
class Statement:
    start: int
    kind: str  # answer | boxed | bold | claim | paren | line
    text: str


_MD = re.compile(r"[*`]|__")
_ANSWER = re.compile(
    r"(?i)\b(?:(?:final|correct|right|best)\s+)?answers?\b(?:\s+(?:would|should|must|will)\s+be\b|\s+is\b)?"
    r"(?:\s*[:：=]|\s*[-–—](?=\s)|(?<=\bis)|(?<=\bbe))[ \t]*(?P<v>[^\n]*)")
_OPTION_IS = re.compile(r"(?i)\b(?:correct|right|best)\s+(?:option|choice)\s+(?:is\b|[:：])[ \t]*(?P<v>[^\n]*)")
_BOX = re.compile(r"\\(?:boxed|fbox|framebox)\s*\{")
_BOLD = re.compile(r"\*\*(?P<v>[^*\n]+?)\*\*|__(?P<u>[^_\n]+?)__")
_TEXTBF = re.compile(r"\\textbf\s*\{")
_CLAIM = re.compile(r"(?<![A-Za-z\\])\(?(?P<v>[A-Z])\)?\s+is\s+(?:the\s+)?(?:correct|right|best)\b")
_PAREN_END = re.compile(r"(?m)\((?P<v>[A-Z])\)\s*[.!]?[ \t]*$")
_LINE = re.compile(r"(?m)^[ \t>*_]*(?P<v>\(?[A-Za-z]\)?[.)]?|\$?-?\d[\d,]*(?:\.\d+)?\$?)[ \t*_]*$")


def _braced(text: str, i: int) -> tuple[str, int] | None:
    """The brace-balanced contents starting at ``text[i]`` (just after a ``{``) and the index after the ``}``."""
    depth, j = 1, i
    while j < len(text) and depth:
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
        j += 1
    return (text[i:j - 1], j) if depth == 0 else None


def statements(text: str) -> list[Statement]:
    """Every answer statement in ``text``, in order of position."""
    text = text or ""
    plain = _MD.sub(lambda m: " " * len(m.group()), text)  # same length: positions comparable across kinds
    out: list[Statement] = []
    for m in _ANSWER.finditer(plain):
        value = m.group("v").strip()
        if not value:  # "**Answer:**" with the answer on the next non-empty line
            rest = plain[m.end():].lstrip("\n \t")
            value = rest.split("\n", 1)[0].strip() if rest else ""
        out.append(Statement(m.start(), "answer", value))
    out += [Statement(m.start(), "answer", m.group("v").strip()) for m in _OPTION_IS.finditer(plain)]
    for pattern, kind in ((_BOX, "boxed"), (_TEXTBF, "bold")):
        for m in pattern.finditer(text):
            inner = _braced(text, m.end())
            if inner is not None:
                out.append(Statement(m.start(), kind, inner[0].strip()))
    out += [Statement(m.start(), "bold", (m.group("v") or m.group("u")).strip()) for m in _BOLD.finditer(text)]
    out += [Statement(m.start(), "claim", m.group("v")) for m in _CLAIM.finditer(plain)]
    out += [Statement(m.start(), "paren", m.group("v")) for m in _PAREN_END.finditer(plain)]
    out += [Statement(m.start("v"), "line", m.group("v")) for m in _LINE.finditer(text)]
    return sorted(out, key=lambda s: s.start)


def final(text: str, read: Callable[[Statement], Any]) -> Any:
    """The last statement's reading that is not None (HEDGE counts: it stands, and reads as no answer)."""
    for st in reversed(statements(text)):
        value = read(st)
        if value is not None:
            return None if value == HEDGE else value
    return None


# ---- peeling wrappers -------------------------------------------------------------------------------------------
_WRAPPER = re.compile(r"\\(?:textbf|text|mathrm|mathbf|mathit|textit|boxed|fbox|framebox|underline|emph)\s*\{")
_PREFIX = re.compile(r"(?i)^(?:(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\b)?\s*[:：=]?\s*)")


def peel(value: str) -> str:
    """Drop LaTeX wrappers, math delimiters, markdown and a leading 'Answer:' from a statement's text."""
    v = _WRAPPER.sub(" ", value)
    v = v.replace("\\(", " ").replace("\\)", " ").replace("\\[", " ").replace("\\]", " ")
    v = re.sub(r"[{}$*`_]", " ", v)
    v = re.sub(r"\\[,!;: ]", " ", v)
    return _PREFIX.sub("", v.strip()).strip()


# ---- multiple choice ---------------------------------------------------------------------------------------------
_LEAD = re.compile(r"(?i)^[\s:：=(\[\"'“‘-]*(?:(?:the\s+)?(?:option|choice|letter)\s*[:：]?\s*)?[(\[]?\s*")
_LETTER = re.compile(r"([A-Za-z])(?![A-Za-z0-9'’])")
_STANDALONE = re.compile(r"^\s*[)\]]?\s*(?:[.,;:!?)\]]|$)")
_HEDGE_LETTER = re.compile(r"(?i)^\s*[)\]]?\s*(?:,|/|&|\bor\b|\band\b|\bbut\b)\s*(?:(?:option|choice)\s+)?"
                           r"[(\[]?\s*([A-Z])(?![A-Za-z0-9])")


def read_letter(st: Statement, letters: str) -> str | None:
    if st.kind in ("claim", "paren"):
        return st.text if st.text in letters else None
    value = peel(st.text)
    m = _LEAD.match(value)
    rest = value[m.end():] if m else value
    lm = _LETTER.match(rest)
    if lm is None:
        return None
    letter, after = lm.group(1), rest[lm.end():]
    if letter.islower():  # "the answer is c." counts; "the answer is a bit subtle" does not
        if not _STANDALONE.match(after):
            return None
        letter = letter.upper()
    if letter not in letters:
        return None
    if st.kind in ("bold", "line") and not _STANDALONE.match(after) and not re.match(r"^\s*\)", after):
        return None  # **Step A** or a line of prose is not an answer
    h = _HEDGE_LETTER.match(after)
    if h and h.group(1).upper() in letters and h.group(1).upper() != letter:
        return HEDGE
    return letter


def mc_letter(text: str, letters: str = "ABCD") -> str | None:
    return final(text, lambda st: read_letter(st, letters))


# ---- integers (AIME) ----------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?![\d])|(?<![\w.])-?\d+(?:\.\d+)?")
_HEDGE_NUMBER = re.compile(r"(?i)^\s*(?:,|/|\bor\b|\band\b)\s*(?:maybe\s+|perhaps\s+)?-?\d")


def read_integer(st: Statement) -> int | str | None:
    if st.kind in ("claim", "paren"):
        return None
    value = peel(st.text)
    value = re.sub(r"\\?\(?\s*\\?(?:bmod|pmod|mod)\s*\{?\s*\d+\s*\}?\s*\)?", " ", value)  # "42 (mod 1000)"
    m = _NUMBER.search(value)
    if m is None:
        return None
    if st.kind in ("bold", "line") and value[:m.start()].strip():
        return None  # a bold phrase or a prose line that merely contains a number
    if _HEDGE_NUMBER.match(value[m.end():]):
        return HEDGE
    number = float(m.group(0).replace(",", ""))
    return int(number) if number.is_integer() else None


def integer(text: str) -> int | None:
    return final(text, read_integer)


# ---- free-form final answers (maths, short QA) -------------------------------------------------------------------
_MOD_TAIL = re.compile(r"\\?\(?\s*\\?(?:bmod|pmod|mod)\s*\{?\s*\d+\s*\}?\s*\)?\s*$")


def read_expression(st: Statement) -> str | None:
    if st.kind in ("claim", "paren"):
        return None
    value = st.text.strip().rstrip(".").strip()
    if st.kind in ("answer", "bold"):
        value = _PREFIX.sub("", value).strip()
        inner = last_boxed(value)
        value = inner if inner is not None else value.strip("$").strip()
    value = _MOD_TAIL.sub("", value).strip()  # "42 (mod 1000)": the modulus is not part of the answer
    if st.kind in ("bold", "line") and not re.search(r"\d|\\", value):
        return None  # a bold phrase without a number or LaTeX is emphasis, not an answer
    return value or None


def final_answer(text: str) -> str | None:
    """The final statement's expression (for math-verify), else the last non-empty line."""
    if not text or not text.strip():
        return None
    found = final(text, read_expression)
    if found is not None:
        return found
    lines = [ln.strip() for ln in _MD.sub("", text).splitlines() if ln.strip()]
    return lines[-1] if lines else None


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (brace-balanced), or None."""
    starts = [m.end() for m in _BOX.finditer(text or "")]
    if not starts:
        return None
    inner = _braced(text, starts[-1])
    return inner[0].strip() if inner is not None else None


def answer_line(text: str) -> str | None:
    """The text of the last ``Answer:`` statement, markdown removed, or None."""
    found = [s for s in statements(text) if s.kind == "answer" and s.text]
    return found[-1].text.rstrip(" .") or None if found else None


# ---- code ----------------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)


def code_block(text: str) -> str | None:
    """The last fenced code block, else the raw text."""
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
    found = pat.findall(_MD.sub("", text))
    return lookup[found[-1].lower()] if found else None


def raw(text: str) -> str:
    return text or ""


EXTRACTORS: dict[str, Callable[..., Any]] = {
    "mc_letter": mc_letter,
    "final_answer": final_answer,
    "integer": integer,
    "code_block": code_block,
    "label": label,
    "raw": raw,
    "tool_calls": raw,  # BFCL reads Result.tool_calls; the text is kept for the record
}
