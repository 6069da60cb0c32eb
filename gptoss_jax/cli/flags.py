"""Flags every model-running subcommand shares, and the one way they turn into a model (api.build_model)."""
from __future__ import annotations

import sys

from absl import flags

from gptoss_jax.cli.distributed_flags import init_distributed

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint", None, "Checkpoint folder: HF or original release layout (auto-detected), or an "
                    "Orbax folder from `gptoss convert`. Without it, --model picks a synthetic model.")
flags.DEFINE_string("model", "demo", "Without --checkpoint: a config preset (gpt-oss-20b, gpt-oss-120b, tiny, demo, "
                    "...) whose random synthetic checkpoint is written once to --synthetic_dir and loaded, or a "
                    "checkpoint folder (as --checkpoint; `gptoss eval --backend=local --model` takes it the same way).")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic checkpoint (and of sampling unless a request sets one).")
flags.DEFINE_string("synthetic_dir", None,
                    "Where synthetic checkpoints are written (default ~/.cache/gptoss_jax/synthetic).")
flags.DEFINE_string("mesh", None, "Mesh shape 'data,expert,tensor' over all devices, e.g. '1,8,1'; default: one "
                    "device (in a multi-process job: every device on the expert axis).")
flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "Compute dtype.")
flags.DEFINE_string("moe_impl", "auto", "MXFP4 expert matmul kernel: auto (the best for the backend), reference, "
                    "pallas_gpu, pallas_tpu, or their *_interpret forms.")
flags.DEFINE_string("attention_impl", "auto", "Decode attention kernel: auto (pallas_gpu on a GPU, xla elsewhere), "
                    "xla, pallas_gpu, pallas_gpu_interpret.")
flags.DEFINE_string("moe_dequant", "auto", "MXFP4 decoding route inside the GPU MoE kernel: auto (= kperm), kperm, "
                    "e4m3, asm.")
flags.DEFINE_bool("progress", True, "Show progress while loading and running.")
flags.DEFINE_bool("check_finite", True, "Refuse a checkpoint whose weights hold NaN or inf (one on-device pass "
                  "over the weights after loading); --nocheck_finite skips it.")


def model_source() -> str:
    """What the flags name: --checkpoint, else --model (a preset, or a checkpoint folder given as --model, which
    is loaded as the checkpoint: never random weights of its shape)."""
    return FLAGS.checkpoint or FLAGS.model


def kernels_from_flags():
    """The Kernels the flags ask for (unresolved; a bad name fails here, before anything loads)."""
    from gptoss_jax.kernels import Kernels

    return Kernels(moe=FLAGS.moe_impl, attention=FLAGS.attention_impl, dequant=FLAGS.moe_dequant)


def model_config():
    """The ModelConfig of the model the flags describe, without loading (or writing) any weights: commands check
    their input against it before the load, which takes minutes for the big models."""
    from gptoss_jax.config import get_config

    return get_config(model_source())


def load_model(counter=None):
    """The model the flags describe (checkpoint or synthetic preset, mesh, dtype, kernels); joins the multi-process
    job first if the CLI entry point has not. counter: a ByteCounter of the checkpoint bytes this process reads."""
    from gptoss_jax import api, distributed

    init_distributed()
    source = model_source()
    mesh = api.resolve_mesh(FLAGS.mesh, FLAGS.replicas)   # bad options fail before anything is said or written
    kernels = kernels_from_flags()
    if api.is_preset(source) and distributed.is_main():
        print(f"(no --checkpoint: the synthetic {source} model, random weights)", file=sys.stderr)
    return api.build_model(source, mesh=mesh, dtype=FLAGS.dtype, kernels=kernels, seed=FLAGS.seed,
                           synthetic_dir=FLAGS.synthetic_dir, show_progress=FLAGS.progress, counter=counter,
                           check_finite=FLAGS.check_finite)
