"""Tool-using evals: the harmony built-in tools (python, browser) offered to the model, run until it answers.

A sweep with ``--tools=python`` (or ``python,browser``) sends each request with ``Request.builtin_tools``; the
backend runs the loop:

* local engine: harmony's own tool loop (``harmony.run_tool_loop``): the tools are rendered in the system message
  as gpt-oss was trained, the model addresses ``python`` / ``browser.search`` in the commentary/analysis channel;
* an endpoint (or the scripted test backend): the same tools as OpenAI *function* tools (``python(code)``,
  ``browser_search(query, topn)``, ``browser_open(...)``, ``browser_find(...)``) over the chat API; each tool
  call's result goes back as a ``tool`` message, until a turn without tool calls (`run_message_loop`).

Either way the tools are the harmony package's: ``PythonTool`` runs code through the project's one sandbox
(``gptoss_jax.harmony.tools.sandbox.run_python``), ``BrowserTool`` searches a local BM25 index of a folder
(offline) or a search service the user configures (evals/search.py). Every call and result goes into the sample's
transcript with its duration; tool time is part of the sample's latency, hence of the table's Duration.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

BUILTIN_TOOLS = ("python", "browser")

FUNCTION_TOOLS = {
    "python": {"type": "function", "function": {
        "name": "python",
        "description": ("Run Python code in a stateless sandbox (no network) and return its stdout and stderr. "
                        "Print what you need to see."),
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}},
    "browser_search": {"type": "function", "function": {
        "name": "browser_search", "description": "Search for `query` and show `topn` results (a page with a cursor).",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "topn": {"type": "integer"}},
                       "required": ["query"]}}},
    "browser_open": {"type": "function", "function": {
        "name": "browser_open",
        "description": ("Open link `id` of the page at `cursor` (or a URL), from line `loc`, showing `num_lines` "
                        "lines; without `id`, scroll the page."),
        "parameters": {"type": "object", "properties": {
            "id": {"type": ["integer", "string"]}, "cursor": {"type": "integer"}, "loc": {"type": "integer"},
            "num_lines": {"type": "integer"}}}}},
    "browser_find": {"type": "function", "function": {
        "name": "browser_find", "description": "Find exact matches of `pattern` in the page at `cursor`.",
        "parameters": {"type": "object", "properties": {"pattern": {"type": "string"}, "cursor": {"type": "integer"}},
                       "required": ["pattern"]}}},
}


class ToolSetupError(ValueError):
    """A tool cannot be offered as configured (unknown name, no browser index)."""


@dataclasses.dataclass(frozen=True)
class ToolConfig:
    """How the tools behave. browser_index: a folder of .txt/.md/.html documents searched with BM25 (offline);
    search_url: a search service (SearXNG-compatible JSON API), used instead when set."""

    python_timeout_s: float = 30.0
    python_memory_mb: int = 1024
    browser_index: str | None = None
    search_url: str | None = None
    max_rounds: int = 16
    max_output_chars: int = 16000

    def describe(self) -> dict[str, Any]:
        return {"python_timeout_s": self.python_timeout_s, "browser": self.search_url or self.browser_index,
                "max_rounds": self.max_rounds}


def check_tools(names: Sequence[str], config: ToolConfig) -> None:
    bad = [n for n in names if n not in BUILTIN_TOOLS]
    if bad:
        raise ToolSetupError(f"--tools {bad} unknown; expected some of {BUILTIN_TOOLS}")
    if "browser" in names and not (config.browser_index or config.search_url):
        raise ToolSetupError("--tools=browser needs a search backend: --browser_index=FOLDER (documents searched "
                             "offline) or --search_url=URL (a SearXNG-compatible search service)")


class _Timed:
    """A built-in tool wrapped so every call is timed and written to the session's transcript."""

    def __init__(self, tool, session: "ToolSession"):
        self.tool = tool
        self.namespace = tool.namespace
        self._session = session

    def call(self, recipient: str, content: str, content_type: str | None = None) -> str:
        return self._session.run(recipient, content, lambda: self.tool.call(recipient, content, content_type))


