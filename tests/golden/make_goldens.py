"""Regenerate the golden reference logits the parity tests compare against.

The goldens are reference logits (OpenAI's gpt_oss/torch and HF transformers' GptOssForCausalLM) on synthetic
checkpoints written by gptoss_jax.checkpoint.synthetic. The tests rewrite the same checkpoints from the same seeds
and check a fingerprint of them first, so a change in the writer is caught rather than compared against stale data.

Set up a reference Python once (torch's CPU build; gpt-oss declares Python >= 3.12 but its torch code runs on 3.11):
    python3.11 -m venv /tmp/venvref
    /tmp/venvref/bin/pip install torch==2.13.0 safetensors numpy "transformers>=5" accelerate
    /tmp/venvref/bin/pip install --no-deps --ignore-requires-python gpt-oss==0.0.9
Then, from the repo root, in the project's own environment:
    python tests/golden/make_goldens.py --ref_python /tmp/venvref/bin/python
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.golden.cases import CASES, fingerprint, write_case  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref_python", default=os.environ.get("GPTOSS_REF_PYTHON"), required=False)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    a = ap.parse_args()
    if not a.ref_python:
        sys.exit("--ref_python (or GPTOSS_REF_PYTHON) must name a Python with torch, gpt-oss and transformers")
    for case in CASES:
        if a.only and case.name not in a.only.split(","):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = write_case(case, tmp)
            tok_path = os.path.join(tmp, "tokens.npy")
            np.save(tok_path, case.tokens())
            results = {}
            for impl, folder in (("openai", os.path.join(ckpt, "original")), ("hf", ckpt)):
                out = os.path.join(tmp, f"{impl}.npz")
                subprocess.run([a.ref_python, os.path.join(HERE, "reference_logits.py"), "--impl", impl,
                                "--checkpoint", folder, "--tokens", tok_path, "--out", out], check=True)
                results[impl] = dict(np.load(out))
            o, h = results["openai"]["logits"], results["hf"]["logits"]
            print(f"{case.name}: openai vs hf max |diff| = {np.abs(o - h).max():.3g}, logit std {o.std():.3f}")
            np.savez_compressed(os.path.join(HERE, f"{case.name}.npz"), tokens=case.tokens(),
                                openai_logits=o, hf_logits=h, openai_argmax_bf16=results["openai"]["argmax_bf16"],
                                fingerprint=np.array(fingerprint(ckpt)))


if __name__ == "__main__":
    main()
