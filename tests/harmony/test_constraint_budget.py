"""Bounded constraint cost: planning a closing continuation has a budget; a schema that cannot be completed within
a request's tokens is refused when its constraint starts (or fails with the same clear error when it runs out of
room later), a bulk-content schema degrades to the cheap greedy plan and still ends valid and in time, and schemas
nested deeper than llguidance takes are one clear error, never RecursionError."""
import json
import re

import numpy as np
import pytest

from gptoss_jax import chat as chat_lib
from gptoss_jax.harmony import chat as hchat
from gptoss_jax.harmony import closing
from gptoss_jax.harmony import constrain as C
from gptoss_jax.harmony import tokenizer as tok
from gptoss_jax.harmony.matcher import llguidance_module
from gptoss_jax.harmony.schema_bounds import min_json_bytes

HUGE_MIN_LENGTH = {"type": "string", "minLength": 1_000_000_000}
LONG_PATTERN = {"type": "string", "pattern": "^[a-z]{5000}$"}
# masks, not seconds, bound these tests' planning: the outcome never depends on the machine's load
BUDGET = closing.PlanBudget(max_masks=600, max_seconds=600)


def test_a_value_longer_than_any_context_is_refused_when_compiled():
    with pytest.raises(C.ConstraintError, match="shortest value takes 1000000002 bytes, at least 7812501 tokens: "
                                                "more than a gpt-oss context holds"):
        C.compile_json_schema(HUGE_MIN_LENGTH, envelope="final")
    nested = {"type": "object", "properties": {"rows": {"type": "array", "minItems": 100_000, "items": {
        "$ref": "#/$defs/row"}}}, "required": ["rows"], "$defs": {"row": {"type": "string", "minLength": 1000}}}
    with pytest.raises(C.ConstraintError, match="more than a gpt-oss context holds"):
        C.compile_json_schema(nested)


@pytest.mark.parametrize("envelope", [None, "final"])
def test_a_schema_that_cannot_fit_is_refused_when_the_constraint_starts(envelope):
    grammar = C.compile_json_schema({"type": "string", "minLength": 20_000}, envelope=envelope)  # >= 157 tokens
    with pytest.raises(C.ConstraintError, match="cannot be completed within max_tokens=128: its shortest value "
                                                "takes at least 157 tokens"):
        grammar.new_constraint(max_tokens=128, budget=BUDGET)
    grammar = C.compile_json_schema(LONG_PATTERN, envelope=envelope)       # no bound from a pattern: the search
    for _ in range(2):   # the second refusal comes from the grammar's kept result
        with pytest.raises(C.ConstraintError, match="cannot be completed within max_tokens=128: no completion of "
                                                    "at most 128 tokens was found; raise max_tokens or relax"):
            grammar.new_constraint(max_tokens=128, budget=BUDGET)


@pytest.mark.parametrize("schema, shortest", [
    (HUGE_MIN_LENGTH, 1_000_000_002),
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": 5}}, "required": ["a"]}, 13),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 3}, 7),
    ({"enum": ["abc", 12]}, 2),
    ({"anyOf": [{"type": "string", "minLength": 9}, {"type": "null"}]}, 4),
    ({"$defs": {"x": {"type": "string", "minLength": 20}}, "$ref": "#/$defs/x"}, 22),
    ({"$defs": {"x": {"type": "array", "items": {"$ref": "#/$defs/x"}, "minItems": 2}}, "$ref": "#/$defs/x"}, 5),
    ({"type": "object", "minProperties": 2}, 11),
    ({"type": "string", "pattern": "^[a-z]{5000}$"}, 2),
])
def test_schema_lower_bounds_never_exceed_the_shortest_value(schema, shortest):
    assert min_json_bytes(schema) == shortest


def test_the_same_refusal_reaches_a_chat_request_on_a_short_engine():
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": LONG_PATTERN}}
    req = chat_lib.ChatRequest([{"role": "user", "content": "hi"}], response_format=fmt, plan_budget=BUDGET)
    with pytest.raises(C.ConstraintError, match="cannot be completed within max_tokens="):
        chat_lib.to_engine_request(req, max_len=256)


