"""The built-in tool namespaces gpt-oss was trained with (rendered in the system message under ``# Tools``).

The texts are the format's published tool definitions: a prompt must use them verbatim for the model to
recognize the tools (and for token equality with openai-harmony's ``with_browser_tool``/``with_python_tool``).
"""
from __future__ import annotations

from .conversation import ToolDescription, ToolNamespace

BROWSER_DESCRIPTION = (
    "Tool for browsing.\n"
    "The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
    "Cite information from the tool using the following format:\n"
    "`【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.\n"
    "Do not quote more than 10 words directly from the tool output.\n"
    "sources=web (default: web)"
)

BROWSER_TOOLS = (
    ToolDescription(
        "search",
        "Searches for information related to `query` and displays `topn` results.",
        {"type": "object",
         "properties": {"query": {"type": "string"}, "topn": {"type": "number", "default": 10},
                        "source": {"type": "string"}},
         "required": ["query"]},
    ),
    ToolDescription(
        "open",
        "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing "
        "`num_lines` lines.\n"
        "Valid link ids are displayed with the formatting: `【{id}†.*】`.\n"
        "If `cursor` is not provided, the most recent page is implied.\n"
        "If `id` is a string, it is treated as a fully qualified URL associated with `source`.\n"
        "If `loc` is not provided, the viewport will be positioned at the beginning of the document or centered "
        "on the most relevant passage, if available.\n"
        "Use this function without `id` to scroll to a new location of an opened page.",
        {"type": "object",
         "properties": {"id": {"type": ["number", "string"], "default": -1},
                        "cursor": {"type": "number", "default": -1},
                        "loc": {"type": "number", "default": -1},
                        "num_lines": {"type": "number", "default": -1},
                        "view_source": {"type": "boolean", "default": False},
                        "source": {"type": "string"}}},
    ),
    ToolDescription(
        "find",
        "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
        {"type": "object",
         "properties": {"pattern": {"type": "string"}, "cursor": {"type": "number", "default": -1}},
         "required": ["pattern"]},
    ),
)

PYTHON_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a stateful Jupyter "
    "notebook environment. python will respond with the output of the execution or time out after 120.0 "
    "seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this "
    "session is UNKNOWN. Depends on the cluster."
)

# What our sandboxed python tool actually does (stateless subprocess, no network), in the same style.
PYTHON_SANDBOX_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a stateless sandbox, "
    "and the stdout of that process will be returned to you. Print what you need to see. python will time out "
    "after {timeout:g} seconds. Internet access for this session is disabled."
)


def browser_namespace() -> ToolNamespace:
    return ToolNamespace("browser", BROWSER_DESCRIPTION, BROWSER_TOOLS)


def python_namespace(description: str = PYTHON_DESCRIPTION) -> ToolNamespace:
    return ToolNamespace("python", description, ())


def builtin_namespace(name: str) -> ToolNamespace:
    if name == "browser":
        return browser_namespace()
    if name == "python":
        return python_namespace()
    raise ValueError(f"unknown built-in tool {name!r}; expected 'browser' or 'python' (or a ToolNamespace)")