class ToolSession:
    """The tools of one sample (a browser keeps its page stack for the conversation) and their transcript."""

    def __init__(self, names: Sequence[str], config: ToolConfig | None = None):
        self.config = config or ToolConfig()
        check_tools(names, self.config)
        self.names = tuple(names)
        self.events: list[dict[str, Any]] = []
        self._tools: dict[str, Any] = {}
        if "python" in names:
            from gptoss_jax.harmony.tools.python_tool import PythonTool  # noqa: PLC0415

            self._tools["python"] = PythonTool(timeout_s=self.config.python_timeout_s,
                                               memory_mb=self.config.python_memory_mb,
                                               max_output_chars=self.config.max_output_chars)
        if "browser" in names:
            from gptoss_jax.harmony.tools.browser import BrowserTool  # noqa: PLC0415

            self._tools["browser"] = BrowserTool(browser_backend(self.config))

    @property
    def builtin(self) -> list[_Timed]:
        """For harmony.run_tool_loop(builtin_tools=...)."""
        return [_Timed(t, self) for t in self._tools.values()]

    def function_tools(self) -> list[dict[str, Any]]:
        out = []
        if "python" in self._tools:
            out.append(FUNCTION_TOOLS["python"])
        if "browser" in self._tools:
            out += [FUNCTION_TOOLS[k] for k in ("browser_search", "browser_open", "browser_find")]
        return out

    def handles(self, function_name: str) -> bool:
        return (function_name == "python" and "python" in self._tools) or (
            function_name.startswith("browser_") and "browser" in self._tools)

    def call_function(self, name: str, arguments: str) -> str:
        """Run a function-tool call (endpoint mode); a bad call is an error text for the model, never a crash."""
        if name == "python":
            try:
                args = json.loads(arguments) if arguments.strip() else {}
                code = args["code"] if isinstance(args, dict) else None
            except (json.JSONDecodeError, KeyError):
                code = None
            if not isinstance(code, str):
                # models sometimes send the code itself rather than {"code": ...}: run it as harmony's tool would
                code = arguments
            return self.run("python", code, lambda: self._tools["python"].call("python", code))
        recipient = "browser." + name[len("browser_"):]
        return self.run(recipient, arguments, lambda: self._tools["browser"].call(recipient, arguments))

    def run(self, recipient: str, content: str, fn: Callable[[], str]) -> str:
        t0 = time.monotonic()
        error = False
        try:
            text = fn()
        except Exception as e:  # noqa: BLE001 - a tool failure is the model's to see, not the sweep's
            text, error = json.dumps({"error": f"{recipient} failed: {type(e).__name__}: {e}"}), True
        self.events.append({"type": "tool", "tool": recipient, "input": content, "output": text, "error": error,
                            "seconds": round(time.monotonic() - t0, 6)})
        return text

    @property
    def tool_seconds(self) -> float:
        return sum(e["seconds"] for e in self.events if e["type"] == "tool")


def browser_backend(config: ToolConfig):
    if config.search_url:
        from evals.search import SearxngBackend  # noqa: PLC0415

        return SearxngBackend(config.search_url)
    from gptoss_jax.harmony.tools.browser_backend import LocalFolderBackend  # noqa: PLC0415

    return LocalFolderBackend(config.browser_index)


def run_message_loop(call_model: Callable[[list, list], Any], request) -> Any:
    """The tool loop over a chat API: ``call_model(messages, tools) -> Result`` runs one turn; each turn's
    built-in tool calls are executed and answered with ``tool`` messages until a turn makes none (or
    ``max_rounds``). Returns one Result: the last turn's answer, usage summed over turns, the whole transcript."""
    from evals.backends.base import Result  # noqa: PLC0415

    session = ToolSession(request.builtin_tools, request.tool_config)
    messages = [dict(m) for m in request.messages]
    tools = [dict(t) for t in request.tools] + session.function_tools()
    started, t0 = time.time(), time.monotonic()
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    reasoning: list[str] = []
    result = None
    for round_no in range(1, session.config.max_rounds + 1):
        result = call_model(messages, tools)
        if not result.ok:
            return dataclasses.replace(result, latency_s=time.monotonic() - t0, started_at=started,
                                       transcript=tuple(session.events), tool_seconds=session.tool_seconds,
                                       rounds=round_no)
        for k in usage:
            usage[k] += getattr(result, k) or 0
        if result.reasoning:
            reasoning.append(result.reasoning)
        ours = [tc for tc in result.tool_calls if session.handles(tc.name)]
        session.events.append({"type": "assistant", "round": round_no, "reasoning": result.reasoning,
                               "content": result.content, "tool_calls": [tc.to_dict() for tc in result.tool_calls]})
        if not ours:
            break
        messages.append({"role": "assistant", "content": result.content or None,
                         # gpt-oss servers want the chain of thought of a tool-calling turn back (harmony keeps it)
                         **({"reasoning_content": result.reasoning} if result.reasoning else {}),
                         "tool_calls": [{"id": tc.id or f"call_{round_no}_{i}", "type": "function",
                                         "function": {"name": tc.name, "arguments": tc.arguments}}
                                        for i, tc in enumerate(ours)]})
        for i, tc in enumerate(ours):
            messages.append({"role": "tool", "tool_call_id": tc.id or f"call_{round_no}_{i}",
                             "content": session.call_function(tc.name, tc.arguments)})
    else:
        round_no = session.config.max_rounds
    finish = result.finish_reason if not any(session.handles(tc.name) for tc in result.tool_calls) else "max_rounds"
    return Result(content=result.content, reasoning="\n".join(reasoning),
                  tool_calls=tuple(tc for tc in result.tool_calls if not session.handles(tc.name)),
                  prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                  cached_tokens=usage["cached_tokens"], latency_s=time.monotonic() - t0, finish_reason=finish,
                  started_at=started, attempts=result.attempts, transcript=tuple(session.events),
                  tool_seconds=session.tool_seconds, rounds=round_no)