def test_bulk_content_degrades_to_the_greedy_plan_and_ends_valid_within_its_budget():
    grammar = C.compile_json_schema(LONG_PATTERN)
    c = grammar.new_constraint(max_tokens=400, budget=BUDGET)   # 5000 letters fit: the 26-letter token makes ~193 tokens
    row = np.empty(C.BITMASK_WORDS, np.int32)
    rng = np.random.default_rng(0)
    while not c.is_finished():
        assert len(c.generated) < 400
        c.fill_bitmask(row)
        c.advance(int(rng.choice(np.flatnonzero(C.allowed_tokens(row)))))
    value = json.loads(tok.get_encoding().decode(c.generated[:-1]))
    assert re.fullmatch("[a-z]{5000}", value)
    assert c.closing and c.last_plan.searcher == "greedy"


def test_planning_stays_within_its_budget():
    # the greedy path loops on letters (the longest token) and a million tokens of room cannot be searched
    grammar = C.compile_json_schema({"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"})
    matcher = llguidance_module().LLMatcher(C.ll_tokenizer(), grammar._grammar, log_level=0)
    res = closing.plan_completion(matcher, closing.JsonDepth(), max_len=10 ** 6,
                                  budget=closing.PlanBudget(max_masks=40, max_seconds=600))
    assert res.plan is None and res.exhausted and res.masks == 40
    res = closing.plan_completion(matcher, closing.JsonDepth(), max_len=10 ** 6,
                                  budget=closing.PlanBudget(max_masks=10 ** 6, max_seconds=0.05))
    assert res.plan is None and res.exhausted and res.seconds < 2.0    # one batch past the deadline at most
    assert not matcher.is_error() and not matcher.is_accepting()       # the matcher itself is untouched
    res = closing.plan_completion(matcher, closing.JsonDepth(), max_len=64, budget=BUDGET)
    assert res.plan is not None and res.searcher == "depth-first"      # what the greedy path misses


def test_running_out_of_room_later_is_the_same_clear_error():
    # "x" fits, so the request is taken; the model then commits to the 3000 a's, which cannot fit in what is left
    grammar = C.compile_json_schema({"type": "string", "pattern": "^(x|a{3000})$"})
    c = grammar.new_constraint(max_tokens=150, budget=BUDGET)
    row = np.empty(C.BITMASK_WORDS, np.int32)
    enc = tok.get_encoding()
    with pytest.raises(C.ConstraintError, match=r"cannot finish the JSON schema within max_tokens=150: after \d+ "
                                                r"tokens no completion of at most \d+ tokens was found"):
        while True:
            c.fill_bitmask(row)
            allowed = np.flatnonzero(C.allowed_tokens(row))
            c.advance(max(allowed, key=lambda t: len(enc.decode_single_token_bytes(int(t)))))
    assert 150 - len(c.generated) <= c.PLAN_WINDOW


def test_normal_schemas_plan_cheaply():
    grammar = C.compile_json_schema({"type": "object", "properties": {"essay": {"type": "string"}},
                                     "required": ["essay"]}, envelope="final")
    c = grammar.new_constraint(max_tokens=40, budget=BUDGET)
    row = np.empty(C.BITMASK_WORDS, np.int32)
    rng = np.random.default_rng(1)
    while not c.is_finished():
        c.fill_bitmask(row)
        c.advance(int(rng.choice(np.flatnonzero(C.allowed_tokens(row)))))
        assert c.last_plan is None or c.last_plan.masks < 100
    assert len(c.generated) <= 40


def _deep(levels):
    schema = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def test_deep_schemas_and_tools_are_one_clear_error_not_recursion():
    user = [{"role": "user", "content": "hi"}]
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": _deep(500)}}
    with pytest.raises(hchat.ChatInputError, match="response_format json_schema is nested more than 100 levels"):
        chat_lib.to_engine_request(chat_lib.ChatRequest(user, response_format=fmt), max_len=4096)
    for choice in ("auto", "required"):
        tools = [{"type": "function", "function": {"name": "f", "parameters": _deep(500)}}]
        with pytest.raises(hchat.ChatInputError, match=r"tools\[0\] \(f\) parameters are nested more than 100"):
            chat_lib.to_engine_request(chat_lib.ChatRequest(user, tools=tools, tool_choice=choice), max_len=4096)
    with pytest.raises(C.ConstraintError, match="nested more than 100 levels deep"):
        C.compile_json_schema(_deep(5000))
    cyclic = {"type": "object", "properties": {}}
    cyclic["properties"]["self"] = cyclic
    with pytest.raises(C.ConstraintError, match="nested more than 100 levels deep"):
        C.compile_json_schema(cyclic)
    C.compile_json_schema(_deep(49))        # 99 levels: within the limit, and llguidance compiles it
