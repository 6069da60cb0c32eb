"""gptoss convert --checkpoint=DIR --orbax_dir=DIR: a release checkpoint (either layout) to Orbax, MXFP4 kept packed."""
import sys

from absl import app, flags

from gptoss_jax.cli import flags as common

flags.DEFINE_string("orbax_dir", None, "Output folder for the Orbax checkpoint (required).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from gptoss_jax.checkpoint import orbax_io
    from gptoss_jax.progress import format_bytes

    if not flags.FLAGS.orbax_dir:
        raise app.UsageError("--orbax_dir is required: the output folder of the Orbax checkpoint")
    orbax_io.check_output(flags.FLAGS.orbax_dir)  # before the long load
    model = common.load_model()
    print(f"writing {format_bytes(model.param_bytes())} of weights to {flags.FLAGS.orbax_dir} ...", file=sys.stderr,
          flush=True)
    path = orbax_io.save(flags.FLAGS.orbax_dir, model.cfg, model.params)
    print(f"wrote Orbax checkpoint of {model.cfg.name} ({format_bytes(model.param_bytes())} of weights) to {path}")
