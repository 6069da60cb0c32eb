"""A lower bound on the length of any JSON value a schema accepts, read from the schema alone (no search).

``min_json_bytes(schema)`` never over-estimates: every construct it does not understand counts as the shortest
JSON value (one byte). It sees what makes values long by declaration: ``minLength``, ``minItems``,
``minProperties``, required properties, ``const`` / ``enum`` and the ``$ref``s, ``allOf``, ``anyOf`` and
``oneOf`` around them. Divided by the longest token's bytes it bounds the tokens a value needs, so a schema such
as ``{"type": "string", "minLength": 1000000000}`` is refused at once, whatever the search could afford.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

_SCALAR_BYTES = {"string": 2, "integer": 1, "number": 1, "boolean": 4, "null": 4}


def _const_bytes(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return 1


def _count(schema: Mapping, key: str) -> int:
    value = schema.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _Bounds:
    MAX_REF_CHAIN = 64   # $refs followed inside one another (deeper chains count as the shortest value)

    def __init__(self, root: Mapping):
        self.root, self.resolving, self.known = root, set(), {}

    def ref(self, ref: str) -> int:
        if not ref.startswith("#/") or ref in self.resolving or len(self.resolving) >= self.MAX_REF_CHAIN:
            return 1                                  # remote, recursive or too deep: nothing to add
        if ref in self.known:
            return self.known[ref]
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            return 1
        self.resolving.add(ref)
        try:
            self.known[ref] = self.bytes(node)   # a bound found under a cut cycle is smaller: still a bound
        finally:
            self.resolving.discard(ref)
        return self.known[ref]

    def typed(self, schema: Mapping, kind: str) -> int:
        if kind == "string":
            return 2 + _count(schema, "minLength")   # every character takes a byte at least
        if kind == "array":
            n = _count(schema, "minItems")
            items = schema.get("items")
            per_item = self.bytes(items) if isinstance(items, Mapping) else 1
            return 2 + n * per_item + max(n - 1, 0)
        if kind == "object":
            props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
            required = [k for k in schema.get("required") or () if isinstance(k, str)]
            members = [_const_bytes(k) + 1 + (self.bytes(props[k]) if isinstance(props.get(k), Mapping) else 1)
                       for k in required]
            n = max(len(members), _count(schema, "minProperties"))
            return 2 + sum(members) + 4 * (n - len(members)) + max(n - 1, 0)   # '"":0' is the shortest member
        return _SCALAR_BYTES.get(kind, 1)

    def bytes(self, schema: Any) -> int:
        if not isinstance(schema, Mapping):
            return 1
        bounds = [1]
        if "const" in schema:
            bounds.append(_const_bytes(schema["const"]))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            bounds.append(min(_const_bytes(v) for v in schema["enum"]))
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
        if kinds:
            bounds.append(min(self.typed(schema, k) for k in kinds if isinstance(k, str)) if all(
                isinstance(k, str) for k in kinds) else 1)
        if isinstance(schema.get("$ref"), str):
            bounds.append(self.ref(schema["$ref"]))
        for key in ("anyOf", "oneOf"):
            alternatives = schema.get(key)
            if isinstance(alternatives, list) and alternatives:
                bounds.append(min(self.bytes(a) for a in alternatives))
        if isinstance(schema.get("allOf"), list):
            bounds += [self.bytes(part) for part in schema["allOf"]]
        return max(bounds)     # the value meets all of these at once


def min_json_bytes(schema: Mapping) -> int:
    """Bytes of the shortest compact JSON text that `schema` could accept, or less (a lower bound)."""
    return _Bounds(schema).bytes(schema)
