"""gptoss-jax: OpenAI's gpt-oss models on JAX/XLA, sharded over TPUs and GPUs.

    import gptoss_jax
    model = gptoss_jax.load("/path/to/gpt-oss-20b", mesh="1,1,1", dtype="bfloat16")
    logits = model(token_ids)            # int32 [batch, seq] -> float32 [batch, seq, vocab]

The names below are imported on first use, so `import gptoss_jax.harmony.constants` (say) does not import JAX.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "GptOss": "gptoss_jax.api", "build_model": "gptoss_jax.api", "load": "gptoss_jax.api",
    "random_model": "gptoss_jax.api", "get_config": "gptoss_jax.config",
    "InputError": "gptoss_jax.errors", "GptOssError": "gptoss_jax.errors",
    "Kernels": "gptoss_jax.kernels",
    "ModelConfig": "gptoss_jax.config", "PRESETS": "gptoss_jax.config",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gptoss_jax' has no attribute {name!r}")
