"""Flags every model-running subcommand shares, and the one way they turn into a loaded model."""
from __future__ import annotations

import os
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
flags.DEFINE_string("moe_impl", "auto", "MXFP4 expert matmul implementation: auto, reference, or a kernel name.")
flags.DEFINE_bool("progress", True, "Show progress while loading and running.")
flags.DEFINE_bool("check_finite", True, "Refuse a checkpoint whose weights hold NaN or inf (one on-device pass "
                  "over the weights after loading); --nocheck_finite skips it.")


def model_mesh():
    """The mesh --mesh describes: over all devices of the job, or over this replica's devices (--replicas > 1)."""
    from gptoss_jax import distributed, sharding

    if FLAGS.replicas == 1:
        if FLAGS.mesh is None and distributed.is_initialized():
            return sharding.make_mesh(None)  # several processes: no single device could hold the model
        return None if FLAGS.mesh is None else sharding.make_mesh(FLAGS.mesh)
    devices = distributed.replica_info(FLAGS.replicas).devices()
    return sharding.make_mesh(FLAGS.mesh or (1, len(devices), 1), devices)


def checkpoint_path() -> str | None:
    """The checkpoint folder the flags name: --checkpoint, or --model when it is a folder rather than a preset (a
    checkpoint path given as --model must never become random weights of its shape); None: a synthetic preset."""
    from gptoss_jax.config import PRESETS

    if FLAGS.checkpoint:
        return FLAGS.checkpoint
    return FLAGS.model if FLAGS.model not in PRESETS and os.path.isdir(FLAGS.model) else None


def model_config():
    """The ModelConfig of the model the flags describe, without loading (or writing) any weights: commands check
    their input against it before the load, which takes minutes for the big models."""
    from gptoss_jax.api import read_config
    from gptoss_jax.config import get_config

    path = checkpoint_path()
    return read_config(path) if path else get_config(FLAGS.model)


def load_model(counter=None):
    """The model the flags describe (checkpoint or synthetic preset, mesh, dtype, kernel); joins the multi-process
    job first if the CLI entry point has not. counter: a ByteCounter of the checkpoint bytes this process reads."""
    import gptoss_jax
    from gptoss_jax import kernels

    init_distributed()
    kernels.set_impl(FLAGS.moe_impl)
    from gptoss_jax.checkpoint.synthetic import cached_checkpoint

    mesh = model_mesh()  # a bad --mesh fails before anything is written or read
    path = checkpoint_path()
    if path is None:
        from gptoss_jax import distributed

        if distributed.is_main():
            print(f"(no --checkpoint: the synthetic {FLAGS.model} model, random weights)", file=sys.stderr)
        path = cached_checkpoint(FLAGS.model, FLAGS.seed, FLAGS.synthetic_dir, show_progress=FLAGS.progress)
    return gptoss_jax.load(path, mesh=mesh, dtype=FLAGS.dtype, show_progress=FLAGS.progress, counter=counter,
                           check_finite=FLAGS.check_finite)
