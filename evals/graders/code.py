"""Code graders: run the benchmark's tests against the model's code in the harmony sandbox
(`gptoss_jax.harmony.tools.sandbox.run_python`, the project's only way to run model-written code: bubblewrap
namespaces, seccomp, no network, wall/CPU/memory/process limits). An answer that kills, forks or hangs scores 0;
a sandbox that cannot run here makes the sample *failed* (not wrong), with the message naming what to install."""
from __future__ import annotations

from evals import extract
from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, TaskSpec


def _sandbox():
    try:
        from gptoss_jax.harmony.tools import sandbox  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("code grading needs gptoss_jax.harmony.tools.sandbox (the harmony tools package)") from e
    return sandbox


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
        sandbox = _sandbox()
    except RuntimeError as e:
        return Grade.failed(str(e))
    t = sample.target
    program = humaneval_program(sample.fields["prompt"], code, t["test"], t["entry_point"])
    try:
        out = sandbox.run_python(program, timeout_s=ctx.code_timeout_s, memory_mb=ctx.code_memory_mb)
    except sandbox.SandboxUnavailable as e:
        return Grade.failed(f"code sandbox unavailable: {e}")
    details = {"exit_code": out.exit_code, "timed_out": out.timed_out}
    if not out.ok:
        details["error"] = out.error
        details["stderr_tail"] = (out.stderr or "")[-500:]
    return Grade(score=float(out.ok), parsed=code, details=details)
