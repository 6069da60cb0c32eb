"""Code graders: run the benchmark's tests against the model's code in the harmony sandbox
(`gptoss_jax.harmony.tools.sandbox.run_python`: separate process, wall/CPU/memory limits, no network)."""
from __future__ import annotations

from evals import extract
from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, TaskSpec


def _run_python():
    try:
        from gptoss_jax.harmony.tools.sandbox import run_python  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("code grading needs gptoss_jax.harmony.tools.sandbox (the harmony tools package)") from e
    return run_python


def _imports(prompt: str) -> str:
    return "\n".join(ln for ln in prompt.splitlines() if ln.startswith(("import ", "from ")))


def humaneval_program(prompt: str, code: str, test: str, entry_point: str) -> str:
    """The program the sandbox runs: the model's function (completing the prompt if it only wrote the body),
    HumanEval's ``check`` function, and the call ``check(entry_point)``."""
    if f"def {entry_point}" in code:
        body = _imports(prompt) + "\n\n" + code
    else:
        body = prompt + code
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n"


def grade_humaneval(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    code = extract.code_block(result.content)
    if code is None:
        return Grade(score=0.0, parsed=None, details={"extraction": "no code in the answer"})
    try:
        run_python = _run_python()
    except RuntimeError as e:
        return Grade.failed(str(e))
    t = sample.target
    program = humaneval_program(sample.fields["prompt"], code, t["test"], t["entry_point"])
    out = run_python(program, timeout_s=ctx.code_timeout_s, memory_mb=ctx.code_memory_mb)
    details = {"exit_code": out.exit_code, "timed_out": out.timed_out}
    if not out.ok:
        details["error"] = out.error
        details["stderr_tail"] = (out.stderr or "")[-500:]
    return Grade(score=float(out.ok), parsed=code, details=details)
