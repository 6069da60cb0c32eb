"""gptoss-jax: OpenAI gpt-oss models on JAX."""
