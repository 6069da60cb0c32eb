"""Parity with OpenAI's reference (gpt_oss/torch) and HF transformers' GptOssForCausalLM.

Golden logits (tests/golden/*.npz, made by tests/golden/make_goldens.py) hold the references' outputs on synthetic
checkpoints that these tests rewrite from the same seeds. With GPTOSS_REF_PYTHON pointing at a Python that has torch,
gpt-oss and transformers, test_live_parity also runs the references now, on a model no golden has seen.
"""
import os
import subprocess

import numpy as np
import pytest

import gptoss_jax
from gptoss_jax.checkpoint import synthetic
from gptoss_jax.config import PRESETS
from tests.golden.cases import CASES, Case, fingerprint

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _golden(case):
    return np.load(os.path.join(GOLDEN, f"{case.name}.npz"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_float32_parity_both_layouts(case, case_checkpoints):
    g = _golden(case)
    ckpt = case_checkpoints[case.name]
    assert fingerprint(ckpt) == str(g["fingerprint"]), (
        "the synthetic writer now writes different bytes than when the goldens were made; if intended, "
        "regenerate them with tests/golden/make_goldens.py")
    tokens = g["tokens"]
    assert tokens.shape[1] > 2 * case.cfg.sliding_window and tokens.shape[0] > 1
    per_layout = {}
    for layout, folder in (("hf", ckpt), ("original", os.path.join(ckpt, "original"))):
        logits = np.asarray(gptoss_jax.load(folder, dtype="float32", show_progress=False)(tokens))
        assert logits.dtype == np.float32 and logits.shape == (*tokens.shape, case.cfg.vocab_size)
        assert np.abs(logits - g["openai_logits"]).max() <= 1e-4, layout
        assert np.abs(logits - g["hf_logits"]).max() <= 1e-4, layout
        per_layout[layout] = logits
    # the same model in both layouts: identical logits
    np.testing.assert_array_equal(per_layout["hf"], per_layout["original"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bfloat16_top1_agreement(case, case_checkpoints):
    g = _golden(case)
    model = gptoss_jax.load(case_checkpoints[case.name], dtype="bfloat16", show_progress=False)
    top1 = np.asarray(model(g["tokens"])).argmax(-1)
    assert (top1 == g["openai_logits"].argmax(-1)).mean() >= 0.98
    assert (top1 == g["hf_logits"].argmax(-1)).mean() >= 0.98


def test_long_inputs_run_in_chunks_with_the_same_logits(case_checkpoints):
    case = CASES[2]
    g = _golden(case)
    model = gptoss_jax.load(case_checkpoints[case.name], dtype="float32", show_progress=False)
    chunked = np.asarray(model(g["tokens"], chunk=8))  # 21 tokens: chunks of 8, 8, 5 (+ padding)
    assert np.abs(chunked - g["openai_logits"]).max() <= 1e-4


def test_parity_catches_a_wrong_model(case_checkpoints):
    """The comparison can fail: one flipped MXFP4 nibble in one expert moves the logits past the tolerance."""
    case = CASES[0]
    g = _golden(case)
    model = gptoss_jax.load(case_checkpoints[case.name], dtype="float32", show_progress=False)
    w = model.params["layers"]["full"]["mlp"]["mlp2_w"]
    model.params["layers"]["full"]["mlp"]["mlp2_w"] = type(w)(w.blocks ^ 0x07, w.scales)
    assert np.abs(np.asarray(model(g["tokens"])) - g["openai_logits"]).max() > 1e-2


@pytest.mark.skipif(not os.environ.get("GPTOSS_REF_PYTHON"),
                    reason="set GPTOSS_REF_PYTHON to a Python with torch, gpt-oss and transformers (see "
                           "tests/golden/make_goldens.py) to run the references live")
def test_live_parity(tmp_path):
    case = Case("live", PRESETS["tiny-4l"].replace(num_experts=8, sliding_window=5), seed=11, batch=3, seq=23)
    ckpt = synthetic.write_release(str(tmp_path / "live"), case.cfg, seed=case.seed, max_shard_bytes=50_000)
    np.save(tmp_path / "tokens.npy", case.tokens())
    for impl, folder in (("openai", os.path.join(ckpt, "original")), ("hf", ckpt)):
        out = tmp_path / f"{impl}.npz"
        subprocess.run([os.environ["GPTOSS_REF_PYTHON"], os.path.join(GOLDEN, "reference_logits.py"), "--impl", impl,
                        "--checkpoint", folder, "--tokens", str(tmp_path / "tokens.npy"), "--out", str(out)],
                       check=True)
        ref = np.load(out)["logits"]
        ours = np.asarray(gptoss_jax.load(folder, dtype="float32", show_progress=False)(case.tokens()))
        assert np.abs(ours - ref).max() <= 1e-4, impl
