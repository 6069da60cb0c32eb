"""gptoss convert --checkpoint=DIR --orbax_dir=DIR: a release checkpoint (either layout) to Orbax, MXFP4 kept packed."""
from absl import flags

from gptoss_jax.cli import flags as common

flags.DEFINE_string("orbax_dir", None, "Output folder for the Orbax checkpoint.", required=True)


def main(argv):
    del argv
    from gptoss_jax.checkpoint import orbax_io

    model = common.load_model()
    path = orbax_io.save(flags.FLAGS.orbax_dir, model.cfg, model.params)
    print(f"wrote Orbax checkpoint of {model.cfg.name} ({model.param_bytes() / 1e9:.2f} GB of weights) to {path}")
