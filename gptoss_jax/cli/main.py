"""`gptoss SUBCOMMAND [--flags]`: one entry point; each subcommand is a module with its own absl flags and main().

    gptoss demo        write (once) and load the embedded synthetic model, generate and score a few tokens
    gptoss convert     checkpoint (either release layout) -> Orbax, MXFP4 kept packed
    gptoss generate | chat | score | eval | bench   (see each subcommand's --help)
"""
from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "demo": "gptoss_jax.cli.demo",
    "convert": "gptoss_jax.cli.convert",
    "generate": "gptoss_jax.cli.generate",
    "chat": "gptoss_jax.cli.chat",
    "score": "gptoss_jax.cli.score",
    "eval": "evals.cli",
    "bench": "gptoss_jax.cli.bench",
}


def _usage() -> str:
    return "usage: gptoss {" + ",".join(SUBCOMMANDS) + "} [--flags]   (gptoss SUBCOMMAND --help for its flags)"


def run(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    sub = argv[1]
    if sub not in SUBCOMMANDS:
        print(f"gptoss: unknown subcommand {sub!r}\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    try:
        module = importlib.import_module(SUBCOMMANDS[sub])
    except ModuleNotFoundError as e:
        print(f"gptoss {sub}: not available in this installation ({e})", file=sys.stderr)
        sys.exit(2)
    import logging

    from absl import app

    from gptoss_jax.cli import distributed_flags  # --coordinator_address, --num_processes, ... on every subcommand

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "no TPU here" is not news

    def main(args):
        from gptoss_jax.distributed import DistributedError

        try:  # join the multi-process job (if any) before anything uses a device
            distributed_flags.init_distributed()
        except DistributedError as e:
            print(f"gptoss {sub}: {e}", file=sys.stderr)
            sys.exit(1)
        return module.main(args)

    app.run(main, argv=[f"gptoss {sub}"] + argv[2:])


if __name__ == "__main__":
    run()
