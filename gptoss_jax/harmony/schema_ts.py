"""JSON schema -> the TypeScript-like type text harmony puts in ``namespace functions { ... }``.

The rules follow the harmony format as the model was trained on it (and as openai-harmony renders it):
objects become ``{\n key: type,\n}`` blocks with ``?`` on optional keys and ``//`` comments for title,
description, examples and defaults; string enums become unions of literals; integer is number; arrays are
``T[]``; ``type`` lists become unions; ``oneOf`` becomes `` | `` lines; ``nullable`` adds `` | null``; anything
else is ``any``. Nested object bodies are indented by four spaces more than their parent.
"""
from __future__ import annotations

import json
import math
from typing import Any


def rust_lines(text: str) -> list[str]:
    """Split like Rust's str::lines: on \\n, dropping one trailing empty line and a trailing \\r per line."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def json_text(value: Any) -> str:
    """Compact JSON the way serde_json prints a value (no spaces, non-ASCII kept, floats with a '.0')."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 64):
            return str(value)
        value = float(value)  # serde_json reads integers beyond 64 bits as f64
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_text(str(k))}:{json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _float_text(value: float) -> str:
    """An f64 as serde_json prints it (the ryu shortest form: scientific below 1e-5 and from 1e16 up)."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(value)
    if "e" not in text:
        return text if "." in text else text + ".0"
    mantissa, exponent = text.split("e")
    exp = int(exponent)
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    point = exp + 1  # digits before the decimal point
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if 0 < point <= 16:  # not produced by repr, kept for completeness
        digits = digits.ljust(point, "0")
        rest = digits[point:] or "0"
        return f"{sign}{digits[:point]}.{rest}"
    return f"{mantissa}e{exp}"


def _is_nonempty_enum(schema: dict) -> bool:
    values = schema.get("enum")
    return isinstance(values, list) and len(values) > 0


def _default_text(schema: dict, quote_strings: bool) -> str:
    default = schema["default"]
    if isinstance(default, str):
        return f'"{default}"' if quote_strings and not _is_nonempty_enum(schema) else default
    return json_text(default)


def _with_nullable(schema: Any, type_text: str) -> str:
    if isinstance(schema, dict) and schema.get("nullable") is True and "null" not in type_text:
        return f"{type_text} | null"
    return type_text


def _variant_trailing_comment(variant: Any, skip_description: bool, property_description: str | None,
                              quote_enum_default_strings: bool) -> str:
    comments = []
    if isinstance(variant, dict):
        desc = variant.get("description")
        if not skip_description and isinstance(desc, str) and desc != property_description:
            comments.append(desc)
        if "default" in variant:
            default = variant["default"]
            if isinstance(default, str) and not _is_nonempty_enum(variant):
                comments.append(f'default: "{default}"')
            elif isinstance(default, str) and not quote_enum_default_strings:
                comments.append(f"default: {default}")
            else:
                comments.append(f"default: {json_text(default)}")
    return f" // {' '.join(comments)}" if comments else ""


def schema_to_typescript(schema: Any, indent: str = "") -> str:
    """Render one JSON schema (a dict) as harmony's TypeScript-like type."""
    if not isinstance(schema, dict):
        return "any"
    one_of = schema.get("oneOf")
    if isinstance(one_of, list):
        out = []
        for variant in one_of:
            out.append(f"\n{indent} | ")
            out.append(_with_nullable(variant, schema_to_typescript(variant, indent + "   ")))
            out.append(_variant_trailing_comment(variant, False, None, quote_enum_default_strings=True))
        return "".join(out)
    type_ = schema.get("type")
    if isinstance(type_, list):
        names = ["number" if t == "integer" else t for t in type_ if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if not isinstance(type_, str):
        return "any"
    if type_ == "object":
        return _object_to_typescript(schema, indent)
    if type_ == "string":
        values = schema.get("enum")
        if isinstance(values, list):
            literals = [f'"{v}"' for v in values if isinstance(v, str)]
            if literals:
                return " | ".join(literals)
        return "string"
    if type_ in ("number", "integer"):
        return "number"
    if type_ == "boolean":
        return "boolean"
    if type_ == "array":
        if "items" in schema:
            return f"{schema_to_typescript(schema['items'], indent)}[]"
        return "Array<any>"
    return "any"


def _object_to_typescript(schema: dict, indent: str) -> str:
    out = []
    desc = schema.get("description")
    if isinstance(desc, str):
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = schema.get("properties")
    if isinstance(props, dict):
        required = {r for r in schema.get("required", []) if isinstance(r, str)} \
            if isinstance(schema.get("required"), list) else set()
        for key, val in props.items():
            val_d = val if isinstance(val, dict) else {}
            optional = "" if key in required else "?"
            title = val_d.get("title")
            if isinstance(title, str):
                out.append(f"{indent}// {title}\n{indent}//\n")
            variants = val_d.get("oneOf")
            prop_desc = val_d.get("description")
            if "oneOf" not in val_d and isinstance(prop_desc, str):
                out.append(f"{indent}// {prop_desc}\n")
            examples = val_d.get("examples")
            if isinstance(examples, list) and examples:
                out.append(f"{indent}// Examples:\n")
                for ex in examples:
                    if isinstance(ex, str):
                        out.append(f'{indent}// - "{ex}"\n')
            if isinstance(variants, list):
                out.append(_one_of_property(key, optional, val_d, variants, indent))
                continue
            type_text = _with_nullable(val_d, schema_to_typescript(val, indent + "    "))
            out.append(f"{indent}{key}{optional}: {type_text},")
            if "default" in val_d and "oneOf" not in val_d:
                out.append(f" // default: {_default_text(val_d, quote_strings=True)}")
            out.append("\n")
    out.append(f"{indent}}}")
    return "".join(out)


def _one_of_property(key: str, optional: str, prop: dict, variants: list, indent: str) -> str:
    out = []
    prop_desc = prop.get("description") if isinstance(prop.get("description"), str) else None
    first = variants[0] if variants and isinstance(variants[0], dict) else {}
    skip_prop_desc = prop_desc is not None and first.get("description") == prop_desc
    desc_above = False
    if prop_desc is not None and not skip_prop_desc:
        out.append(f"{indent}// {prop_desc}\n")
        desc_above = True
    if "default" in prop:
        out.append(f"{indent}// default: {_default_text(prop, quote_strings=True)}\n")
    out.append(f"{indent}{key}{optional}:\n")
    for i, variant in enumerate(variants):
        out.append(f"{indent} | ")
        out.append(_with_nullable(variant, schema_to_typescript(variant, indent + "   ")))
        out.append(_variant_trailing_comment(variant, i == 0 and desc_above, prop_desc,
                                             quote_enum_default_strings=False))
        out.append("\n")
    out.append(f"{indent},\n")
    return "".join(out)
