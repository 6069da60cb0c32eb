"""What the multi-process tests compute, shared by the worker processes and the single-process reference."""
from __future__ import annotations

import numpy as np

MESH = "1,4,2"  # experts over expert x tensor = all 8 devices: the expert axis spans both processes
DECODE_STEPS = 6


def tokens(vocab: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, vocab, size=(2, 11)).astype(np.int32)


def host(x) -> np.ndarray:
    """An array, whole, on this host (gathered from every process when it spans several)."""
    from jax.experimental import multihost_utils
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def forward_and_decode(model, toks: np.ndarray, steps: int = DECODE_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Plain-forward logits [B,T,V], and `steps` greedy tokens per row decoded with the KV cache (as gptoss demo
    does, batch-wise): the prompt in one forward, then one token a step."""
    b, t = toks.shape
    logits = host(model(toks))
    cache = model.new_cache(b, t + steps)
    last, cache = model.forward(toks, cache=cache, logits_index=np.full((b,), t - 1, np.int32))
    out = [host(last).argmax(-1).astype(np.int32)]
    for i in range(steps - 1):
        pos = np.full((b, 1), t + i, np.int32)
        last, cache = model.forward(out[-1][:, None], pos, cache, logits_index=np.zeros((b,), np.int32))
        out.append(host(last).argmax(-1).astype(np.int32))
    return logits, np.stack(out, axis=1)
