"""IFEval: Google's instruction checkers, used as shipped by the `llm-eval-framework` package
(``eval_framework.tasks.ifeval``, Apache-2.0, the verbatim google-research code); nothing is re-implemented here.

Score: prompt-level strict accuracy (1 if every instruction of the prompt is followed). Instruction-level results
and the loose variant go into the record's details. Some checkers (sentence counting) need NLTK's ``punkt_tab``
data; without it that sample fails with a message saying how to install it, instead of being marked wrong.
"""
from __future__ import annotations

from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, TaskSpec

_INSTALL = "IFEval grading needs llm-eval-framework (Google's IFEval checkers): pip install -e '.[evals]'"


def _evaluation():
    from eval_framework.tasks.ifeval import evaluation  # noqa: PLC0415
    return evaluation


def grade_ifeval(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    try:
        ev = _evaluation()
    except ImportError:
        return Grade.failed(_INSTALL)
    t = sample.target
    prompt = sample.fields["prompt"]
    # The Hugging Face copy of IFEval pads every kwargs dict with nulls; the checkers take only the real ones.
    kwargs = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in t["kwargs"]]
    inp = ev.InputExample(key=sample.id, instruction_id_list=list(t["instruction_id_list"]), prompt=prompt,
                          kwargs=kwargs)
    responses = {prompt: result.content or ""}
    try:
        strict = ev.test_instruction_following_strict(inp, responses)
        loose = ev.test_instruction_following_loose(inp, responses)
    except LookupError as e:
        if "punkt" in str(e):
            return Grade.failed("IFEval sentence checks need NLTK's punkt_tab data: run "
                                "`python -m nltk.downloader punkt_tab` once (or set NLTK_DATA)")
        return Grade.failed(f"IFEval checker failed: {type(e).__name__}: {e}")
    except (KeyError, TypeError, ValueError) as e:
        return Grade.failed(f"IFEval checker failed on this sample: {type(e).__name__}: {e}")
    return Grade(score=float(strict.follow_all_instructions), parsed=None,
                 details={"instructions": list(t["instruction_id_list"]),
                          "strict": list(strict.follow_instruction_list),
                          "loose": list(loose.follow_instruction_list),
                          "prompt_loose": bool(loose.follow_all_instructions)})
