"""BFCL (Berkeley Function Calling Leaderboard): the AST checker from the `bfcl-eval` package, unchanged.

The model is offered the functions as OpenAI tools (names with dots become underscores, as BFCL does for every
OpenAI-style function-calling model); its tool calls are decoded to BFCL's ``[{name: {arg: value}}]`` form and
handed to ``bfcl_eval.eval_checker.ast_eval.ast_checker.ast_checker``.

Installing: bfcl-eval pins numpy==1.26.4 (and ~30 provider SDKs, torch through sentence-transformers), which cannot
coexist with jax (numpy>=2.1). Its AST checker needs none of them, so install it without dependencies:
``pip install --no-deps bfcl-eval==2026.3.23``. Its model table (``bfcl_eval.constants.model_config``) imports every
provider SDK just to look up one flag, ``underscore_to_dot``; when those SDKs are absent we register a minimal stand-in
for that one module answering ``underscore_to_dot=True`` (the OpenAI function-calling convention) and import the real
checker. With the full dependency set installed, the real table is used.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import sys
import types
from typing import Any

from evals.backends.base import Result
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, TaskSpec

INSTALL = ("BFCL needs the bfcl-eval package; its declared pins conflict with jax, so install it without them: "
           "pip install --no-deps bfcl-eval==2026.3.23")
_MODEL_CONFIG = "bfcl_eval.constants.model_config"


def available() -> bool:
    return importlib.util.find_spec("bfcl_eval") is not None


@dataclasses.dataclass(frozen=True)
class _FCConfig:
    underscore_to_dot: bool = True
    is_fc_model: bool = True


class _AllFunctionCalling(dict):
    def __missing__(self, key):
        return _FCConfig()


_CHECKER: Any = None
_MODEL_NAME = "gptoss-eval-FC"


def checker():
    """Return (ast_checker function, Language enum, model name to pass)."""
    global _CHECKER, _MODEL_NAME
    if _CHECKER is not None:
        return _CHECKER
    if not available():
        raise ImportError(INSTALL)
    try:
        mc = importlib.import_module(_MODEL_CONFIG)
        name = next((k for k, v in mc.MODEL_CONFIG_MAPPING.items()
                     if getattr(v, "underscore_to_dot", False) and getattr(v, "is_fc_model", False)), None)
        if name is None:
            raise ImportError("no function-calling model with underscore_to_dot in bfcl's model table")
        _MODEL_NAME = name.replace("/", "_")
    except ImportError:
        stub = types.ModuleType(_MODEL_CONFIG)
        stub.MODEL_CONFIG_MAPPING = _AllFunctionCalling()
        stub.__doc__ = "gptoss-jax stand-in: bfcl-eval installed without its provider SDKs"
        sys.modules[_MODEL_CONFIG] = stub
    ast_mod = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    enums = importlib.import_module("bfcl_eval.constants.enums")
    _CHECKER = (ast_mod.ast_checker, enums.Language, _MODEL_NAME)
    return _CHECKER


def openai_tools(functions: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """BFCL function docs -> OpenAI tools, with BFCL's own converter when importable."""
    try:
        from bfcl_eval.constants.enums import ModelStyle  # noqa: PLC0415
        from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI  # noqa: PLC0415
        from bfcl_eval.model_handler.utils import convert_to_tool  # noqa: PLC0415
        tools = convert_to_tool(functions, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)
    except ImportError:
        tools = [_to_openai_function(f) for f in functions]
    return tuple({"type": "function", "function": t} if "function" not in t else t for t in tools)


_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string", "list": "array",
          "bool": "boolean"}


def _cast(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _cast(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str):
            out["type"] = _TYPES.get(out["type"], out["type"])
        return out
    if isinstance(schema, list):
        return [_cast(v) for v in schema]
    return schema


def _to_openai_function(f: dict[str, Any]) -> dict[str, Any]:
    # Used only to build prompts when bfcl-eval is absent (grading then fails with INSTALL anyway).
    params = _cast(f.get("parameters", {}))
    params["type"] = "object"
    return {"name": f["name"].replace(".", "_"), "description": f.get("description", ""), "parameters": params}


def decode_calls(result: Result) -> list[dict[str, Any]] | None:
    calls = []
    for tc in result.tool_calls:
        try:
            args = json.loads(tc.arguments) if tc.arguments.strip() else {}
        except json.JSONDecodeError:
            return None
        if not isinstance(args, dict):
            return None
        calls.append({tc.name: args})
    return calls


def grade_bfcl(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    try:
        ast_checker, language, model_name = checker()
    except ImportError as e:
        return Grade.failed(str(e))
    calls = decode_calls(result)
    if calls is None:
        return Grade(score=0.0, parsed=[tc.to_dict() for tc in result.tool_calls],
                     details={"error": "tool call arguments are not a JSON object"})
    if not calls:
        return Grade(score=0.0, parsed=[], details={"error": "no function call"})
    category = sample.meta["category"]
    try:
        verdict = ast_checker(sample.meta["functions"], calls, sample.target, language.PYTHON, category, model_name)
    except Exception as e:  # noqa: BLE001 - the checker raising on odd model output means the output is wrong
        return Grade(score=0.0, parsed=calls, details={"error": f"checker raised {type(e).__name__}: {e}"})
    details = {} if verdict.get("valid") else {"error": verdict.get("error"), "error_type": verdict.get("error_type")}
    return Grade(score=float(bool(verdict.get("valid"))), parsed=calls, details=details)
