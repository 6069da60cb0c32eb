"""The engine with the real o200k_harmony tokenizer and llguidance constraints (gptoss_jax.harmony), on the `demo`
preset: the real 201088-token vocabulary, tiny layers, random weights."""
import json

import pytest

import gptoss_jax
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import PRESETS
from gptoss_jax.engine import Engine, Request, SamplingParams

constrain = pytest.importorskip("gptoss_jax.harmony.constrain")
from gptoss_jax.harmony import tokenizer as tok  # noqa: E402

KW = dict(num_slots=2, max_len=16, prefill_chunk=16, min_prefill_chunk=16, decode_steps=4, max_top_logprobs=2)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demo_ckpt") / "demo")
    synthetic.write_checkpoint(path, PRESETS["demo"], seed=5)
    model = gptoss_jax.load(path, dtype="float32", show_progress=False)
    e = Engine(model, detokenize=tok.get_encoding().decode, **KW)
    yield e
    e.close()


def test_llguidance_constraints_shape_random_model_output(engine):
    enc = tok.get_encoding()
    prompt = enc.encode("Answer:")
    choice = constrain.compile_choice(["yes", "no", "maybe"]).new_constraint()
    digits = constrain.compile_regex(r"[0-9]{3}").new_constraint()
    obj = constrain.compile_json_schema({"type": "object", "properties": {"a": {"type": "integer"}},
                                         "required": ["a"], "additionalProperties": False}).new_constraint(max_tokens=12)
    stop = SamplingParams(temperature=1.0, seed=1, max_tokens=12, stop_token_ids=sorted(tok.STOP_TOKENS))
    out = engine.generate([Request(prompt, stop, constraint=choice), Request(prompt, stop, constraint=digits),
                           Request(prompt, stop, constraint=obj), Request(prompt, stop)])
    for r in out:
        assert r.finish_reason in ("stop", "length") and r.error is None, r
    assert out[0].finish_reason == "stop" and out[0].text in ("yes", "no", "maybe")
    assert out[1].finish_reason == "stop" and len(out[1].text) == 3 and out[1].text.isdigit()
    assert out[2].finish_reason == "stop" and set(json.loads(out[2].text)) == {"a"}
    # the unconstrained random model babbles: the masks, not luck, made the others valid
    assert out[3].text not in ("yes", "no", "maybe")


def test_text_in_text_out_with_stop_strings(engine):
    enc = tok.get_encoding()
    p = SamplingParams(temperature=0.0, max_tokens=10)
    [ref] = engine.generate([Request(enc.encode("hello world"), p)])
    assert ref.text == enc.decode(ref.token_ids)
    stop = ref.text[len(enc.decode(ref.token_ids[:3])):][:4]
    [r] = engine.generate([Request(enc.encode("hello world"), SamplingParams(temperature=0.0, max_tokens=10,
                                                                             stop=[stop]))])
    assert r.finish_reason == "stop" and r.stop_reason == stop and r.text == ref.text[:ref.text.find(stop)]
