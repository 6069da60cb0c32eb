"""gptoss-jax: OpenAI's gpt-oss models on JAX/XLA, sharded over TPUs and GPUs.

    import gptoss_jax
    model = gptoss_jax.load("/path/to/gpt-oss-20b", mesh="1,1,1", dtype="bfloat16")
    logits = model(token_ids)            # int32 [batch, seq] -> float32 [batch, seq, vocab]
"""
from gptoss_jax.api import GptOss, InputError, load, random_model
from gptoss_jax.config import PRESETS, ModelConfig, get_config

__all__ = ["GptOss", "InputError", "ModelConfig", "PRESETS", "get_config", "load", "random_model"]
__version__ = "0.1.0"
