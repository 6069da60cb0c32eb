"""Reference logits from OpenAI's and Hugging Face's implementations, for the golden files of the parity tests.

Runs in a separate Python that has torch (PyPI `gpt-oss` 0.0.9 and `transformers` 5.x); imports nothing of
gptoss_jax. make_goldens.py drives it; see that file for how to set the environment up.

    python reference_logits.py --impl openai|hf --checkpoint DIR --tokens tokens.npy --out logits.npz
"""
import argparse

import numpy as np
import torch


def openai_logits(path: str, tokens: np.ndarray) -> dict:
    from gpt_oss.torch.model import Transformer

    model32 = Transformer.from_checkpoint(path, device="cpu").float()
    with torch.inference_mode():
        f32 = np.stack([model32(torch.as_tensor(row, dtype=torch.int32)).numpy() for row in tokens])
    model16 = Transformer.from_checkpoint(path, device="cpu")  # bf16, as the reference runs by default
    with torch.inference_mode():
        b16 = np.stack([model16(torch.as_tensor(row, dtype=torch.int32)).float().numpy() for row in tokens])
    return {"logits": f32.astype(np.float32), "argmax_bf16": b16.argmax(-1).astype(np.int32)}


def hf_logits(path: str, tokens: np.ndarray) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    with torch.inference_mode():
        out = model(input_ids=torch.as_tensor(tokens, dtype=torch.long)).logits
    return {"logits": out.numpy().astype(np.float32)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["openai", "hf"], required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    tokens = np.load(a.tokens)
    fn = openai_logits if a.impl == "openai" else hf_logits
    np.savez(a.out, **fn(a.checkpoint, tokens))


if __name__ == "__main__":
    main()
