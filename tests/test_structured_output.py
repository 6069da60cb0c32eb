"""Structured outputs end to end: a random-weight model (the `demo` preset: real vocabulary, random weights)
sampling at temperature 1.0 through the engine and the chat layer, with response_format json_schema.
Every output must parse and validate with the jsonschema library."""
import json

import jsonschema
import pytest

import gptoss_jax
from gptoss_jax import chat as chat_lib
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import PRESETS
from gptoss_jax.engine import Engine, SamplingParams
from tests.harmony.test_harmony_constrain import SCHEMAS

MAX_TOKENS = 160


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = synthetic.write_checkpoint(str(tmp_path_factory.mktemp("demo") / "demo"), PRESETS["demo"], seed=9)
    e = Engine(gptoss_jax.load(path, show_progress=False), num_slots=8, max_len=512, prefill_chunk=256,
               decode_steps=4)
    yield e
    e.close()


def test_every_schema_validates_under_random_weights_at_temperature_one(engine):
    assert len(SCHEMAS) >= 20
    names = sorted(SCHEMAS)
    reqs = []
    for i, name in enumerate(names):
        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}}
        reqs.append(chat_lib.to_engine_request(chat_lib.ChatRequest(
            [{"role": "user", "content": f"Give me a {name} object."}], reasoning_effort="low", response_format=fmt,
            sampling=SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS, seed=100 + i))))
    results = engine.generate(reqs)
    for name, res in zip(names, results):
        out = chat_lib.from_engine_result(res)
        assert res.finish_reason == "stop", (name, res.finish_reason, res.error)
        value = json.loads(out.content)
        jsonschema.validate(value, SCHEMAS[name])
