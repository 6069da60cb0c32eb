"""Gold and wrong answers for every task, worded as gpt-oss writes its harmony final channel, plus reasoning."""
from __future__ import annotations

import json
import re
from pathlib import Path

from evals.spec import Sample, TaskSpec

FIXTURES = Path(__file__).parent / "fixtures"
IFEVAL = json.loads((FIXTURES / "ifeval_responses.json").read_text())
GOLD_MARK = "GOLD-RESPONSE"


def reasoning_for(sample: Sample) -> str:
    return f"We need to answer question {sample.id}. Let's think step by step about the options and check them."


def _bfcl_calls(target, wrong: bool):
    calls = []
    for i, call in enumerate(target):
        (name, params), = call.items()
        args = {}
        for p, options in params.items():
            vals = [o for o in options if o != ""]
            if vals:
                args[p] = vals[0]
        if wrong:
            name = "not_a_real_function"
        calls.append({"name": name.replace(".", "_"), "arguments": json.dumps(args), "id": f"call_{i}"})
    return calls


def answer(spec: TaskSpec, sample: Sample, wrong: bool) -> dict:
    """{"content", "reasoning", "tool_calls"} for this sample."""
    t = sample.target
    g = spec.grader
    out = {"reasoning": reasoning_for(sample), "tool_calls": []}
    if g == "mc":
        letters = sample.meta["letters"]
        letter = letters[(letters.index(t) + 1) % len(letters)] if wrong else t
        out["content"] = f"Weighing the options, the best supported one is {letter}.\n\n**Answer: {letter}**"
    elif g in ("math", "integer"):
        ans = "1234567" if wrong else t
        out["content"] = f"Putting it together gives the result.\n\n**Final answer:** $\\boxed{{{ans}}}$"
    elif g == "label":
        lab = {"spam": "ham", "ham": "spam"}[t] if wrong else t
        word = "not spam" if lab == "ham" else "spam"
        out["content"] = f"The sender, tone and links point one way.\n\n**Answer: {word}**"
    elif g == "humaneval":
        body = "    return None\n" if wrong else t["canonical_solution"]
        out["content"] = "Here is the implementation:\n\n```python\n" + sample.fields["prompt"] + body + "```\n"
    elif g == "ifeval":
        out["content"] = IFEVAL[sample.id]["wrong" if wrong else "gold"]
    elif g == "simpleqa":
        out["content"] = "I believe it is Zanzibar Smith." if wrong else f"It is **{t}**."
    elif g == "hle_judge":
        out["content"] = (f"Explanation: checked each case.\nExact Answer: {'zzz-wrong' if wrong else t}\n"
                          "Confidence: 80%")
    elif g == "rubric":
        out["content"] = ("Some general thoughts." if wrong else
                          f"{GOLD_MARK}: rest, drink water, and seek urgent care for red-flag symptoms.")
    elif g == "bfcl_ast":
        out["content"] = ""
        out["tool_calls"] = _bfcl_calls(t, wrong)
    else:
        raise AssertionError(f"no gold answer for grader {g}")
    return out


def grader_reply(prompt: str) -> str | None:
    """What the scripted grader model answers, or None if ``prompt`` is not a grading request."""
    if prompt.startswith("You are grading a short factual answer"):
        target = re.search(r"\nGold target: (.*)\n", prompt).group(1)
        predicted = re.search(r"\nPredicted answer: (.*)\n", prompt, re.S).group(1)
        return "A" if target.lower() in predicted.lower() else "B"
    if prompt.startswith("Decide whether the [response] below answers the [question]"):
        target = re.search(r"\n\[correct_answer\]: (.*)\n", prompt).group(1)
        response = re.search(r"\n\[response\]: (.*?)\n\n\[correct_answer\]", prompt, re.S).group(1)
        said = re.search(r"Exact Answer: (.*)", response).group(1).strip()
        return (f"extracted_final_answer: {said}\n\nreasoning: compared.\n\ncorrect: "
                f"{'yes' if said == target else 'no'}\n\nconfidence: 80")
    if prompt.startswith("You are grading the last assistant turn"):
        points = float(re.search(r"# Rubric item\n\[(-?[\d.]+)\]", prompt).group(1))
        met = (points > 0) if GOLD_MARK in prompt else (points < 0)
        return "```json\n" + json.dumps({"explanation": "checked", "criteria_met": met}) + "\n```"
    return None
